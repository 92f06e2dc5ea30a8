"""The context a thread's next story reads: each input once, through its picked variant, or its
latest one while none is picked."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from storytool.generation.repository import ConversationRepository
from storytool.models import Conversation, GenerationMode
from tests.factories import create_conversation


async def written(session: AsyncSession, story: str | None, **fields: object) -> Conversation:
    conversation = await create_conversation(session, user_input=story or "미완", **fields)
    if story is not None:
        await ConversationRepository(session).save_data(
            conversation_id=conversation.id, story=story
        )
    return conversation


async def stories(session: AsyncSession, thread_id: str, **before: Conversation) -> list[str]:
    turns = await ConversationRepository(session).history(thread_id=thread_id, limit=6, **before)
    return [turn.story for turn in turns]


class TestContext:
    async def test_an_input_written_several_times_counts_once(self, session: AsyncSession):
        opening = await written(session, "첫 이야기")
        thread_id = opening.thread_id
        variant = {
            "thread_id": thread_id,
            "mode": GenerationMode.REGENERATE,
            "parent_conversation_id": opening.id,
        }
        second = await written(session, "다시 쓴 이야기", **variant)
        await written(session, None, **variant)  # a retry that wrote nothing hides nothing
        assert await stories(session, thread_id) == ["다시 쓴 이야기"]

        opening.selected = True
        await session.flush()
        assert await stories(session, thread_id) == ["첫 이야기"]

        more = await written(
            session,
            "이어진 이야기",
            thread_id=thread_id,
            mode=GenerationMode.CONTINUE,
            parent_conversation_id=second.id,
        )
        assert await stories(session, thread_id) == ["첫 이야기", "이어진 이야기"]
        assert await stories(session, thread_id, before=more) == ["첫 이야기"]
