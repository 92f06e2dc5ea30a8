from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storytool.db.base import MYSQL_TABLE_ARGS, Base, IdString, TimestampMixin, UserId, new_id

if TYPE_CHECKING:
    from storytool.models.conversation import Conversation


class Thread(TimestampMixin, Base):
    """A user's story thread: a run of conversations that share context."""

    __tablename__ = "threads"
    __table_args__ = (
        # The history list is a keyset walk over exactly this order.
        Index("ix_threads_user_id_updated_at_id", "user_id", "updated_at", "id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[str] = mapped_column(IdString, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(UserId)
    title: Mapped[str | None] = mapped_column(String(200), default=None)
    # Text: upstream ids are stored whole, however long a server makes them.
    remote_conversation_id: Mapped[str | None] = mapped_column(Text, default=None)

    # lazy="raise": a list page must never load conversations one thread at a time.
    conversations: Mapped[list[Conversation]] = relationship(
        back_populates="thread",
        lazy="raise",
        passive_deletes=True,
    )
