"""What ``POST /api/updateEvaluation`` takes and answers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from storytool.models import Rating
from storytool.schemas import Id, RequestModel


class Reason(StrEnum):
    """Why a story was liked or disliked: a fixed vocabulary, so feedback can be counted and
    filtered when it becomes training data."""

    STYLE = "style"
    PLOT = "plot"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    OFF_PROMPT = "off_prompt"
    ANACHRONISM = "anachronism"


class EvaluationUpdate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "conversation_id": "5f0c6f5e-8d1a-4b7e-9a51-2c3d4e5f6a7b",
                    "rating": "like",
                    "reasons": ["style", "plot"],
                    "comment": "문체가 옛 소설 같고 결말이 좋다",
                },
                {"conversation_id": "5f0c6f5e-8d1a-4b7e-9a51-2c3d4e5f6a7b", "rating": "none"},
            ]
        },
    )

    conversation_id: Id
    rating: Rating = Field(description="like, dislike, or none to clear an earlier verdict.")
    comment: str | None = Field(
        default=None,
        description="Optional; its longest length is the max_comment_chars setting. "
        "Each update replaces the earlier comment.",
    )
    reasons: list[Reason] = Field(
        default_factory=list,
        max_length=len(Reason),
        description="Optional tags saying why; each update replaces the earlier ones.",
    )


class Evaluation(BaseModel):
    """The caller's stored verdict on a conversation."""

    model_config = ConfigDict(from_attributes=True)

    conversation_id: str
    rating: Rating
    comment: str | None
    reasons: list[Reason]
    produced_by: dict[str, Any] | None = Field(
        description="The models, options and mode that wrote the story when it was judged."
    )
    created_at: datetime
    updated_at: datetime

    @field_validator("reasons", mode="before")
    @classmethod
    def _no_reasons(cls, value: list[str] | None) -> list[str]:
        """Verdicts stored before reasons existed have none."""
        return value or []
