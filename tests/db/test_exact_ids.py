"""Ids and user ids compare exactly on every database.

MySQL/MariaDB compare strings by collation, and the tables' default (``utf8mb4_unicode_ci``)
ignores case: without the binary id columns, ``DAVE`` finds ``dave``'s threads and takes over
``dave``'s verdicts. The test database is created with that default, so these tests prove that the
migrations make the columns exact, not the database's settings.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from storytool.evaluations.repository import EvaluationRepository
from storytool.generation.repository import ConversationRepository
from storytool.models import ConversationStatus, Rating
from storytool.threads.repository import ThreadRepository
from tests.factories import create_conversation

UPSTREAM_ID = "resp_" + "bGl0ZWxsbTpjdXN0b21fbGxtX3Byb3ZpZGVyOm9wZW5haTttb2RlbF9pZDo" * 8
"""The shape of a LiteLLM response id: ~450 characters, base64 of the route it took."""


class TestExactIds:
    async def test_a_user_id_in_another_case_is_another_user(self, session: AsyncSession):
        conversation = await create_conversation(session, user_id="dave")
        threads = ThreadRepository(session)
        for other in ("DAVE", "Dave"):
            assert await threads.get(user_id=other, thread_id=conversation.thread_id) is None
            assert await threads.page(user_id=other, limit=10) == []
            assert (
                await threads.conversation_of(user_id=other, conversation_id=conversation.id)
                is None
            )
        assert await threads.get(user_id="dave", thread_id=conversation.thread_id) is not None

    async def test_an_id_in_another_case_is_another_id(self, session: AsyncSession):
        conversation = await create_conversation(session, user_id="dave")
        found = await ThreadRepository(session).conversation_of(
            user_id="dave", conversation_id=conversation.id.upper()
        )
        thread = await ThreadRepository(session).get(
            user_id="dave", thread_id=conversation.thread_id.upper()
        )
        assert found is None
        assert thread is None

    async def test_each_case_of_a_user_id_keeps_its_own_verdict(self, session: AsyncSession):
        conversation = await create_conversation(session, user_id="dave")
        evaluations = EvaluationRepository(session)
        daves = await evaluations.upsert(
            conversation_id=conversation.id, user_id="dave", rating=Rating.LIKE, comment="좋다"
        )
        other = await evaluations.upsert(
            conversation_id=conversation.id, user_id="DAVE", rating=Rating.DISLIKE, comment=None
        )
        assert other.id != daves.id
        await session.refresh(daves)
        assert (daves.user_id, daves.rating, daves.comment) == ("dave", Rating.LIKE, "좋다")

    async def test_upstream_ids_are_stored_whole(self, session: AsyncSession):
        conversation = await create_conversation(session, user_id="dave")
        conversations = ConversationRepository(session)
        assert await conversations.attach_remote_conversation(
            thread_id=conversation.thread_id, remote_id="conv_" + UPSTREAM_ID
        )
        assert await conversations.finish(
            conversation_id=conversation.id,
            status=ConversationStatus.COMPLETED,
            upstream_response_id=UPSTREAM_ID,
        )
        session.expunge_all()
        stored = await ThreadRepository(session).conversation_of(
            user_id="dave", conversation_id=conversation.id
        )
        thread = await ThreadRepository(session).get(
            user_id="dave", thread_id=conversation.thread_id
        )
        assert stored is not None
        assert thread is not None
        assert stored.upstream_response_id == UPSTREAM_ID
        assert thread.remote_conversation_id == "conv_" + UPSTREAM_ID
