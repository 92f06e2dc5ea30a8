"""Async factories for test rows: ``await create_thread(session, user_id="u1")``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storytool.db.base import utcnow
from storytool.generation.repository import ConversationRepository
from storytool.models import Conversation, Thread


async def create_thread(
    session: AsyncSession,
    *,
    user_id: str = "user-a",
    title: str | None = None,
    updated_at: datetime | None = None,
) -> Thread:
    stamp = updated_at or utcnow()
    thread = Thread(user_id=user_id, title=title, created_at=stamp, updated_at=stamp)
    session.add(thread)
    await session.flush()
    return thread


async def create_conversation(
    session: AsyncSession,
    *,
    user_id: str = "user-a",
    thread_id: str | None = None,
    user_input: str = "옛날 옛적 한 선비가 길을 떠나니",
    tags: list[str] | None = None,
    **overrides: Any,
) -> Conversation:
    conversation = await ConversationRepository(session).start(
        user_id=user_id, thread_id=thread_id, user_input=user_input, tags=tags or ["모험"]
    )
    assert conversation is not None, "thread_id must be one of the user's threads"
    for name, value in overrides.items():
        setattr(conversation, name, value)
    await session.flush()
    return conversation
