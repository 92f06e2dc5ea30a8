from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError
from starlette.datastructures import Headers

from storytool.auth import Authenticator, Caller
from storytool.config import Settings, describe_settings_error
from storytool.errors import BadRequest, ServiceUnavailable, Unauthorized
from tests.subprocesses import free_port

SECRET = "a-test-secret-of-sufficient-length-for-hs256"


def authenticator(**values) -> Authenticator:
    return Authenticator(Settings(_env_file=None, **values))  # type: ignore[call-arg]


async def call(auth: Authenticator, *pairs: tuple[str, str]) -> Caller:
    return await auth.caller(Headers(raw=[(k.lower().encode(), v.encode()) for k, v in pairs]))


def token(key, algorithm="HS256", headers=None, **claims) -> str:
    claims = {"sub": "writer-1", "exp": int(time.time()) + 60} | claims
    return "Bearer " + jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def bearer(value: str) -> tuple[str, str]:
    return ("Authorization", value)


class TestLocalAndHeader:
    async def test_local_mode_is_the_one_local_user(self):
        assert (await call(authenticator(), ("X-User-Id", "x"))).user_id == "local"

    async def test_header_mode_takes_the_gateways_user(self):
        caller = await call(authenticator(auth_mode="header"), ("X-User-Id", "alice"))
        assert caller == Caller("alice")

    async def test_header_mode_without_the_header_is_401(self):
        with pytest.raises(Unauthorized, match="X-User-Id"):
            await call(authenticator(auth_mode="header"))

    async def test_header_mode_refuses_a_hostile_user_id(self):
        with pytest.raises(Unauthorized, match="not a valid user id"):
            await call(authenticator(auth_mode="header"), ("X-User-Id", "a b;--"))

    async def test_a_second_user_header_is_refused_whatever_its_case(self):
        with pytest.raises(BadRequest, match="X-User-Id appears more than once"):
            await call(
                authenticator(auth_mode="header"), ("X-User-Id", "attacker"), ("x-user-id", "real")
            )

    async def test_a_gateway_secret_shorter_than_32_bytes_is_refused(self):
        with pytest.raises(ValidationError, match="at least 32 bytes"):
            authenticator(auth_mode="header", gateway_secret="short")


class TestJwt:
    async def test_hs256_token_gives_its_subject(self):
        auth = authenticator(auth_mode="jwt", jwt_secret=SECRET)
        assert (await call(auth, bearer(token(SECRET)))).user_id == "writer-1"

    async def test_rs256_token_is_checked_with_the_public_key(self):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_pem = (
            private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        auth = authenticator(auth_mode="jwt", jwt_public_key=public_pem)
        assert (await call(auth, bearer(token(private, "RS256")))).user_id == "writer-1"

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
    async def test_bad_tokens_are_401_with_a_clear_message(self, authorization, message):
        auth = authenticator(auth_mode="jwt", jwt_secret=SECRET)
        with pytest.raises(Unauthorized, match=message):
            await call(auth, *([bearer(authorization)] if authorization else []))

    async def test_alg_none_is_refused(self):
        unsigned = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, None, algorithm="none")
        auth = authenticator(auth_mode="jwt", jwt_secret=SECRET)
        with pytest.raises(Unauthorized):
            await call(auth, bearer("Bearer " + unsigned))

    async def test_two_authorization_headers_are_refused(self):
        auth = authenticator(auth_mode="jwt", jwt_secret=SECRET)
        with pytest.raises(BadRequest, match="Authorization appears more than once"):
            await call(auth, bearer(token(SECRET)), bearer(token(SECRET, sub="other")))


class TestSecretLength:
    def test_an_hs256_secret_under_32_bytes_stops_start_up_naming_the_variable(self):
        with pytest.raises(ValidationError) as caught:
            authenticator(auth_mode="jwt", jwt_secret="12345")
        message = describe_settings_error(caught.value)
        assert "STORYTOOL_JWT_SECRET" in message
        assert "at least 32 bytes" in message

    def test_32_bytes_is_enough(self):
        authenticator(auth_mode="jwt", jwt_secret="k" * 32)

    def test_one_key_source_only(self):
        with pytest.raises(ValidationError, match="exactly one of"):
            authenticator(
                auth_mode="jwt", jwt_secret=SECRET, jwt_jwks_url="http://127.0.0.1:1/jwks"
            )


