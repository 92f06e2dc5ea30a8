from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storytool.db.base import (
    MYSQL_TABLE_ARGS,
    Base,
    IdString,
    JSONType,
    TimestampMixin,
    UserId,
    new_id,
    str_enum,
)

if TYPE_CHECKING:
    from storytool.models.conversation import Conversation


class Rating(StrEnum):
    LIKE = "like"
    DISLIKE = "dislike"
    NONE = "none"


class ContentEvaluation(TimestampMixin, Base):
    """A user's verdict on one conversation; a second verdict replaces the first."""

    __tablename__ = "content_evaluation"
    __table_args__ = (
        UniqueConstraint("conversation_id", "user_id"),
        # The feedback export walks one user's verdicts of one rating in the order they were given.
        Index("ix_content_evaluation_user_id_rating_updated_at", "user_id", "rating", "updated_at"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[str] = mapped_column(IdString, primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(
        IdString, ForeignKey("conversations.id", ondelete="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(UserId)
    rating: Mapped[Rating] = mapped_column(str_enum(Rating, 8))
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    reasons: Mapped[list[str] | None] = mapped_column(JSONType, default=None)
    """Tags from a fixed vocabulary saying why (style, plot, too_short, ...)."""
    produced_by: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    """The models, options and mode that wrote the story, copied when the verdict is given, so
    the verdict keeps its meaning after the models change."""

    conversation: Mapped[Conversation] = relationship(back_populates="evaluations", lazy="raise")
