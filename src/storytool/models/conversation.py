from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, ColumnElement, ForeignKey, Index, Integer, Text, and_, case, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storytool.db.base import (
    MYSQL_TABLE_ARGS,
    Base,
    IdString,
    JSONType,
    TimestampMixin,
    UTCDateTime,
    exact_string,
    new_id,
    str_enum,
)

if TYPE_CHECKING:
    from storytool.models.conversation_data import ConversationData
    from storytool.models.evaluation import ContentEvaluation
    from storytool.models.thread import Thread


class ConversationStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class StopReason(StrEnum):
    USER_CANCEL = "user_cancel"
    CLIENT_GONE = "client_gone"
    PROVIDER_ERROR = "provider_error"
    TIMEOUT = "timeout"
    OUTPUT_LIMIT = "output_limit"
    LENGTH = "length"
    """Completed, but the model stopped at its output-token limit: the text is kept."""
    SHUTDOWN = "shutdown"
    CRASH = "crash"


class GenerationMode(StrEnum):
    """How a conversation came to be: a fresh input, another take on an input, or more story."""

    NEW = "new"
    REGENERATE = "regenerate"
    CONTINUE = "continue"


class Conversation(TimestampMixin, Base):
    """One generation: a prompt and the story written for it.

    The status leaves ``in_progress`` only through a conditional update, so a late ``completed``
    can never overwrite a ``cancelled``.
    """

    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_thread_id_created_at", "thread_id", "created_at"),
        # Start-up recovery looks for in-progress rows whose owner is gone.
        Index("ix_conversations_status_owner_instance", "status", "owner_instance"),
        # A variant group and a conversation's continuations are found by their parent.
        Index("ix_conversations_parent_conversation_id", "parent_conversation_id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[str] = mapped_column(IdString, primary_key=True, default=new_id)
    thread_id: Mapped[str] = mapped_column(IdString, ForeignKey("threads.id", ondelete="CASCADE"))
    status: Mapped[ConversationStatus] = mapped_column(
        str_enum(ConversationStatus, 16), default=ConversationStatus.IN_PROGRESS
    )
    stop_reason: Mapped[StopReason | None] = mapped_column(str_enum(StopReason, 32), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # Text: upstream ids are stored whole (LiteLLM's run to ~450 characters).
    upstream_response_id: Mapped[str | None] = mapped_column(Text, default=None)
    upstream_sequence: Mapped[int | None] = mapped_column(Integer, default=None)
    # Exact like the ids: replicas find the stories they own, or must recover, by it.
    owner_instance: Mapped[str | None] = mapped_column(exact_string(64), default=None)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    models: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    mode: Mapped[GenerationMode] = mapped_column(
        str_enum(GenerationMode, 16), default=GenerationMode.NEW, server_default="new"
    )
    # The input a ``regenerate`` variant shares (its group's first conversation), or the story a
    # ``continue`` extends. SET NULL rather than CASCADE: conversations are only ever deleted with
    # their whole thread, and InnoDB stops cascading within one table after 15 levels, so a long
    # chain of continuations would make deleting its thread fail.
    parent_conversation_id: Mapped[str | None] = mapped_column(
        IdString, ForeignKey("conversations.id", ondelete="SET NULL"), default=None
    )
    selected: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The variant of its group the user picked; at most one per group."""
    options: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    """The generation options it was written with (length, temperature)."""

    thread: Mapped[Thread] = relationship(back_populates="conversations", lazy="raise")
    data: Mapped[ConversationData] = relationship(
        back_populates="conversation", lazy="raise", passive_deletes=True
    )
    evaluations: Mapped[list[ContentEvaluation]] = relationship(
        back_populates="conversation", lazy="raise", passive_deletes=True
    )


def group_first_id(*, conversation_id: str, mode: GenerationMode, parent_id: str | None) -> str:
    """The first conversation of the variant group a conversation belongs to: a regenerate's
    parent (every variant points at its group's first), else the conversation itself."""
    if mode is GenerationMode.REGENERATE and parent_id is not None:
        return parent_id
    return conversation_id


def group_first_column(conversation: Any) -> ColumnElement[str]:
    """:func:`group_first_id` in SQL, of ``Conversation`` or an alias of it."""
    return case(
        (
            and_(
                conversation.mode == GenerationMode.REGENERATE,
                conversation.parent_conversation_id.is_not(None),
            ),
            conversation.parent_conversation_id,
        ),
        else_=conversation.id,
    )
