"""What the HTTP layer guards before any route runs: a slow body, the playground's browser policy,
who may scrape /metrics, and whether the API's schema is published."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from storytool.config import Settings
from storytool.main import create_app
from tests.apps import app_client
from tests.fakes.server_thread import ServerThread
from tests.generation.conftest import read_events

# Nothing here depends on the database: run on SQLite only.
pytestmark = pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)

READ_TIMEOUT_S = 0.5
SEARCH_HEAD = (
    b"POST /api/search HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n"
)


@pytest.fixture
def server(settings: Settings) -> Iterator[ServerThread]:
    quick = settings.model_copy(
        update={"body_read_timeout_s": READ_TIMEOUT_S, "offline_chars_per_second": 40.0}
    )
    with ServerThread(create_app(quick)) as server:
        yield server


def answer_of(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything the server sends until it closes the connection (or 5 s pass), and whether
    it closed."""
    sock.settimeout(5)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return received, False
    return received, True


class TestBodyReadTimeout:
    def test_a_body_that_stops_short_is_408_and_the_connection_closes(self, server: ServerThread):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            started = time.monotonic()
            sock.sendall(SEARCH_HEAD + b'{"query": ')  # 10 of the 100 bytes declared
            answer, closed = answer_of(sock)
            elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"connection: close" in head.lower()
        assert json.loads(body)["error"]["code"] == "request_timeout"
        assert closed
        assert READ_TIMEOUT_S <= elapsed < READ_TIMEOUT_S + 2

    def test_a_body_in_pieces_that_arrives_in_time_is_served(self, server: ServerThread):
        body = json.dumps({"query": "선비", "top_k": 3}).encode().ljust(100)
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(SEARCH_HEAD + body[:10])
            time.sleep(READ_TIMEOUT_S / 3)
            sock.sendall(body[10:])
            sock.settimeout(5)
            status_line = sock.recv(4096).split(b"\r\n", 1)[0]
        assert b" 408 " not in status_line, status_line

    async def test_a_stream_outlives_the_body_deadline(self, server: ServerThread):
        """After the body, the app's receive() only waits for a disconnect: no deadline."""
        prompt = {"user_input": "한 선비가 길을 떠나니", "tags": []}
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
            client.stream("POST", "/api/generate", json=prompt) as response,
        ):
            started = time.monotonic()
            events = []
            async for event in read_events(response):
                events.append(event.event)
                if time.monotonic() - started > 3 * READ_TIMEOUT_S:
                    break
        assert response.status_code == 200
        assert events.count("delta") > 1
        assert not {"error", "done", "cancelled"} & set(events)


class TestPlayground:
    async def test_the_page_has_a_policy_that_allows_its_own_inline_code_only(
        self, settings: Settings
    ):
        async with app_client(settings) as client:
            response = await client.get("/")
        policy = response.headers["content-security-policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["default-src"] == "'self'"
        assert directives["object-src"] == "'none'"
        assert directives["frame-ancestors"] == "'none'"
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy
        for kind, code in re.findall(r"<(script|style)>(.*?)</\1>", response.text, re.DOTALL):
            digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in directives[f"{kind}-src"].split()
        assert response.headers["x-content-type-options"] == "nosniff"


METRICS_TOKEN = "scraper-token-0123456789"


class TestMetricsToken:
    async def test_with_a_token_set_metrics_need_it(self, settings: Settings):
        guarded = settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})
        async with app_client(guarded) as client:
            missing = await client.get("/metrics")
            wrong = await client.get("/metrics", headers={"Authorization": "Bearer guess"})
            right = await client.get(
                "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
            )
        assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
        assert missing.json()["error"]["code"] == "unauthorized"
        assert "storytool_http_requests_total" in right.text

    async def test_without_a_token_metrics_are_open(self, settings: Settings):
        async with app_client(settings) as client:
            assert (await client.get("/metrics")).status_code == 200


class TestDocs:
    @pytest.mark.parametrize(("enabled", "status"), [(True, 200), (False, 404)])
    async def test_docs_can_be_switched_off(self, settings: Settings, enabled: bool, status: int):
        async with app_client(settings.model_copy(update={"docs_enabled": enabled})) as client:
            answers = [await client.get(path) for path in ("/docs", "/redoc", "/openapi.json")]
        assert [answer.status_code for answer in answers] == [status] * 3
