"""A real uvicorn server on loopback for the client, and two users of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from storytool.client import StorytoolClient
from storytool.config import AuthMode, Settings
from storytool.main import create_app
from tests.fakes.server_thread import ServerThread


@pytest.fixture
def client_settings(settings: Settings) -> Settings:
    """Offline stories at a pace that finishes a short story in a fraction of a second, users
    named by ``X-User-Id`` so tests can be two people."""
    return settings.model_copy(
        update={"offline_chars_per_second": 3000.0, "auth_mode": AuthMode.HEADER}
    )


@pytest.fixture
def server(client_settings: Settings) -> Iterator[ServerThread]:
    with ServerThread(create_app(client_settings)) as server:
        yield server


@pytest.fixture
async def alice(server: ServerThread) -> AsyncIterator[StorytoolClient]:
    async with StorytoolClient(server.url, user_id="alice", reconnect_backoff=0.01) as client:
        yield client


@pytest.fixture
async def bob(server: ServerThread) -> AsyncIterator[StorytoolClient]:
    async with StorytoolClient(server.url, user_id="bob") as client:
        yield client
