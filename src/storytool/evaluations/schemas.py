"""What ``POST /api/updateEvaluation`` takes and answers."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from storytool.models import Rating


class EvaluationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversation_id: UUID
    rating: Rating = Field(description="like, dislike, or none to clear an earlier verdict.")
    comment: str | None = Field(
        default=None,
        description="Optional; its longest length is the max_comment_chars setting. "
        "Each update replaces the earlier comment.",
    )


class Evaluation(BaseModel):
    """The caller's stored verdict on a conversation."""

    model_config = ConfigDict(from_attributes=True)

    conversation_id: str
    rating: Rating
    comment: str | None
    created_at: datetime
    updated_at: datetime
