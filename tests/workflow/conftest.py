"""A real server in auth_mode=header (streams and cancels need uvicorn, and two users need a
gateway header), with a client per user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from storytool.config import AuthMode, Settings
from storytool.main import create_app
from tests.fakes.server_thread import ServerThread
from tests.generation.conftest import Event, database, fast_settings, read_events
from tests.stalled_client import drops

__all__ = ["database", "drops", "fast_settings"]
"""Fixtures of other folders this one uses."""


@dataclass
class Server:
    url: str

    def as_user(self, user_id: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30, headers={"X-User-Id": user_id})


@pytest.fixture
def workflow_settings(fast_settings: Settings) -> Settings:
    return fast_settings.model_copy(update={"auth_mode": AuthMode.HEADER})


@pytest.fixture
async def server(workflow_settings: Settings) -> AsyncIterator[Server]:
    with ServerThread(create_app(workflow_settings)) as running:
        yield Server(running.url)


@pytest.fixture
async def alice(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with server.as_user("alice") as client:
        yield client


@pytest.fixture
async def bob(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with server.as_user("bob") as client:
        yield client


async def write(client: httpx.AsyncClient, body: dict[str, Any]) -> list[Event]:
    """Every event of one generation, read to its end."""
    async with client.stream("POST", "/api/generate", json=body) as response:
        assert response.status_code == 200, await response.aread()
        return [event async for event in read_events(response)]


def ids_of(events: list[Event]) -> tuple[str, str]:
    """(thread_id, conversation_id) from the meta event."""
    return events[0].data["thread_id"], events[0].data["conversation_id"]
