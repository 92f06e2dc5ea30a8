"""Who calls, through the whole app: the gateway's user and only the gateway's (auth_mode=header),
and a token for this service from its identity provider (auth_mode=jwt)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from pydantic import SecretStr

from storytool.config import AuthMode, Settings
from tests.apps import app_client

# Who calls is decided before any query: one database is enough (tests/security covers both).
pytestmark = pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)

HISTORY = "/api/retrieveChatHistoryList"
GATEWAY_SECRET = "gateway-shared-secret-0123456789abcdef"


def header_mode(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update={"auth_mode": AuthMode.HEADER, **changes})


class TestDuplicateUserHeader:
    async def test_two_user_headers_are_400_not_the_first_one(self, settings: Settings):
        async with app_client(header_mode(settings)) as client:
            response = await client.get(
                HISTORY, headers=[("X-User-Id", "attacker"), ("X-User-Id", "real")]
            )
        assert response.status_code == 400
        assert response.json()["error"] == {
            "code": "bad_request",
            "message": "X-User-Id appears more than once",
            "field": "X-User-Id",
        }

    async def test_one_user_header_is_the_user(self, settings: Settings):
        async with app_client(header_mode(settings)) as client:
            response = await client.get(HISTORY, headers={"X-User-Id": "alice"})
        assert response.status_code == 200


class TestGatewaySecret:
    @pytest.fixture
    async def client(self, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        secured = header_mode(settings, gateway_secret=SecretStr(GATEWAY_SECRET))
        async with app_client(secured) as client:
            yield client

    async def test_the_gateways_secret_lets_its_user_in(self, client: httpx.AsyncClient):
        response = await client.get(
            HISTORY, headers={"X-User-Id": "alice", "X-Gateway-Secret": GATEWAY_SECRET}
        )
        assert response.status_code == 200

    @pytest.mark.parametrize(
        "secret_headers",
        [[], [("X-Gateway-Secret", "guess")], [("X-Gateway-Secret", GATEWAY_SECRET[:-1])]],
        ids=["missing", "wrong", "one-short"],
    )
    async def test_without_the_secret_a_user_header_is_401(
        self, client: httpx.AsyncClient, secret_headers: list[tuple[str, str]]
    ):
        response = await client.get(HISTORY, headers=[("X-User-Id", "alice"), *secret_headers])
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.json()["error"]["field"] == "X-Gateway-Secret"

    async def test_a_second_secret_header_is_400(self, client: httpx.AsyncClient):
        response = await client.get(
            HISTORY,
            headers=[
                ("X-User-Id", "alice"),
                ("X-Gateway-Secret", "guess"),
                ("X-Gateway-Secret", GATEWAY_SECRET),
            ],
        )
        assert response.status_code == 400
        assert response.json()["error"]["field"] == "X-Gateway-Secret"

    async def test_the_header_name_is_a_setting(self, settings: Settings):
        renamed = header_mode(
            settings,
            gateway_secret=SecretStr(GATEWAY_SECRET),
            gateway_secret_header="X-Edge-Token",
        )
        async with app_client(renamed) as client:
            kept_out = await client.get(
                HISTORY, headers={"X-User-Id": "alice", "X-Gateway-Secret": GATEWAY_SECRET}
            )
            let_in = await client.get(
                HISTORY, headers={"X-User-Id": "alice", "X-Edge-Token": GATEWAY_SECRET}
            )
        assert (kept_out.status_code, let_in.status_code) == (401, 200)


JWT_SECRET = "an-identity-provider-secret-0123456789"


def jwt_mode(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(
        update={"auth_mode": AuthMode.JWT, "jwt_secret": SecretStr(JWT_SECRET), **changes}
    )


def bearer(**claims: object) -> dict[str, str]:
    claims = {"sub": "writer-1", "exp": int(time.time()) + 60, **claims}
    return {"Authorization": "Bearer " + jwt.encode(claims, JWT_SECRET, algorithm="HS256")}


class TestTokensFromAnIdentityProvider:
    async def test_a_token_with_an_audience_is_usable_without_an_audience_setting(
        self, settings: Settings
    ):
        async with app_client(jwt_mode(settings)) as client:
            response = await client.get(HISTORY, headers=bearer(aud="https://api.example"))
        assert response.status_code == 200

    async def test_issuer_and_audience_when_set_are_checked(self, settings: Settings):
        checked = jwt_mode(settings, jwt_issuer="https://id.example/", jwt_audience="storytool")
        async with app_client(checked) as client:
            ours = await client.get(
                HISTORY, headers=bearer(iss="https://id.example/", aud="storytool")
            )
            foreign_issuer = await client.get(
                HISTORY, headers=bearer(iss="https://evil.example/", aud="storytool")
            )
            foreign_audience = await client.get(
                HISTORY, headers=bearer(iss="https://id.example/", aud="billing")
            )
        assert ours.status_code == 200
        assert foreign_issuer.status_code == 401
        assert foreign_audience.status_code == 401
        assert foreign_audience.json()["error"]["code"] == "unauthorized"
