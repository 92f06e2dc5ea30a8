"""The database goes away mid-stream.

Mid-stream the story's events still flow (they live in memory), its writes fail, and the stream
ends with one ``error``; the conversation is not left ``in_progress``: once the database returns,
the text that was streamed is stored and the conversation is ``failed``. Requests that write
while it is away answer 503 with Retry-After, never 500. On SQLite the outage is
another process holding the write lock (``BEGIN EXCLUSIVE``) past the busy timeout; on MariaDB a
TCP proxy between the server and the database drops every connection and refuses new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import make_url

from storytool.config import Settings
from storytool.models import ConversationStatus
from tests.generation.conftest import Database, read_events, serving, story_of

PROMPT = {"user_input": "한 선비가 길을 떠나니", "tags": [], "options": {"length": "long"}}


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target from its own event loop in a background thread (the
    server's start-up talks to the database while the test's loop waits for it); ``cut`` drops
    every connection and refuses new ones until ``restore``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def start(self) -> None:
        self._call(self._listen())

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()
        self._writers.discard(writer)

    def cut(self) -> None:
        self._call(self._cut())

    async def _cut(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()
        self._server = None

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@dataclass
class Outage:
    """Takes the test's database away from the server and gives it back."""

    url: str
    proxy: TcpProxy | None = None
    _lock: sqlite3.Connection | None = None

    @property
    def server_url(self) -> str:
        if self.proxy is None:
            return self.url
        return make_url(self.url).set(port=self.proxy.port).render_as_string(hide_password=False)

    def begin(self) -> None:
        if self.proxy is not None:
            self.proxy.cut()
            return
        self._lock = sqlite3.connect(make_url(self.url).database or "", isolation_level=None)
        self._lock.execute("BEGIN EXCLUSIVE")

    def end(self) -> None:
        if self.proxy is not None:
            self.proxy.start()
        elif self._lock is not None:
            self._lock.execute("ROLLBACK")
            self._lock.close()


@pytest.fixture
def outage(committed_url: str) -> Iterator[Outage]:
    if committed_url.startswith("sqlite"):
        yield Outage(committed_url)
        return
    target = make_url(committed_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 3306)
    proxy.start()
    yield Outage(committed_url, proxy)
    proxy.close()


def outage_settings(settings: Settings, outage: Outage) -> Settings:
    return settings.model_copy(
        update={
            "database_url": outage.server_url,
            "offline_chars_per_second": 800.0,
            "db_busy_timeout_s": 0.2,
        }
    )


async def test_database_gone_mid_stream_ends_with_error_and_the_text_lands_when_it_returns(
    settings: Settings, outage: Outage, database: Database
):
    async with serving(outage_settings(settings, outage)) as client:
        events = []
        async with client.stream("POST", "/api/generate", json=PROMPT) as response:
            async for event in read_events(response):
                events.append(event)
                if event.event == "delta" and len(events) == 8:
                    outage.begin()
        conversation_id = events[0].data["conversation_id"]
        while_away = [
            await client.post(
                "/api/updateEvaluation", json={"conversation_id": conversation_id, "rating": "like"}
            ),
            await client.post("/api/generate", json=PROMPT),
        ]
        outage.end()
        status = await settled_within(database, conversation_id, seconds=15)

    names = [event.event for event in events]
    assert names[-1] == "error"
    assert names.count("error") == 1
    for answer in while_away:  # writes while the database is away: 503 to retry, never 500
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "database_unavailable"
        assert int(answer.headers["retry-after"]) > 0
    assert status is ConversationStatus.FAILED
    _conversation, data = await database.conversation(conversation_id)
    assert data.story == story_of(events) != ""


async def settled_within(
    database: Database, conversation_id: str, *, seconds: float
) -> ConversationStatus:
    """The conversation's status once it has left ``in_progress``; fails after ``seconds``."""
    async with asyncio.timeout(seconds):
        while True:
            conversation, _data = await database.conversation(conversation_id)
            if conversation.status is not ConversationStatus.IN_PROGRESS:
                return conversation.status
            await asyncio.sleep(0.1)


async def test_starts_that_pile_up_while_the_database_is_away_all_answer_503_promptly(
    settings: Settings, outage: Outage
):
    """Twenty starts at once against a locked SQLite file (busy timeout 0.2 s) or a MariaDB that
    refuses connections: each answers 503 within about its own timeout, not one after another
    behind the others' (20 x 0.2 s)."""
    roomy = outage_settings(settings, outage).model_copy(
        update={"max_running_per_user": 100, "rate_limit": "1000/minute"}
    )
    async with serving(roomy) as client:
        outage.begin()
        try:
            started = time.perf_counter()
            answers = await asyncio.gather(
                *(client.post("/api/generate", json=PROMPT) for _ in range(20))
            )
            elapsed = time.perf_counter() - started
        finally:
            outage.end()

    assert [answer.status_code for answer in answers] == [503] * 20
    assert {answer.json()["error"]["code"] for answer in answers} == {"database_unavailable"}
    assert elapsed < 2.0
