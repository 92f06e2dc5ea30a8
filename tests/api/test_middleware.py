from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from storytool.api.middleware import RequestBodyMiddleware
from storytool.config import Settings
from tests.apps import app_client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings.model_copy(
        update={"max_body_bytes": 1024, "cors_origins": ["https://app.example"]}
    )
    async with app_client(settings) as client:
        yield client


class TestBodyLimit:
    async def test_a_declared_oversized_body_is_413_json(self, client: httpx.AsyncClient):
        response = await client.post("/healthz", content=b"x" * 2048)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert "x-request-id" in response.headers

    async def test_an_undeclared_oversized_body_is_413_json(self):
        async def echo_length(request: Request) -> JSONResponse:
            return JSONResponse({"length": len(await request.body())})

        app = RequestBodyMiddleware(
            Starlette(routes=[Route("/", echo_length, methods=["POST"])]),
            max_bytes=1024,
            read_timeout_s=10,
        )

        async def chunks(count: int) -> AsyncIterator[bytes]:
            for _ in range(count):
                yield b"y" * 512

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            small = await client.post("/", content=chunks(2))
            large = await client.post("/", content=chunks(4))
        assert small.json() == {"length": 1024}
        assert large.status_code == 413
        assert large.json()["error"]["code"] == "payload_too_large"


class TestSecurity:
    async def test_security_headers_on_every_answer(self, client: httpx.AsyncClient):
        for response in (await client.get("/healthz"), await client.get("/nowhere")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"

    async def test_cors_allows_only_the_configured_origin(self, client: httpx.AsyncClient):
        preflight = {"Access-Control-Request-Method": "POST"}
        allowed = await client.options(
            "/healthz", headers={"Origin": "https://app.example", **preflight}
        )
        refused = await client.options(
            "/healthz", headers={"Origin": "https://evil.example", **preflight}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert "access-control-allow-origin" not in refused.headers

    def test_wildcard_origin_with_credentials_is_refused_at_start_up(self):
        with pytest.raises(ValidationError, match="STORYTOOL_CORS_ORIGINS"):
            Settings(_env_file=None, cors_origins=["*"], cors_allow_credentials=True)  # type: ignore[call-arg]


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient):
    await client.get("/healthz")
    await client.get("/healthz")
    body = (await client.get("/metrics")).text
    assert 'storytool_http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in body
    assert "storytool_active_streams" in body
