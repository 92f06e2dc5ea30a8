"""Clients that read slowly, or stop reading, hold neither the story back nor the server.

The story's task writes to the event log whatever the reader does (it finishes and is stored while
the reader sits still); the stream to the reader only sends as fast as the socket drains, so
what the server holds per stalled stream is its event log (capped by ``max_output_chars``) and a
socket buffer, not a growing queue. Measured with tracemalloc on an in-process uvicorn server,
with offline stories (8 KB each) that fit in the kernel's socket buffers.

Past the buffers: a server whose connections get a small send buffer, a client that reads nothing
through a receive buffer of 4 KB, and a story of 15,000 characters (a few hundred KB of events)
fill everything on the way, so the server's sends wait on the client. After ``send_timeout_s``
the server drops it; the story is written and saved all the same, and other users are served.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import tracemalloc

import httpx
import pytest
from sqlalchemy import select

from storytool.config import AuthMode, Settings
from storytool.main import create_app
from storytool.models import Conversation, ConversationStatus
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server_thread import ServerThread
from tests.generation.conftest import Database, generate, read_events, settled, story_of
from tests.generation.test_openai_upstream import DRAFT, DRAFT_MODEL, PROMPT, REFINE_MODEL, on_fake
from tests.stalled_client import StalledClient, until_dropped

READERS = 8
BODY = json.dumps(
    {"user_input": "느리게 읽는 손님이 이야기를 청하니", "tags": [], "options": {"length": "long"}}
).encode()


async def stalled_generation(port: int, headers: dict[str, str] | None = None) -> StalledClient:
    return await StalledClient.request(port, "POST", "/api/generate", body=BODY, headers=headers)


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def test_stalled_readers_do_not_hold_the_story_back_nor_grow_memory(
    settings: Settings, database: Database
):
    app_settings = settings.model_copy(
        update={"offline_chars_per_second": 20_000.0, "max_running_per_user": READERS}
    )
    with ServerThread(create_app(app_settings)) as server:
        warm_up = await stalled_generation(server.port)
        await warm_up.read_to_end()  # first-request caches (SQL compilation, pools) are not theirs
        warm_up.close()
        tracemalloc.start()
        try:
            before = traced()
            readers = [await stalled_generation(server.port) for _ in range(READERS)]
            # The stories finish and are stored although nobody has read a byte of them.
            async with asyncio.timeout(20):
                while (await database.counts())[1] <= READERS or not await all_completed(database):
                    await asyncio.sleep(0.1)
            held = traced() - before
            await asyncio.sleep(1.0)
            later = traced() - before
        finally:
            tracemalloc.stop()
        # Read at once. A stalled socket whose window reopens may not say so (see read_to_end):
        # its rest comes at the server's next zero-window probe, the probes' spacing doubling
        # over the stall. Read one after another, each reader's stall outlasted the one before
        # (seen under load: waits of 1.7, 3.4, 6.9, 13.6, 26.9 s, then past 120 s).
        bodies = await asyncio.gather(*(reader.read_to_end() for reader in readers))
        for reader in readers:
            reader.close()

    for body in bodies:
        names = [line for line in body.splitlines() if line.startswith(b"event:")]
        assert names[0] == b"event: meta"
        assert names[-1] == b"event: done"
    streamed = sum(len(body) for body in bodies)
    assert streamed > READERS * 4096  # more than the readers' receive buffers could take
    assert later - held < 64 * 1024  # flat while the readers sit still
    # Per stalled stream: its event log, socket buffers and, on MariaDB, a pooled connection
    # (measured: about 60 KiB on SQLite, 350 KiB on MariaDB).
    assert held / READERS < 512 * 1024


async def all_completed(database: Database) -> bool:
    async with database.sessionmaker() as session:
        statuses = (await session.scalars(select(Conversation.status))).all()
    return all(status is ConversationStatus.COMPLETED for status in statuses)


LONG_STORY = (
    "각설. 선비가 깊은 산중에 이르매 한 노인이 나타나 '그대의 정성이 닿았도다' 하더라. " * 300
)[:15_000]
SEND_TIMEOUT_S = 3.0
"""Long enough that a client the test process reads for is never taken for frozen on a busy
machine; the frozen one is waited for, not timed."""
SEND_BUFFER = 4096
FROZEN = {"X-User-Id": "frozen"}
OTHER = {"X-User-Id": "other"}


@pytest.fixture
def frozen_settings(settings: Settings, fake_openai: FakeOpenAI) -> Settings:
    fake_openai.behaviour.texts = {DRAFT_MODEL: DRAFT, REFINE_MODEL: LONG_STORY}
    return on_fake(
        settings,
        fake_openai,
        auth_mode=AuthMode.HEADER,
        openai_timeout_s=10.0,
        send_timeout_s=SEND_TIMEOUT_S,
        max_resume_streams_per_user=1,
    )


def conversation_of(head: bytes) -> str:
    found = re.search(rb'"conversation_id":"([^"]+)"', head)
    assert found is not None, head
    return found.group(1).decode()


class TestFrozenReaders:
    async def test_a_frozen_story_reader_is_dropped_and_the_story_saved_while_others_are_served(
        self, frozen_settings: Settings, database: Database, drops: list[str]
    ):
        with ServerThread(create_app(frozen_settings), send_buffer=SEND_BUFFER) as server:
            frozen = await stalled_generation(server.port, FROZEN)
            try:
                conversation_id = conversation_of(await frozen.read_until(b"event: stage"))
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                    others = await generate(client, json.loads(BODY), headers=OTHER)
                await until_dropped(drops, "POST /api/generate", send_timeout_s=SEND_TIMEOUT_S)
                assert await settled(database, conversation_id) is ConversationStatus.COMPLETED
                rest = await frozen.read_to_end()
            finally:
                frozen.close()

        assert b"event: done" not in rest  # cut off: the stream was far from its end
        _conversation, data = await database.conversation(conversation_id)
        assert others[-1].event == "done"
        # The frozen reader's story is all there, as the other user's (the same request to the
        # same model server, whose long answer the length's token limit may cut).
        assert data.story == story_of(others)
        assert len(data.story) > 10_000

    async def test_a_frozen_replay_reader_is_dropped_and_gives_its_place_back(
        self, frozen_settings: Settings, drops: list[str]
    ):
        with ServerThread(create_app(frozen_settings), send_buffer=SEND_BUFFER) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                events = await generate(client, PROMPT, headers=FROZEN)
                path = f"/api/generate/{events[0].data['conversation_id']}/events"
                frozen = await StalledClient.request(server.port, "GET", path, headers=FROZEN)
                try:
                    await frozen.read_until(b"event: meta")
                    # One resumed stream per user here: the frozen one holds it.
                    refused = await client.get(path, headers=FROZEN)
                    await until_dropped(drops, f"GET {path}", send_timeout_s=SEND_TIMEOUT_S)
                    rest = await frozen.read_to_end()
                finally:
                    frozen.close()
                async with client.stream("GET", path, headers=FROZEN) as response:
                    assert response.status_code == 200
                    replay = [event async for event in read_events(response)]

        assert refused.status_code == 429
        assert b"event: done" not in rest
        assert replay == events
