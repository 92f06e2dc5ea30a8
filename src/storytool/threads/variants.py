"""Variants: the stories written for one input, and the one the user picked.

A thread's conversations form groups. A ``new`` or ``continue`` conversation starts a group; each
``regenerate`` joins the group of its parent, which is always the group's first conversation
(:mod:`storytool.generation.modes` sees to that), so a group is one level deep however often the
user retries. At most one conversation per group is ``selected``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from storytool.models import Conversation, GenerationMode, group_first_id
from storytool.threads.schemas import ConversationDetail, VariantGroup


def group_variants(conversations: Sequence[ConversationDetail]) -> list[VariantGroup]:
    """The thread's conversations (oldest first) grouped by input, groups in order of their
    first conversation, variants in the order they were written."""
    groups: dict[str, VariantGroup] = {}
    for conversation in conversations:
        first = group_first_id(
            conversation_id=conversation.id,
            mode=conversation.mode,
            parent_id=conversation.parent_conversation_id,
        )
        group = groups.get(first)
        if group is None:
            # A regenerate whose first conversation is gone starts its own group.
            group = groups[conversation.id] = VariantGroup(
                conversation_id=conversation.id,
                mode=conversation.mode,
                continues=conversation.parent_conversation_id
                if conversation.mode is GenerationMode.CONTINUE
                else None,
                user_input=conversation.user_input,
                tags=conversation.tags,
                variants=[],
                selected=None,
            )
        group.variants.append(conversation.id)
        if conversation.selected:
            group.selected = conversation.id
    return list(groups.values())


class VariantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def select(self, *, conversation: Conversation) -> str:
        """Marks ``conversation`` as its group's pick and unmarks the others, in one statement.
        The id of the group's first conversation."""
        first = group_first_id(
            conversation_id=conversation.id,
            mode=conversation.mode,
            parent_id=conversation.parent_conversation_id,
        )
        await self.session.execute(
            update(Conversation)
            .where(
                or_(
                    Conversation.id == first,
                    and_(
                        Conversation.parent_conversation_id == first,
                        Conversation.mode == GenerationMode.REGENERATE,
                    ),
                )
            )
            .values(selected=Conversation.id == conversation.id)
        )
        return first
