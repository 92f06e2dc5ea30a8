"""Async factories for test rows: ``await create_thread(session, user_id="u1")``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from storytool.config import Settings
from storytool.db.base import new_id, utcnow
from storytool.db.engine import create_engine
from storytool.generation.repository import ConversationRepository, new_conversation
from storytool.models import (
    ContentEvaluation,
    Conversation,
    ConversationData,
    ConversationStatus,
    GenerationMode,
    Rating,
    Thread,
)
from storytool.threads.service import open_thread


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
    thread = await open_thread(session, user_id=user_id, thread_id=thread_id)
    conversation = await ConversationRepository(session).add(
        new_conversation(thread_id=thread.id, user_input=user_input, tags=tags or ["모험"])
    )
    for name, value in overrides.items():
        setattr(conversation, name, value)
    await session.flush()
    return conversation


STORY = "화설. 옛날 남원 땅에 한 선비가 있었으니, 글을 좋아하고 사람을 아끼더라. " * 25
"""About 1,000 characters, the size of a short story."""


def judged_story(number: int, chars: int = 0) -> str:
    """About 1,000 characters, or ``chars`` (the story repeated and cut) when given."""
    story = f"{number}번째 이야기. {STORY}"
    return (story * (chars // len(story) + 1))[:chars] if chars else story


async def seed_judged(
    url: str,
    *,
    user_id: str,
    count: int,
    rating: Rating = Rating.LIKE,
    status: ConversationStatus = ConversationStatus.COMPLETED,
    judged_at_offset: timedelta = timedelta(0),
    per_thread: int = 100,
    batch: int = 5_000,
    story_chars: int = 0,
) -> list[str]:
    """``count`` judged conversations of ``user_id`` with the stories
    ``judged_story(n, story_chars)``, committed in bulk a batch at a time (the feedback export's
    tests and bench); their ids."""
    engine = create_engine(Settings(), url=url)
    now = utcnow() + judged_at_offset
    ids: list[str] = []
    try:
        for start in range(0, count, batch):
            numbers = range(start, min(count, start + batch))
            ids += await _insert_judged(
                engine,
                numbers,
                user_id=user_id,
                rating=rating,
                status=status,
                now=now,
                per_thread=per_thread,
                story_chars=story_chars,
            )
    finally:
        await engine.dispose()
    return ids


async def _insert_judged(
    engine: AsyncEngine,
    numbers: range,
    *,
    user_id: str,
    rating: Rating,
    status: ConversationStatus,
    now: datetime,
    per_thread: int,
    story_chars: int,
) -> list[str]:
    threads: list[dict[str, Any]] = []
    conversations: list[dict[str, Any]] = []
    data: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    for number in numbers:
        if number % per_thread == 0 or not threads:
            threads.append(
                {"id": new_id(), "user_id": user_id, "created_at": now, "updated_at": now}
            )
        conversation_id = new_id()
        conversations.append(
            {
                "id": conversation_id,
                "thread_id": threads[-1]["id"],
                "status": status,
                "mode": GenerationMode.NEW,
                "options": {"length": "short", "temperature": None},
                "created_at": now,
                "updated_at": now,
            }
        )
        data.append(
            {
                "conversation_id": conversation_id,
                "user_input": f"{user_id}의 {number}번째 줄거리",
                "tags": ["사랑"],
                "story": judged_story(number, story_chars),
            }
        )
        verdicts.append(
            {
                "id": new_id(),
                "conversation_id": conversation_id,
                "user_id": user_id,
                "rating": rating,
                "created_at": now,
                "updated_at": now,
            }
        )
    async with engine.begin() as connection:
        for table, rows in (
            (Thread, threads),
            (Conversation, conversations),
            (ConversationData, data),
            (ContentEvaluation, verdicts),
        ):
            await connection.execute(insert(table), rows)
    return [row["id"] for row in conversations]
