"""A real uvicorn server on 127.0.0.1 for stream tests (ASGITransport buffers whole bodies), and
an SSE reader for its answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.config import Settings
from storytool.db.engine import create_engine, create_sessionmaker
from storytool.generation.repository import ConversationRepository
from storytool.main import create_app
from storytool.models import Conversation, ConversationData, ConversationStatus, Thread
from tests.fakes.server_thread import ServerThread


@pytest.fixture
async def sessionmaker(committed_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the test's database that commit for real."""
    engine = create_engine(Settings(), url=committed_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app under uvicorn on loopback, and a client for it."""
    with ServerThread(create_app(settings)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            yield client


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


def story_of(events: list[Event], stage: str = "refine") -> str:
    """The text the events streamed for one stage: the refined story, or the draft."""
    return "".join(
        event.data["text"]
        for event in events
        if event.event == "delta" and event.data["stage"] == stage
    )


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
async def client(fast_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(fast_settings) as client:
        yield client


async def generate(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str] | None = None
) -> list[Event]:
    """Every event of a new generation, read to the end of its stream."""
    async with client.stream("POST", "/api/generate", json=body, headers=headers) as response:
        assert response.status_code == 200
        return [event async for event in read_events(response)]


async def cancel_when(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    ready: Callable[[list[Event]], bool],
    *,
    pause_s: float = 0.0,
) -> tuple[list[Event], httpx.Response]:
    """Starts a generation, cancels it once ``ready(events so far)`` (and ``pause_s``), then reads
    its stream to the end. The events and the cancel's answer."""
    events: list[Event] = []
    async with client.stream("POST", "/api/generate", json=body) as response:
        reader = read_events(response)
        async for event in reader:
            events.append(event)
            if ready(events):
                break
        await asyncio.sleep(pause_s)
        answer = await client.post(
            "/api/cancelGeneration", json={"conversation_id": events[0].data["conversation_id"]}
        )
        events += [event async for event in reader]
    return events, answer


def deltas(count: int, *, stage: str = "refine") -> Callable[[list[Event]], bool]:
    """True once ``count`` deltas of ``stage`` have arrived."""
    return lambda events: (
        sum(event.event == "delta" and event.data["stage"] == stage for event in events) == count
    )


async def until_deltas(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    count: int,
    headers: dict[str, str] | None = None,
    *,
    stage: str = "refine",
) -> list[Event]:
    """Starts a generation, reads up to its ``count``-th delta of ``stage``, then
    disconnects."""
    seen: list[Event] = []
    async with client.stream("POST", "/api/generate", json=body, headers=headers) as response:
        assert response.status_code == 200
        async for event in read_events(response):
            seen.append(event)
            if deltas(count, stage=stage)(seen):
                break
    return seen


async def settled(database: Database, conversation_id: str) -> ConversationStatus:
    """The conversation's status once it has left ``in_progress``."""
    for _ in range(200):
        conversation, _data = await database.conversation(conversation_id)
        if conversation.status is not ConversationStatus.IN_PROGRESS:
            return conversation.status
        await asyncio.sleep(0.05)
    raise AssertionError("the generation never ended")
