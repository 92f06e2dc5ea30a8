"""Stories that open a new thread are written together: the starts that arrive while a batch is
being written go out in the next one, a row at fault fails its own start only, and a start
cancelled on the way leaves nothing behind.

Each test holds the write gate so its batch waits there, and queues the next starts meanwhile:
what is batched with what is forced, not left to timing."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy.exc
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.db.base import new_id
from storytool.generation.repository import ConversationRepository, new_conversation
from storytool.generation.starts import StartWriter
from storytool.models import Conversation, ConversationData, Thread
from tests.factories import create_thread
from tests.generation.batching import HeldGate, count_statements


class Starts:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], gate: HeldGate) -> None:
        self.writer = StartWriter(sessionmaker, gate)
        self.gate = gate

    def start(
        self, user_input: str, *, thread_id: str | None = None
    ) -> tuple[str, asyncio.Task[None]]:
        """A new thread's first story, being written; its thread id."""
        thread = Thread(id=thread_id or new_id(), user_id="user-a")
        conversation = new_conversation(thread_id=thread.id, user_input=user_input, tags=["선비"])
        write = self.writer.write(thread, conversation, conversation.data)
        return thread.id, asyncio.create_task(write)

    async def first_in_flight(self, user_input: str) -> tuple[str, asyncio.Task[None]]:
        """A start whose batch has been taken and waits at the gate."""
        await self.gate.hold()
        started = self.start(user_input)
        await self.gate.waiting.wait()
        return started


async def stored_inputs(
    sessionmaker: async_sessionmaker[AsyncSession], thread_id: str
) -> list[str]:
    """The user inputs of the thread's conversations, read back (nothing if it is not there)."""
    async with sessionmaker() as session:
        conversations = (
            await session.scalars(select(Conversation).where(Conversation.thread_id == thread_id))
        ).all()
        repository = ConversationRepository(session)
        return [(await repository.get_data(conversation_id=c.id)).user_input for c in conversations]


async def test_starts_that_arrive_during_a_batch_go_out_together_in_the_next(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    starts = Starts(sessionmaker, HeldGate())
    statements = count_statements(sessionmaker)
    first = await starts.first_in_flight("첫 이야기")
    queued = [starts.start(f"{n}번째 이야기") for n in range(2, 11)]
    starts.gate.release()
    await asyncio.gather(first[1], *(task for _thread, task in queued))

    assert statements.count("INSERT INTO threads") == 2  # the first alone, then the nine
    assert statements.count("INSERT INTO conversation_data") == 2
    assert await stored_inputs(sessionmaker, first[0]) == ["첫 이야기"]
    for n, (thread_id, _task) in enumerate(queued, start=2):
        assert await stored_inputs(sessionmaker, thread_id) == [f"{n}번째 이야기"]


async def test_a_row_that_cannot_be_written_fails_its_own_start_only(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        taken = (await create_thread(session)).id
    starts = Starts(sessionmaker, HeldGate())
    first = await starts.first_in_flight("첫 이야기")
    before = starts.start("앞 이야기")
    clash = starts.start("겹친 이야기", thread_id=taken)  # a thread id already there
    after = starts.start("뒤 이야기")
    starts.gate.release()
    await asyncio.gather(first[1], before[1], after[1])

    with pytest.raises(sqlalchemy.exc.IntegrityError):
        await clash[1]
    assert await stored_inputs(sessionmaker, before[0]) == ["앞 이야기"]
    assert await stored_inputs(sessionmaker, after[0]) == ["뒤 이야기"]
    assert await stored_inputs(sessionmaker, taken) == []


async def test_a_start_cancelled_before_its_batch_is_taken_writes_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    starts = Starts(sessionmaker, HeldGate())
    first = await starts.first_in_flight("첫 이야기")
    cancelled = starts.start("그만둔 이야기")
    await asyncio.sleep(0)  # it is queued behind the batch at the gate
    cancelled[1].cancel()
    starts.gate.release()
    await first[1]

    with pytest.raises(asyncio.CancelledError):
        await cancelled[1]
    assert await stored_inputs(sessionmaker, first[0]) == ["첫 이야기"]
    async with sessionmaker() as session:
        assert await session.get(Thread, cancelled[0]) is None


async def test_a_start_cancelled_while_its_batch_is_written_leaves_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    starts = Starts(sessionmaker, HeldGate())
    thread_id, task = await starts.first_in_flight("그만둔 이야기")
    task.cancel()
    await asyncio.sleep(0)  # the cancel reaches the start while its rows wait at the gate
    starts.gate.release()

    with pytest.raises(asyncio.CancelledError):
        await task
    later = starts.start("다음 이야기")
    await later[1]  # written after the cancelled start's batch: that one is settled too

    assert await stored_inputs(sessionmaker, later[0]) == ["다음 이야기"]
    async with sessionmaker() as session:
        assert await session.get(Thread, thread_id) is None
        for model in (Conversation, ConversationData):
            assert await session.scalar(select(func.count()).select_from(model)) == 1


async def test_a_database_failure_fails_every_start_of_its_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    class FailingGate(HeldGate):
        async def __aenter__(self) -> None:
            await super().__aenter__()
            self.release()
            raise sqlalchemy.exc.TimeoutError("no SQLite write got through in 5 s")

    starts = Starts(sessionmaker, FailingGate())
    first = await starts.first_in_flight("첫 이야기")
    second = starts.start("둘째 이야기")
    starts.gate.release()

    for _thread_id, task in (first, second):
        with pytest.raises(sqlalchemy.exc.TimeoutError):
            await task
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Thread)) == 0
