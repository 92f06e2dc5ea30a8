"""What ``POST /api/analyze`` takes and answers, and the shape the model's analysis must have.

:class:`StoryAnalysis` is sent upstream as a JSON schema; its field descriptions are the model's
instructions for each field, so they are written for the model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from storytool.analysis.metrics import Span, TextMetrics
from storytool.schemas import Id, RequestModel

PlotStageName = Literal["발단", "전개", "위기", "절정", "결말"]


class AnalyzeRequest(RequestModel):
    """Exactly one of ``text`` and ``conversation_id`` (one of the caller's own stories)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "text": "화설 조선국 경상도 안동 땅에 윤 참판이라 하는 재상이 있으니 성품이 "
                    "강직하고 청렴하여 고을 사람들이 다 우러러보더라."
                },
                {"conversation_id": "5f0c6f5e-8d1a-4b7e-9a51-2c3d4e5f6a7b"},
            ]
        },
    )

    text: str | None = Field(default=None, description="The story to analyse.")
    conversation_id: Id | None = Field(
        default=None,
        validate_default=True,
        description="Analyse the story of this conversation instead (yours only).",
    )

    @field_validator("text")
    @classmethod
    def _text_has_content(cls, text: str | None) -> str | None:
        if text is not None and not text.strip():
            raise ValueError("text is empty")
        return text

    @field_validator("conversation_id")
    @classmethod
    def _exactly_one_source(cls, conversation_id: str | None, info: ValidationInfo) -> str | None:
        # Declared after ``text``, so ``text`` is in info.data unless it failed on its own.
        if "text" not in info.data:
            return conversation_id
        text = info.data["text"]
        if text is None and conversation_id is None:
            raise ValueError("give text or conversation_id")
        if text is not None and conversation_id is not None:
            raise ValueError("give text or conversation_id, not both")
        return conversation_id


class Character(BaseModel):
    name: str = Field(description="The character's name as the story writes it.")
    role: str = Field(description="Their part in the story, e.g. 주인공, 조력자, 악인.")
    description: str = Field(description="One short sentence about who they are.")


class StorySetting(BaseModel):
    time: str = Field(description="When the story takes place; '알 수 없음' if it never says.")
    place: str = Field(description="Where it takes place; '알 수 없음' if it never says.")


class PlotStage(BaseModel):
    stage: PlotStageName
    first_sentence: int = Field(description="Number of the stage's first sentence, from [n].")
    last_sentence: int = Field(description="Number of the stage's last sentence, inclusive.")
    summary: str = Field(description="What happens in this stage, one sentence.")


class StoryAnalysis(BaseModel):
    """The model's reading of a story (or of one chunk of it)."""

    summary: str = Field(description="The story in one paragraph.")
    characters: list[Character]
    setting: StorySetting
    themes: list[str] = Field(description="Its themes, a few words each.")
    plot: list[PlotStage] = Field(
        description=(
            "The stages the text contains, in order, each spanning consecutive sentence numbers. "
            "Leave out stages the text does not reach."
        )
    )
    tone: str = Field(description="The tone and voice, in a few words.")
    suggestions: list[str] = Field(description="Concrete suggestions to improve the story.")


class ModelAnalysis(BaseModel):
    available: bool
    reason: str | None = Field(default=None, description="Why the analysis is not available.")
    provider: str
    model: str | None = None
    chunks: int = Field(
        description="Pieces the model read the text in (merged into one result); 0 if none."
    )
    result: StoryAnalysis | None = None


class AnalysisSource(BaseModel):
    kind: Literal["text", "conversation"]
    conversation_id: str | None = None


class AnalyzeResponse(BaseModel):
    source: AnalysisSource
    metrics: TextMetrics
    sentences: list[Span] = Field(
        description="Offsets of sentence n at index n-1; plot stages refer to these numbers."
    )
    analysis: ModelAnalysis
