from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storytool.db.base import utcnow
from storytool.errors import NotFound
from storytool.evaluations.repository import EvaluationRepository
from storytool.generation.repository import ConversationRepository, new_conversation
from storytool.models import (
    ContentEvaluation,
    Conversation,
    ConversationData,
    ConversationStatus,
    Rating,
    StopReason,
    Thread,
)
from storytool.threads.repository import ThreadRepository
from storytool.threads.service import open_thread
from tests.factories import create_conversation, create_thread


async def count(session: AsyncSession, model: type) -> int:
    return (await session.execute(select(func.count()).select_from(model))).scalar_one()


class TestStartConversation:
    async def test_creates_thread_conversation_and_data_together(self, session: AsyncSession):
        thread = await open_thread(session, user_id="user-a", thread_id=None)
        conversation = await ConversationRepository(session).add(
            new_conversation(thread_id=thread.id, user_input="한 선비 이야기", tags=["선비"])
        )
        assert conversation.status is ConversationStatus.IN_PROGRESS
        thread = await ThreadRepository(session).get(
            user_id="user-a", thread_id=conversation.thread_id
        )
        assert thread is not None
        data = await ConversationRepository(session).get_data(conversation_id=conversation.id)
        assert (data.user_input, data.tags) == ("한 선비 이야기", ["선비"])

    async def test_a_failed_transaction_leaves_nothing_behind(self, session: AsyncSession):
        nested = await session.begin_nested()
        thread = await open_thread(session, user_id="user-a", thread_id=None)
        await ConversationRepository(session).add(
            new_conversation(thread_id=thread.id, user_input="x", tags=[])
        )
        await nested.rollback()
        assert await count(session, Thread) == 0
        assert await count(session, Conversation) == 0
        assert await count(session, ConversationData) == 0

    async def test_another_users_thread_is_refused(self, session: AsyncSession):
        thread = await create_thread(session, user_id="user-a")
        with pytest.raises(NotFound):
            await open_thread(session, user_id="user-b", thread_id=thread.id)
        assert await count(session, Conversation) == 0

    async def test_a_new_turn_moves_the_thread_to_the_top(self, session: AsyncSession):
        old = await create_thread(session, updated_at=utcnow() - timedelta(days=2))
        await create_thread(session, updated_at=utcnow() - timedelta(days=1))
        await create_conversation(session, thread_id=old.id)
        page = await ThreadRepository(session).page(user_id="user-a", limit=10)
        assert page[0].id == old.id


class TestFinish:
    async def test_cancelled_is_not_overwritten_by_completed(self, session: AsyncSession):
        conversation = await create_conversation(session)
        repository = ConversationRepository(session)
        assert await repository.finish(
            conversation_id=conversation.id,
            status=ConversationStatus.CANCELLED,
            stop_reason=StopReason.USER_CANCEL,
        )
        assert not await repository.finish(
            conversation_id=conversation.id, status=ConversationStatus.COMPLETED
        )
        session.expunge_all()
        stored = await ThreadRepository(session).conversation_of(
            user_id="user-a", conversation_id=conversation.id
        )
        assert stored is not None
        assert stored.status is ConversationStatus.CANCELLED
        assert stored.stop_reason is StopReason.USER_CANCEL
        assert stored.finished_at is not None

    async def test_in_progress_is_not_a_final_status(self, session: AsyncSession):
        conversation = await create_conversation(session)
        with pytest.raises(ValueError, match="final status"):
            await ConversationRepository(session).finish(
                conversation_id=conversation.id, status=ConversationStatus.IN_PROGRESS
            )


class TestKeysetPage:
    @pytest.mark.parametrize("page_size", [1, 7, 50])
    async def test_every_thread_once_in_order_with_equal_timestamps(
        self, session: AsyncSession, page_size: int
    ):
        now = utcnow().replace(microsecond=0)
        stamps = [now] * 20 + [now - timedelta(seconds=1)] * 10 + [now + timedelta(seconds=1)] * 5
        for stamp in stamps:
            await create_thread(session, updated_at=stamp)
        await create_thread(session, user_id="user-b", updated_at=now)

        repository = ThreadRepository(session)
        seen: list[Thread] = []
        after = None
        while True:
            page = await repository.page(user_id="user-a", limit=page_size, after=after)
            if not page:
                break
            seen.extend(page)
            after = (page[-1].updated_at, page[-1].id)

        assert len(seen) == len(stamps)
        assert len({thread.id for thread in seen}) == len(stamps)
        keys = [(thread.updated_at, thread.id) for thread in seen]
        assert keys == sorted(keys, reverse=True)
        assert all(thread.user_id == "user-a" for thread in seen)


class TestEvaluationUpsert:
    async def test_second_evaluation_updates_the_first(self, session: AsyncSession):
        conversation = await create_conversation(session)
        repository = EvaluationRepository(session)
        first = await repository.upsert(
            conversation_id=conversation.id, user_id="user-a", rating=Rating.LIKE, comment="좋다"
        )
        second = await repository.upsert(
            conversation_id=conversation.id, user_id="user-a", rating=Rating.DISLIKE, comment=None
        )
        assert second.id == first.id
        assert (second.rating, second.comment) == (Rating.DISLIKE, None)
        assert await count(session, ContentEvaluation) == 1


class TestCascadeDelete:
    async def test_deleting_a_thread_removes_everything_under_it(self, session: AsyncSession):
        conversation = await create_conversation(session)
        await create_conversation(session, thread_id=conversation.thread_id)
        await EvaluationRepository(session).upsert(
            conversation_id=conversation.id, user_id="user-a", rating=Rating.LIKE, comment=None
        )
        kept = await create_conversation(session, user_id="user-b")

        deleted = await ThreadRepository(session).delete(
            user_id="user-a", thread_id=conversation.thread_id
        )

        assert deleted
        assert await count(session, Conversation) == 1
        assert await count(session, ConversationData) == 1
        assert await count(session, ContentEvaluation) == 0
        assert await ThreadRepository(session).conversation_of(
            user_id="user-b", conversation_id=kept.id
        )

    async def test_another_user_cannot_delete(self, session: AsyncSession):
        thread = await create_thread(session, user_id="user-a")
        assert not await ThreadRepository(session).delete(user_id="user-b", thread_id=thread.id)
        assert await count(session, Thread) == 1


class TestOwnership:
    async def test_another_users_rows_are_never_returned(self, session: AsyncSession):
        conversation = await create_conversation(session, user_id="user-a")
        threads = ThreadRepository(session)
        assert (
            await threads.conversation_of(user_id="user-b", conversation_id=conversation.id) is None
        )
        assert await threads.get(user_id="user-b", thread_id=conversation.thread_id) is None
        assert await threads.page(user_id="user-b", limit=100) == []
        assert await threads.conversation_of(user_id="user-a", conversation_id=conversation.id)
