"""The rules every domain reads one way: what a conversation's story is, and which conversation
starts its variant group (in Python and, the same, in SQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storytool.models import (
    Conversation,
    GenerationMode,
    group_first_column,
    group_first_id,
    story_text,
)
from tests.factories import create_conversation


@pytest.mark.parametrize(
    ("story", "draft", "expected"),
    [
        ("다듬은 이야기", "초고", "다듬은 이야기"),
        ("", "초고", "초고"),  # a refine cancelled before its first word
        (None, "초고", "초고"),
        ("", "", None),
        (None, None, None),
        ("다듬은 이야기", None, "다듬은 이야기"),
    ],
)
def test_a_story_is_the_refined_text_else_the_draft_and_empty_is_none(
    story: str | None, draft: str | None, expected: str | None
):
    assert story_text(story, draft) == expected


@pytest.mark.parametrize(
    ("mode", "parent", "expected"),
    [
        (GenerationMode.REGENERATE, "first", "first"),
        (GenerationMode.REGENERATE, None, "self"),  # its first was deleted: it starts a group
        (GenerationMode.CONTINUE, "continued", "self"),  # a continuation starts its own group
        (GenerationMode.NEW, None, "self"),
    ],
)
def test_the_first_of_a_variant_group(mode: GenerationMode, parent: str | None, expected: str):
    assert group_first_id(conversation_id="self", mode=mode, parent_id=parent) == expected


async def test_sql_and_python_agree_on_the_first_of_a_group(session: AsyncSession):
    first = await create_conversation(session)
    variant = await create_conversation(
        session,
        thread_id=first.thread_id,
        mode=GenerationMode.REGENERATE,
        parent_conversation_id=first.id,
    )
    continued = await create_conversation(
        session,
        thread_id=first.thread_id,
        mode=GenerationMode.CONTINUE,
        parent_conversation_id=variant.id,
    )
    rows = await session.execute(
        select(Conversation.id, group_first_column(Conversation)).where(
            Conversation.thread_id == first.thread_id
        )
    )
    in_sql: dict[str, str] = dict(rows.all())  # type: ignore[arg-type]
    for conversation in (first, variant, continued):
        in_python = group_first_id(
            conversation_id=conversation.id,
            mode=conversation.mode,
            parent_id=conversation.parent_conversation_id,
        )
        assert in_sql[conversation.id] == in_python
    assert in_sql[variant.id] == first.id
