"""A real uvicorn server on 127.0.0.1 for stream tests (ASGITransport buffers whole bodies), and
an SSE reader for its answers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from storytool.config import Settings
from storytool.db.engine import create_engine, create_sessionmaker
from storytool.generation.repository import ConversationRepository
from storytool.main import create_app
from storytool.models import Conversation, ConversationData, Thread


class LiveServer:
    """The app under uvicorn in its own thread, on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        self._server = uvicorn.Server(
            uvicorn.Config(create_app(settings), log_level="warning", timeout_graceful_shutdown=2)
        )
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def __enter__(self) -> LiveServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the app server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)


@dataclass(frozen=True)
class Event:
    id: int
    event: str
    data: dict[str, Any]


async def read_events(response: httpx.Response) -> AsyncIterator[Event]:
    """Parses ``text/event-stream``: one :class:`Event` per blank-line-terminated block;
    comment lines (pings) are skipped."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in fields:
                yield Event(
                    int(fields["id"]), fields.get("event", "message"), json.loads(fields["data"])
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def story_of(events: list[Event]) -> str:
    return "".join(event.data["text"] for event in events if event.event == "delta")


class Database:
    """Reads what the server stored, through its own engine."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(Settings(), url=url)
        self.sessionmaker = create_sessionmaker(self.engine)

    async def conversation(self, conversation_id: str) -> tuple[Conversation, ConversationData]:
        async with self.sessionmaker() as session:
            conversation = await session.get(Conversation, conversation_id)
            assert conversation is not None
            data = await ConversationRepository(session).get_data(conversation_id=conversation_id)
            return conversation, data

    async def thread(self, thread_id: str) -> Thread:
        async with self.sessionmaker() as session:
            thread = await session.get(Thread, thread_id)
            assert thread is not None
            return thread

    async def counts(self) -> tuple[int, int]:
        async with self.sessionmaker() as session:
            threads = await session.scalar(select(func.count()).select_from(Thread))
            conversations = await session.scalar(select(func.count()).select_from(Conversation))
            return threads or 0, conversations or 0


@pytest.fixture
async def database(committed_url: str) -> AsyncIterator[Database]:
    database = Database(committed_url)
    yield database
    await database.engine.dispose()


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    """Offline stories streamed quickly: a medium story in a fraction of a second."""
    return settings.model_copy(update={"offline_chars_per_second": 4000.0})


@pytest.fixture
def server(fast_settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(fast_settings) as live:
        yield live
