"""Statements over ``threads``. Every read takes the caller's user id: to a caller, another
user's rows do not exist."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storytool.db.base import utcnow
from storytool.models import Thread

ThreadKey = tuple[datetime, str]
"""A keyset position: the (updated_at, id) of the last thread a page showed."""


class ThreadRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, *, user_id: str, title: str | None = None) -> Thread:
        thread = Thread(user_id=user_id, title=title)
        self.session.add(thread)
        await self.session.flush()
        return thread

    async def get(self, *, user_id: str, thread_id: str) -> Thread | None:
        result = await self.session.execute(
            select(Thread).where(Thread.id == thread_id, Thread.user_id == user_id)
        )
        return result.scalar_one_or_none()

    async def page(
        self, *, user_id: str, limit: int, after: ThreadKey | None = None
    ) -> Sequence[Thread]:
        """The user's threads by last activity, newest first, strictly after ``after``.

        The keyset condition is written out as ORs rather than a row comparison
        ``(updated_at, id) < (:a, :b)``: MySQL/MariaDB do not use the index for the latter.
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
        statement = statement.order_by(Thread.updated_at.desc(), Thread.id.desc()).limit(limit)
        return (await self.session.scalars(statement)).all()

    async def touch(self, *, thread_id: str, title: str | None = None) -> None:
        """Marks new activity; sets the title only if the thread has none yet."""
        await self.session.execute(
            update(Thread).where(Thread.id == thread_id).values(updated_at=utcnow())
        )
        if title is not None:
            await self.session.execute(
                update(Thread)
                .where(Thread.id == thread_id, Thread.title.is_(None))
                .values(title=title)
            )

    async def delete(self, *, user_id: str, thread_id: str) -> bool:
        """Deletes the thread; the database cascades to conversations, data and evaluations."""
        result = await self.session.execute(
            delete(Thread).where(Thread.id == thread_id, Thread.user_id == user_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
