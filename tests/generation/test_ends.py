"""Stories' ends are written together: ends that arrive while a batch is being written go out in
the next one, and a batch holding a story that someone else ended first is written one story at
a time, so that story learns the status that held while the others still complete.

The write gate is held so the first end waits in it while the next ones queue: what is batched
with what is forced, not left to timing."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.generation.ends import EndWriter, StoryEnd
from storytool.generation.repository import ConversationRepository, finish_values
from storytool.models import Conversation, ConversationStatus, StopReason, Thread
from tests.factories import create_conversation
from tests.generation.batching import HeldGate, count_statements


async def running(sessionmaker: async_sessionmaker[AsyncSession], n: int) -> list[Conversation]:
    async with sessionmaker.begin() as session:
        return [await create_conversation(session) for _ in range(n)]


def completed(conversation: Conversation, number: int) -> StoryEnd:
    return StoryEnd(
        conversation_id=conversation.id,
        thread_id=conversation.thread_id,
        finish=finish_values(ConversationStatus.COMPLETED, usage={"output_tokens": 50}),
        text={"base_story": f"초고 {number}", "story": f"이야기 {number}"},
        title=f"제목 {number}",
        recommendations=[f"다음 {number}"],
    )


async def stored(
    sessionmaker: async_sessionmaker[AsyncSession], conversation: Conversation
) -> tuple[ConversationStatus, str | None, str | None, str | None]:
    """Status, story, the story's title and its thread's title, as read back."""
    async with sessionmaker() as session:
        row = await session.get(Conversation, conversation.id)
        thread = await session.get(Thread, conversation.thread_id)
        assert row is not None
        assert thread is not None
        data = await ConversationRepository(session).get_data(conversation_id=conversation.id)
        return row.status, data.story, data.title, thread.title


async def test_ends_that_arrive_during_a_batch_go_out_together_in_the_next(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    conversations = await running(sessionmaker, 5)
    gate = HeldGate()
    writer = EndWriter(sessionmaker, gate)
    statements = count_statements(sessionmaker)
    await gate.hold()
    first = asyncio.create_task(writer.write(completed(conversations[0], 0)))
    await gate.waiting.wait()
    rest = [
        asyncio.create_task(writer.write(completed(conversation, n)))
        for n, conversation in enumerate(conversations[1:], start=1)
    ]
    gate.release()

    assert await asyncio.gather(first, *rest) == [None] * 5  # every end held
    for table in ("conversations", "conversation_data", "threads"):  # alone, then the four
        assert sum(s.startswith(f"UPDATE {table} SET") for s in statements) == 2
    for n, conversation in enumerate(conversations):
        assert await stored(sessionmaker, conversation) == (
            ConversationStatus.COMPLETED,
            f"이야기 {n}",
            f"제목 {n}",
            f"제목 {n}",
        )


async def test_a_story_ended_by_someone_else_first_learns_it_and_the_others_complete(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first, cancelled, other = await running(sessionmaker, 3)
    async with sessionmaker.begin() as session:  # a cancel that committed first
        await ConversationRepository(session).finish(
            conversation_id=cancelled.id,
            status=ConversationStatus.CANCELLED,
            stop_reason=StopReason.USER_CANCEL,
        )
    gate = HeldGate()
    writer = EndWriter(sessionmaker, gate)
    await gate.hold()
    alone = asyncio.create_task(writer.write(completed(first, 0)))
    await gate.waiting.wait()
    batch = [
        asyncio.create_task(writer.write(completed(conversation, n)))
        for n, conversation in ((1, cancelled), (2, other))
    ]
    gate.release()

    assert await asyncio.gather(alone, *batch) == [None, ConversationStatus.CANCELLED, None]
    # The text written is kept whichever end held; the title only goes with the end that held.
    assert await stored(sessionmaker, cancelled) == (
        ConversationStatus.CANCELLED,
        "이야기 1",
        None,
        None,
    )
    assert await stored(sessionmaker, other) == (
        ConversationStatus.COMPLETED,
        "이야기 2",
        "제목 2",
        "제목 2",
    )


async def test_an_end_whose_story_is_cancelled_while_its_batch_is_written_is_saved(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    (conversation,) = await running(sessionmaker, 1)
    gate = HeldGate()
    writer = EndWriter(sessionmaker, gate)
    await gate.hold()
    end = asyncio.create_task(writer.write(completed(conversation, 0)))
    await gate.waiting.wait()
    end.cancel()
    await asyncio.sleep(0)  # the cancel reaches the story while its end waits at the gate
    gate.release()

    with pytest.raises(asyncio.CancelledError):
        await end
    later = await running(sessionmaker, 1)
    assert await writer.write(completed(later[0], 1)) is None  # after the first batch
    assert await stored(sessionmaker, conversation) == (
        ConversationStatus.COMPLETED,
        "이야기 0",
        "제목 0",
        "제목 0",
    )
