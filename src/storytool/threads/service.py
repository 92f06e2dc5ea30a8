"""The caller's story history: list, detail and delete; and who owns what.

A thread is its user's, and a conversation is the user's whose thread holds it: the functions
below are the one way every domain asks that (in the caller's session and transaction), so another
user's thread or conversation answers exactly like a missing one (404) everywhere. Every read
filters by the caller's user id. Reads cost a constant number of queries whatever the page or
thread size: the list is one keyset query with correlated subqueries for each thread's figures;
the detail is the thread plus one joined query over its conversations.
"""

from __future__ import annotations

import logging
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.errors import NotFound
from storytool.evaluations.schemas import Evaluation
from storytool.models import Conversation, Thread
from storytool.threads.cursor import CursorSigner
from storytool.threads.repository import ThreadRepository
from storytool.threads.schemas import (
    ConversationDetail,
    HistoryPage,
    SelectedVariant,
    ThreadDetail,
    ThreadSummary,
)
from storytool.threads.variants import VariantRepository, group_variants

logger = logging.getLogger("storytool.threads")


async def conversation_of(
    session: AsyncSession, *, user_id: str, conversation_id: str, field: str = "conversation_id"
) -> Conversation:
    """The user's conversation; 404 naming ``field`` for a missing one or another user's."""
    found = await ThreadRepository(session).conversation_of(
        user_id=user_id, conversation_id=conversation_id
    )
    if found is None:
        raise NotFound("no such conversation", field=field)
    return found


async def open_thread(session: AsyncSession, *, user_id: str, thread_id: str | None) -> Thread:
    """The thread a new conversation goes into: the user's ``thread_id``, marked active, or a
    new one; 404 for a thread not the user's."""
    threads = ThreadRepository(session)
    if thread_id is None:
        return await threads.add(user_id=user_id)
    found = await threads.get(user_id=user_id, thread_id=thread_id)
    if found is None:
        raise NotFound("no such thread", field="thread_id")
    await threads.touch(thread_id=found.id)
    return found


async def thread_of(session: AsyncSession, *, user_id: str, thread_id: str) -> Thread | None:
    return await ThreadRepository(session).get(user_id=user_id, thread_id=thread_id)


async def touch_thread(session: AsyncSession, *, thread_id: str, title: str | None = None) -> None:
    """New activity in the thread; its title set from ``title`` if it has none yet."""
    await ThreadRepository(session).touch(thread_id=thread_id, title=title)


async def title_threads(session: AsyncSession, titles: list[tuple[str, str]]) -> None:
    """:func:`touch_thread` with a title, for many (thread id, title) pairs at once."""
    await ThreadRepository(session).touch_titled(titles)


class RemoteConversations(Protocol):
    """Where a thread's context lives upstream when ``remote_conversations`` is on (the LLM
    provider)."""

    async def delete_conversation(self, conversation_id: str) -> None: ...


class RunningGenerations(Protocol):
    """Stops a thread's running generation before the thread is deleted, so its task does not
    write into rows that are gone."""

    async def cancel_thread(self, *, user_id: str, thread_id: str) -> None: ...


class ThreadService:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        cursors: CursorSigner,
        remote: RemoteConversations | None,
        generations: RunningGenerations,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._cursors = cursors
        self._remote = remote
        self._generations = generations

    async def history(self, *, user_id: str, limit: int, cursor: str | None) -> HistoryPage:
        after = None if cursor is None else self._cursors.load(cursor, user_id=user_id)
        async with self._sessionmaker() as session:
            # One row past the page says whether another page follows.
            rows = await ThreadRepository(session).summaries(
                user_id=user_id, limit=limit + 1, after=after
            )
        items = [
            ThreadSummary(
                id=thread.id,
                title=thread.title,
                last_status=last_status,
                conversation_count=total,
                preview=preview,
                created_at=thread.created_at,
                updated_at=thread.updated_at,
            )
            for thread, total, last_status, preview in rows[:limit]
        ]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1][0]
            next_cursor = self._cursors.dump((last.updated_at, last.id), user_id=user_id)
        return HistoryPage(items=items, next_cursor=next_cursor)

    async def detail(self, *, user_id: str, thread_id: str) -> ThreadDetail:
        async with self._sessionmaker() as session:
            threads = ThreadRepository(session)
            thread = await threads.get(user_id=user_id, thread_id=thread_id)
            if thread is None:
                raise NotFound("thread not found", field="thread_id")
            rows = await threads.conversations(user_id=user_id, thread_id=thread_id)
        conversations = [
            ConversationDetail(
                id=conversation.id,
                mode=conversation.mode,
                parent_conversation_id=conversation.parent_conversation_id,
                selected=conversation.selected,
                status=conversation.status,
                stop_reason=conversation.stop_reason,
                created_at=conversation.created_at,
                finished_at=conversation.finished_at,
                user_input=data.user_input,
                tags=data.tags,
                base_story=data.base_story,
                story=data.story,
                title=data.title,
                recommendations=data.recommendations,
                evaluation=None if evaluation is None else Evaluation.model_validate(evaluation),
            )
            for conversation, data, evaluation in rows
        ]
        return ThreadDetail(
            id=thread.id,
            title=thread.title,
            created_at=thread.created_at,
            updated_at=thread.updated_at,
            conversations=conversations,
            inputs=group_variants(conversations),
        )

    async def select_variant(self, *, user_id: str, conversation_id: str) -> SelectedVariant:
        """Makes the conversation its input's pick (the detail shows it), in a transaction of
        its own like every write of this service."""
        async with self._sessionmaker.begin() as session:
            conversation = await conversation_of(
                session, user_id=user_id, conversation_id=conversation_id
            )
            first = await VariantRepository(session).select(conversation=conversation)
        return SelectedVariant(conversation_id=conversation_id, input_conversation_id=first)

    async def delete(self, *, user_id: str, thread_id: str) -> None:
        """Deletes the thread with its conversations, data and evaluations (the database
        cascades), in one transaction of its own.

        The service commits here rather than at the request's edge because the upstream
        conversation may be deleted only once the rows are surely gone, and the network call must
        not hold the rows locked while it waits.
        """
        async with self._sessionmaker() as session:
            if await ThreadRepository(session).get(user_id=user_id, thread_id=thread_id) is None:
                raise NotFound("thread not found", field="thread_id")
        await self._generations.cancel_thread(user_id=user_id, thread_id=thread_id)
        async with self._sessionmaker.begin() as session:
            threads = ThreadRepository(session)
            thread = await threads.get(user_id=user_id, thread_id=thread_id)
            # Gone since the check above: a concurrent delete won.
            if thread is None or not await threads.delete(user_id=user_id, thread_id=thread_id):
                raise NotFound("thread not found", field="thread_id")
            remote_id = thread.remote_conversation_id
        if remote_id is not None and self._remote is not None:
            await self._forget_remote(remote_id, thread_id=thread_id)

    async def _forget_remote(self, conversation_id: str, *, thread_id: str) -> None:
        assert self._remote is not None
        try:
            await self._remote.delete_conversation(conversation_id)
        # Best effort by contract: the thread is already deleted and the user was promised
        # that; an orphaned upstream conversation is logged for the operator instead.
        except Exception:
            logger.warning(
                "could not delete upstream conversation %s of deleted thread %s",
                conversation_id,
                thread_id,
                exc_info=True,
            )
