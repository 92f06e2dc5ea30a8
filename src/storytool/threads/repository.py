"""Statements over ``threads``. Every read takes the caller's user id: to a caller, another
user's rows do not exist."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Table, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from storytool.db.base import insert_new, new_id, utcnow
from storytool.models import (
    ContentEvaluation,
    Conversation,
    ConversationData,
    ConversationStatus,
    Thread,
)

_THREADS: Table = Thread.__table__  # type: ignore[assignment]
_TOUCH = update(_THREADS).where(_THREADS.c.id == bindparam("row_id"))
"""Built once (as :data:`storytool.generation.repository.SAVE_DATA`): every story's end runs it."""
_TOUCH_TITLED = _TOUCH.values(title=func.coalesce(_THREADS.c.title, bindparam("new_title")))

ThreadKey = tuple[datetime, str]
"""A keyset position: the (updated_at, id) of the last thread a page showed."""


PREVIEW_CHARS = 120
"""Enough of a story's opening to recognise it in a list, cut in SQL so a list page never reads
whole stories."""


ConversationRow = tuple[Conversation, ConversationData, ContentEvaluation | None]
"""A conversation, its data (stories loaded) and the caller's evaluation, if any."""


ThreadSummaryRow = tuple[Thread, int, ConversationStatus | None, str | None]
"""A thread with its conversation count, latest conversation's status and story preview."""


def _page(user_id: str, limit: int, after: ThreadKey | None) -> Select[Thread]:
    """The user's threads by last activity, newest first, strictly after ``after``.

    The keyset condition is written out as ORs rather than a row comparison
    ``(updated_at, id) < (:a, :b)``: MySQL/MariaDB do not use the index for the latter
    (``bench/history.py`` measures both: 1.4 ms against 2 s at depth 90,000).
    """
    statement = select(Thread).where(Thread.user_id == user_id)
    if after is not None:
        updated_at, thread_id = after
        statement = statement.where(
            or_(
                Thread.updated_at < updated_at,
                and_(Thread.updated_at == updated_at, Thread.id < thread_id),
            )
        )
    return statement.order_by(Thread.updated_at.desc(), Thread.id.desc()).limit(limit)


class ThreadRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, *, user_id: str, thread_id: str) -> Thread | None:
        result = await self.session.execute(
            select(Thread).where(Thread.id == thread_id, Thread.user_id == user_id)
        )
        return result.scalar_one_or_none()

    async def conversation_of(self, *, user_id: str, conversation_id: str) -> Conversation | None:
        """The conversation when its thread is the user's: what owning a conversation means."""
        result = await self.session.execute(
            select(Conversation)
            .join(Thread, Thread.id == Conversation.thread_id)
            .where(Conversation.id == conversation_id, Thread.user_id == user_id)
        )
        return result.scalar_one_or_none()

    async def add(self, *, user_id: str) -> Thread:
        """A new thread of the user's, in the caller's transaction."""
        thread = Thread(id=new_id(), user_id=user_id)
        await insert_new(self.session, thread)
        return thread

    async def page(
        self, *, user_id: str, limit: int, after: ThreadKey | None = None
    ) -> Sequence[Thread]:
        """The user's threads by last activity, newest first, strictly after ``after``."""
        return (await self.session.scalars(_page(user_id, limit, after))).all()

    async def summaries(
        self, *, user_id: str, limit: int, after: ThreadKey | None = None
    ) -> Sequence[ThreadSummaryRow]:
        """:meth:`page` with each thread's conversation count, latest status and preview, in
        one query whatever ``limit`` is.

        Each figure is a correlated subquery on the (thread_id, created_at) index, evaluated
        only for the page's rows: one round trip instead of a second query over the page's ids.
        """
        latest_first = (Conversation.created_at.desc(), Conversation.id.desc())
        total = (
            select(func.count())
            .where(Conversation.thread_id == Thread.id)
            .correlate(Thread)
            .scalar_subquery()
        )
        last_status = (
            select(Conversation.status)
            .where(Conversation.thread_id == Thread.id)
            .order_by(*latest_first)
            .limit(1)
            .correlate(Thread)
            .scalar_subquery()
        )
        preview = (
            select(
                func.coalesce(
                    func.substr(func.nullif(ConversationData.story, ""), 1, PREVIEW_CHARS),
                    func.substr(ConversationData.user_input, 1, PREVIEW_CHARS),
                )
            )
            .select_from(ConversationData)
            .join(Conversation, Conversation.id == ConversationData.conversation_id)
            .where(Conversation.thread_id == Thread.id)
            .order_by(*latest_first)
            .limit(1)
            .correlate(Thread)
            .scalar_subquery()
        )
        statement = _page(user_id, limit, after).add_columns(total, last_status, preview)
        return (await self.session.execute(statement)).all()

    async def conversations(self, *, user_id: str, thread_id: str) -> Sequence[ConversationRow]:
        """The thread's conversations, oldest first, with their stories and ``user_id``'s
        evaluations, in one query whatever their number. The caller has checked that the thread
        is the user's."""
        statement = (
            select(Conversation, ConversationData, ContentEvaluation)
            .join(ConversationData, ConversationData.conversation_id == Conversation.id)
            .outerjoin(
                ContentEvaluation,
                and_(
                    ContentEvaluation.conversation_id == Conversation.id,
                    ContentEvaluation.user_id == user_id,
                ),
            )
            .where(Conversation.thread_id == thread_id)
            .order_by(Conversation.created_at, Conversation.id)
            .options(undefer(ConversationData.base_story), undefer(ConversationData.story))
        )
        return (await self.session.execute(statement)).all()

    async def touch(self, *, thread_id: str, title: str | None = None) -> None:
        """Marks new activity; sets the title only if the thread has none yet."""
        values: dict[str, Any] = {"row_id": thread_id, "updated_at": utcnow()}
        if title is None:
            await self.session.execute(_TOUCH, values)
        else:
            await self.session.execute(_TOUCH_TITLED, {**values, "new_title": title})

    async def touch_titled(self, titles: list[tuple[str, str]]) -> None:
        """:meth:`touch` with a title, for many (thread id, title) pairs in one statement."""
        now = utcnow()
        rows = [{"row_id": thread_id, "updated_at": now, "new_title": t} for thread_id, t in titles]
        await self.session.execute(_TOUCH_TITLED, rows)

    async def delete(self, *, user_id: str, thread_id: str) -> bool:
        """Deletes the thread; the database cascades to conversations, data and evaluations."""
        result = await self.session.execute(
            delete(Thread).where(Thread.id == thread_id, Thread.user_id == user_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
