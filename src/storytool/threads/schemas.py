"""What the history endpoints answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from storytool.evaluations.schemas import Evaluation
from storytool.models import ConversationStatus, StopReason


class ThreadSummary(BaseModel):
    id: str
    title: str | None
    last_status: ConversationStatus | None = Field(
        description="Status of the thread's latest conversation; null if it has none."
    )
    conversation_count: int
    preview: str | None = Field(
        description="The opening of the latest story, or its prompt while nothing is written."
    )
    created_at: datetime
    updated_at: datetime = Field(description="Last activity; the list is newest first by this.")


class HistoryPage(BaseModel):
    items: list[ThreadSummary]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


class ConversationDetail(BaseModel):
    id: str
    status: ConversationStatus
    stop_reason: StopReason | None
    created_at: datetime
    finished_at: datetime | None
    user_input: str
    tags: list[str]
    base_story: str | None
    story: str | None
    title: str | None
    recommendations: list[str] | None
    evaluation: Evaluation | None = Field(description="The caller's verdict, if any.")


class ThreadDetail(BaseModel):
    id: str
    title: str | None
    created_at: datetime
    updated_at: datetime
    conversations: list[ConversationDetail] = Field(description="Oldest first.")
