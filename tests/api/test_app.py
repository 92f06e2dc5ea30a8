from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from storytool.config import Settings
from storytool.main import create_app
from tests.apps import app_client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings) as client:
        yield client


class TestHealth:
    async def test_healthz(self, client: httpx.AsyncClient):
        response = await client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_readyz_checks_the_database(self, client: httpx.AsyncClient):
        response = await client.get("/readyz")
        assert response.status_code == 200
        body = response.json()
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["llm_provider"] == "offline"


async def test_readyz_answers_503_when_the_database_is_unreachable(tmp_path):
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url="mysql+asyncmy://nobody@127.0.0.1:1/none",
        data_dir=tmp_path,
    )
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "not_ready"
    assert response.json()["checks"]["database"].startswith("unavailable")


class TestErrors:
    async def test_unknown_path_is_json_404(self, client: httpx.AsyncClient):
        response = await client.get("/api/nothing-here")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    async def test_wrong_method_is_json_405(self, client: httpx.AsyncClient):
        response = await client.post("/healthz")
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"


class TestRequestId:
    async def test_a_sane_request_id_is_echoed(self, client: httpx.AsyncClient):
        response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert response.headers["x-request-id"] == "abc-123"

    async def test_a_missing_or_hostile_id_is_replaced(self, client: httpx.AsyncClient):
        plain = await client.get("/healthz")
        hostile = await client.get("/healthz", headers={"X-Request-ID": "a b\tc" * 50})
        assert len(plain.headers["x-request-id"]) == 32
        assert hostile.headers["x-request-id"] != "a b\tc" * 50


async def test_openapi_docs_are_served(client: httpx.AsyncClient):
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "Storytool"
