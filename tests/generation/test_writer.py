"""The writer behind the streams: what many stories queue goes out in one transaction, a newer
value replaces an older one, and a story's end drops what is still queued instead of racing it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.config import Settings
from storytool.db.engine import create_engine, create_sessionmaker, write_gate
from storytool.generation.repository import ConversationRepository
from storytool.generation.writer import StageWriter
from storytool.models import Conversation
from tests.factories import create_conversation


async def _conversations(sessionmaker: async_sessionmaker[AsyncSession], n: int) -> list[str]:
    async with sessionmaker.begin() as session:
        return [(await create_conversation(session)).id for _ in range(n)]


async def _stored(
    sessionmaker: async_sessionmaker[AsyncSession], conversation_id: str
) -> tuple[str | None, str | None, str | None]:
    async with sessionmaker() as session:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None
        data = await ConversationRepository(session).get_data(conversation_id=conversation_id)
        return data.base_story, data.story, conversation.upstream_response_id


def _count_commits(sessionmaker: async_sessionmaker[AsyncSession]) -> list[int]:
    commits: list[int] = []
    engine = sessionmaker.kw["bind"]
    event.listen(engine.sync_engine, "commit", lambda _connection: commits.append(1))
    return commits


async def test_queued_values_of_many_stories_go_out_in_one_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first, second, third = await _conversations(sessionmaker, 3)
    commits = _count_commits(sessionmaker)
    writer = StageWriter(sessionmaker, write_gate(sessionmaker, timeout_s=5))

    writer.put(first, story="옛날 옛적")
    writer.put(second, base_story="초고")
    writer.put(third, upstream="resp_third")
    writer.put(first, story="옛날 옛적에 한 선비가")  # the newer partial story replaces the older
    await asyncio.sleep(0)  # the writer takes the batch
    for conversation_id in (first, second, third):
        await writer.settle(conversation_id)

    assert len(commits) == 1
    assert await _stored(sessionmaker, first) == (None, "옛날 옛적에 한 선비가", None)
    assert await _stored(sessionmaker, second) == ("초고", None, None)
    assert await _stored(sessionmaker, third) == (None, None, "resp_third")


async def test_values_still_queued_at_the_end_are_dropped_not_written_after_it(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    (conversation_id,) = await _conversations(sessionmaker, 1)
    writer = StageWriter(sessionmaker, write_gate(sessionmaker, timeout_s=5))

    writer.put(conversation_id, story="반쯤 쓴 이야기", upstream="resp_1")
    await writer.settle(conversation_id)  # the end saves the newer text itself
    await asyncio.sleep(0.05)

    assert await _stored(sessionmaker, conversation_id) == (None, None, None)


async def test_the_end_waits_for_a_batch_in_flight(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    (conversation_id,) = await _conversations(sessionmaker, 1)
    gate = asyncio.Lock()
    writer = StageWriter(sessionmaker, gate)

    async with gate:  # hold the batch just before its transaction
        writer.put(conversation_id, story="먼저 쓴 글")
        await asyncio.sleep(0)
        settling = asyncio.create_task(writer.settle(conversation_id))
        await asyncio.sleep(0.05)
        assert not settling.done()
    await settling

    assert await _stored(sessionmaker, conversation_id) == (None, "먼저 쓴 글", None)


async def test_a_failed_batch_is_logged_and_releases_the_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no-such-folder" / "storytool.db"
    engine = create_engine(Settings(), url=f"sqlite+aiosqlite:///{missing}")
    sessionmaker = create_sessionmaker(engine)
    writer = StageWriter(sessionmaker, write_gate(sessionmaker, timeout_s=5))
    try:
        with caplog.at_level(logging.ERROR, logger="storytool.generation"):
            writer.put("c-1", story="a")
            writer.put("c-2", story="b")
            await asyncio.sleep(0)
            async with asyncio.timeout(5):
                await writer.settle("c-1")
        assert "a write behind 2 generation(s) failed" in caplog.text
    finally:
        await engine.dispose()
