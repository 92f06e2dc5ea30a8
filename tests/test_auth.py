from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from storytool.auth import Authenticator
from storytool.config import Settings
from storytool.errors import Unauthorized

SECRET = "a-test-secret-of-sufficient-length-for-hs256"


def authenticator(**values) -> Authenticator:
    return Authenticator(Settings(_env_file=None, **values))  # type: ignore[call-arg]


def token(key, algorithm="HS256", **claims) -> str:
    claims = {"sub": "writer-1", "exp": int(time.time()) + 60} | claims
    return "Bearer " + jwt.encode(claims, key, algorithm=algorithm)


class TestLocalAndHeader:
    def test_local_mode_is_the_one_local_user(self):
        assert authenticator().user_id(user_header="x", authorization=None) == "local"

    def test_header_mode_takes_the_gateways_user(self):
        auth = authenticator(auth_mode="header")
        assert auth.user_id(user_header="alice", authorization=None) == "alice"

    def test_header_mode_without_the_header_is_401(self):
        with pytest.raises(Unauthorized, match="X-User-Id"):
            authenticator(auth_mode="header").user_id(user_header=None, authorization=None)

    def test_header_mode_refuses_a_hostile_user_id(self):
        with pytest.raises(Unauthorized, match="not a valid user id"):
            authenticator(auth_mode="header").user_id(user_header="a b;--", authorization=None)


class TestJwt:
    def test_hs256_token_gives_its_subject(self):
        auth = authenticator(auth_mode="jwt", jwt_secret=SECRET)
        assert auth.user_id(user_header=None, authorization=token(SECRET)) == "writer-1"

    def test_rs256_token_is_checked_with_the_public_key(self):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_pem = (
            private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        auth = authenticator(auth_mode="jwt", jwt_public_key=public_pem)
        assert auth.user_id(user_header=None, authorization=token(private, "RS256")) == "writer-1"

    @pytest.mark.parametrize(
        ("authorization", "message"),
        [
            (None, "missing Authorization"),
            ("Basic abc", "Bearer"),
            ("Bearer not.a.jwt", "token is invalid"),
            (token("another-secret-of-sufficient-length-xx"), "signature is invalid"),
            (token(SECRET, exp=int(time.time()) - 10), "expired"),
            ("Bearer " + jwt.encode({"sub": "x"}, SECRET, algorithm="HS256"), "'exp'"),
        ],
    )
    def test_bad_tokens_are_401_with_a_clear_message(self, authorization, message):
        auth = authenticator(auth_mode="jwt", jwt_secret=SECRET)
        with pytest.raises(Unauthorized, match=message):
            auth.user_id(user_header=None, authorization=authorization)

    def test_alg_none_is_refused(self):
        unsigned = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, None, algorithm="none")
        auth = authenticator(auth_mode="jwt", jwt_secret=SECRET)
        with pytest.raises(Unauthorized):
            auth.user_id(user_header=None, authorization="Bearer " + unsigned)