class TestIssuerAudienceLeeway:
    async def test_a_token_with_an_audience_is_usable_when_none_is_configured(self):
        auth = authenticator(auth_mode="jwt", jwt_secret=SECRET)
        caller = await call(auth, bearer(token(SECRET, aud="https://api.example")))
        assert caller.user_id == "writer-1"

    async def test_the_configured_audience_is_required(self):
        auth = authenticator(auth_mode="jwt", jwt_secret=SECRET, jwt_audience="storytool")
        ok = await call(auth, bearer(token(SECRET, aud=["other", "storytool"])))
        assert ok.user_id == "writer-1"
        with pytest.raises(Unauthorized, match="not for this service"):
            await call(auth, bearer(token(SECRET, aud="other")))
        with pytest.raises(Unauthorized, match="'aud'"):
            await call(auth, bearer(token(SECRET)))

    async def test_the_configured_issuer_is_required(self):
        auth = authenticator(auth_mode="jwt", jwt_secret=SECRET, jwt_issuer="https://id.example/")
        ok = await call(auth, bearer(token(SECRET, iss="https://id.example/")))
        assert ok.user_id == "writer-1"
        with pytest.raises(Unauthorized, match="not for this service"):
            await call(auth, bearer(token(SECRET, iss="https://evil.example/")))
        with pytest.raises(Unauthorized, match="'iss'"):
            await call(auth, bearer(token(SECRET)))

    async def test_leeway_forgives_a_clock_a_little_behind(self):
        just_expired = token(SECRET, exp=int(time.time()) - 5)
        lenient = authenticator(auth_mode="jwt", jwt_secret=SECRET, jwt_leeway_s=30)
        assert (await call(lenient, bearer(just_expired))).user_id == "writer-1"
        strict = authenticator(auth_mode="jwt", jwt_secret=SECRET)
        with pytest.raises(Unauthorized, match="expired"):
            await call(strict, bearer(just_expired))


class KeySet:
    """An identity provider's JWKS endpoint on loopback, counting how often it is fetched."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = json.dumps({"keys": keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_set(signing_key: rsa.RSAPrivateKey) -> Iterator[KeySet]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    served = KeySet([jwk | {"kid": "key-1", "use": "sig", "alg": "RS256"}])
    thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    thread.start()
    yield served
    served.server.shutdown()
    served.server.server_close()
    thread.join()


class TestJwks:
    async def test_a_token_signed_with_a_key_of_the_set_gives_its_subject(
        self, key_set: KeySet, signing_key: rsa.RSAPrivateKey
    ):
        auth = authenticator(auth_mode="jwt", jwt_jwks_url=key_set.url)
        for user in ("writer-1", "writer-2", "writer-3"):
            signed = token(signing_key, "RS256", headers={"kid": "key-1"}, sub=user)
            assert (await call(auth, bearer(signed))).user_id == user
        assert key_set.fetches == 1  # the set is cached, not fetched per request

    async def test_an_unknown_key_or_a_foreign_signature_is_401(
        self, key_set: KeySet, signing_key: rsa.RSAPrivateKey
    ):
        auth = authenticator(auth_mode="jwt", jwt_jwks_url=key_set.url)
        with pytest.raises(Unauthorized, match="key the identity provider lacks"):
            await call(auth, bearer(token(signing_key, "RS256", headers={"kid": "key-9"})))
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with pytest.raises(Unauthorized, match="signature is invalid"):
            await call(auth, bearer(token(stranger, "RS256", headers={"kid": "key-1"})))

    async def test_an_hs256_token_naming_a_key_of_the_set_is_refused(self, key_set: KeySet):
        auth = authenticator(auth_mode="jwt", jwt_jwks_url=key_set.url)
        with pytest.raises(Unauthorized, match="token is invalid"):
            await call(auth, bearer(token(SECRET, headers={"kid": "key-1"})))

    async def test_an_unreachable_key_set_is_503_not_401(self, signing_key: rsa.RSAPrivateKey):
        auth = authenticator(
            auth_mode="jwt", jwt_jwks_url=f"http://127.0.0.1:{free_port()}/jwks.json"
        )
        with pytest.raises(ServiceUnavailable, match="key set"):
            await call(auth, bearer(token(signing_key, "RS256", headers={"kid": "key-1"})))
