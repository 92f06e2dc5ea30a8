"""What the history endpoints answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from storytool.evaluations.schemas import Evaluation
from storytool.models import ConversationStatus, GenerationMode, StopReason
from storytool.schemas import Id, RequestModel


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
    mode: GenerationMode
    parent_conversation_id: str | None = Field(
        description="regenerate: the first variant of its input; continue: the story it extends."
    )
    selected: bool = Field(description="The variant of its input the user picked.")
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


class VariantGroup(BaseModel):
    """One input and every story written for it, oldest first."""

    conversation_id: str = Field(description="The input's first conversation.")
    mode: GenerationMode = Field(description="new, or continue for more of an earlier story.")
    continues: str | None = Field(description="continue: the conversation whose story it extends.")
    user_input: str
    tags: list[str]
    variants: list[str] = Field(description="Conversation ids, oldest first (the first included).")
    selected: str | None = Field(description="The variant the user picked; null until one is.")


class ThreadDetail(BaseModel):
    id: str
    title: str | None
    created_at: datetime
    updated_at: datetime
    conversations: list[ConversationDetail] = Field(description="Oldest first.")
    inputs: list[VariantGroup] = Field(
        description="The conversations grouped by input: each input with its variants."
    )


class SelectVariantRequest(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"conversation_id": "5f0c6f5e-8d1a-4b7e-9a51-2c3d4e5f6a7b"}]
        },
    )

    conversation_id: Id


class SelectedVariant(BaseModel):
    conversation_id: str
    input_conversation_id: str = Field(description="The first conversation of its input.")
