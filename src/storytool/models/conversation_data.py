from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from storytool.db.base import MYSQL_TABLE_ARGS, Base, IdString, JSONType, LongText

if TYPE_CHECKING:
    from storytool.models.conversation import Conversation


def story_text(story: str | None, base_story: str | None) -> str | None:
    """The one rule for what a conversation's story is: the refined text, else the draft; an
    empty one counts as none (a refine cancelled before its first word leaves ``""``)."""
    return story or base_story or None


class ConversationData(Base):
    """What was asked and what was written, one row per conversation.

    The story columns are deferred: list pages need only the input and title.
    """

    __tablename__ = "conversation_data"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    conversation_id: Mapped[str] = mapped_column(
        IdString, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    user_input: Mapped[str] = mapped_column(LongText)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    base_story: Mapped[str | None] = deferred(mapped_column(LongText, default=None))
    story: Mapped[str | None] = deferred(mapped_column(LongText, default=None))
    title: Mapped[str | None] = mapped_column(String(200), default=None)
    recommendations: Mapped[list[str] | None] = mapped_column(JSONType, default=None)

    conversation: Mapped[Conversation] = relationship(back_populates="data", lazy="raise")

    @property
    def text(self) -> str | None:
        """:func:`story_text` of this row (its story columns loaded)."""
        return story_text(self.story, self.base_story)
