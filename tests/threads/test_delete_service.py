"""ThreadService.delete's two neighbours: the upstream conversation it deletes after the commit,
and the running generation it cancels before. Both are our own Protocols, played here by small
recording stand-ins."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.errors import NotFound
from storytool.models import Conversation, Thread
from storytool.threads.cursor import CursorSigner
from storytool.threads.service import ThreadService
from tests.factories import create_conversation, create_thread
from tests.history_app import ALICE, BOB, count

Sessions = async_sessionmaker[AsyncSession]


class Upstream:
    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.deleted: list[str] = []

    async def delete_conversation(self, conversation_id: str) -> None:
        if self.fail:
            raise ConnectionError("upstream unreachable")
        self.deleted.append(conversation_id)


class Generations:
    """Records, at the moment of the cancel, whether the thread's rows still existed."""

    def __init__(self, db: Sessions) -> None:
        self.db = db
        self.cancelled: list[tuple[str, str, int]] = []

    async def cancel_thread(self, *, user_id: str, thread_id: str) -> None:
        rows = await count(self.db, Conversation, thread_id=thread_id)
        self.cancelled.append((user_id, thread_id, rows))


async def seed(db: Sessions, *, remote_conversation_id: str | None) -> Thread:
    async with db() as session:
        thread = await create_thread(session, user_id=ALICE)
        thread.remote_conversation_id = remote_conversation_id
        await create_conversation(session, user_id=ALICE, thread_id=thread.id)
        await session.commit()
        return thread


def service(db: Sessions, upstream: Upstream, generations: Generations | None = None):
    generations = generations or Generations(db)
    return ThreadService(
        sessionmaker=db, cursors=CursorSigner("test"), remote=upstream, generations=generations
    )


class TestUpstreamConversation:
    async def test_is_deleted_with_the_thread(self, db: Sessions):
        thread = await seed(db, remote_conversation_id="conv_abc")
        upstream = Upstream()

        await service(db, upstream).delete(user_id=ALICE, thread_id=thread.id)

        assert upstream.deleted == ["conv_abc"]
        assert await count(db, Thread, id=thread.id) == 0

    async def test_a_failure_is_logged_and_the_delete_stands(
        self, db: Sessions, caplog: pytest.LogCaptureFixture
    ):
        thread = await seed(db, remote_conversation_id="conv_abc")

        with caplog.at_level(logging.WARNING, logger="storytool.threads"):
            await service(db, Upstream(fail=True)).delete(user_id=ALICE, thread_id=thread.id)

        assert await count(db, Thread, id=thread.id) == 0
        assert "conv_abc" in caplog.text
        assert thread.id in caplog.text

    async def test_a_thread_without_one_calls_nothing_upstream(self, db: Sessions):
        thread = await seed(db, remote_conversation_id=None)
        upstream = Upstream()

        await service(db, upstream).delete(user_id=ALICE, thread_id=thread.id)

        assert upstream.deleted == []

    async def test_another_users_thread_is_not_touched_upstream(self, db: Sessions):
        thread = await seed(db, remote_conversation_id="conv_abc")
        upstream = Upstream()

        with pytest.raises(NotFound):
            await service(db, upstream).delete(user_id=BOB, thread_id=thread.id)

        assert upstream.deleted == []
        assert await count(db, Thread, id=thread.id) == 1


class TestRunningGeneration:
    async def test_is_cancelled_before_the_rows_go(self, db: Sessions):
        thread = await seed(db, remote_conversation_id=None)
        generations = Generations(db)

        await service(db, Upstream(), generations).delete(user_id=ALICE, thread_id=thread.id)

        assert generations.cancelled == [(ALICE, thread.id, 1)]
        assert await count(db, Conversation, thread_id=thread.id) == 0

    async def test_is_not_cancelled_for_another_users_thread(self, db: Sessions):
        thread = await seed(db, remote_conversation_id=None)
        generations = Generations(db)

        with pytest.raises(NotFound):
            await service(db, Upstream(), generations).delete(user_id=BOB, thread_id=thread.id)

        assert generations.cancelled == []
