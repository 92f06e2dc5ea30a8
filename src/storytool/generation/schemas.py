"""What ``POST /api/generate`` accepts, what its SSE events carry, and the cancel exchange.

The event payloads are the wire protocol described in :mod:`storytool.generation.events`; each
model's ``event`` class variable is the SSE ``event:`` name it is sent under.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from storytool.generation.story import StoryLength
from storytool.models import ConversationStatus, GenerationMode
from storytool.schemas import Id, RequestModel

MAX_TAGS = 20
"""Tags steer the draft prompt; past a handful they only dilute it and lengthen every request."""

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]


class GenerationOptions(RequestModel):
    model_config = ConfigDict(extra="forbid")

    length: StoryLength = "medium"
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)


class GenerateRequest(RequestModel):
    """The length limit of ``user_input`` is a setting, checked by the service.

    ``new`` writes a story for ``user_input``. ``regenerate`` writes another variant of
    ``parent_conversation_id``'s input (so it takes no input or tags of its own); ``continue``
    writes what comes after that conversation's story, steered by ``user_input`` if given.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "user_input": "한 선비가 과거 길에 올라 산적을 만나니",
                    "tags": ["모험", "의리"],
                    "options": {"length": "short", "temperature": 0.8},
                },
                {
                    "mode": "regenerate",
                    "parent_conversation_id": "5f0c6f5e-8d1a-4b7e-9a51-2c3d4e5f6a7b",
                },
                {
                    "mode": "continue",
                    "parent_conversation_id": "5f0c6f5e-8d1a-4b7e-9a51-2c3d4e5f6a7b",
                    "user_input": "산적의 두목이 선비의 옛 벗이었으니",
                },
            ]
        },
    )

    mode: GenerationMode = GenerationMode.NEW
    parent_conversation_id: Id | None = Field(default=None, validate_default=True)
    user_input: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] | None = (
        Field(default=None, validate_default=True)
    )
    thread_id: Id | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS, validate_default=True)
    options: GenerationOptions = Field(default_factory=GenerationOptions)

    @field_validator("parent_conversation_id")
    @classmethod
    def _parent_fits_mode(cls, value: str | None, info: ValidationInfo) -> str | None:
        mode = info.data.get("mode")
        if mode is GenerationMode.NEW and value is not None:
            raise ValueError("only regenerate and continue start from a conversation")
        if mode in (GenerationMode.REGENERATE, GenerationMode.CONTINUE) and value is None:
            raise ValueError(f"{mode} needs the conversation it starts from")
        return value

    @field_validator("user_input", "tags")
    @classmethod
    def _input_fits_mode(cls, value: str | list[str] | None, info: ValidationInfo) -> object:
        mode = info.data.get("mode")
        if mode is GenerationMode.NEW and value is None:
            raise ValueError("a new story needs its input")
        if mode is GenerationMode.REGENERATE and value:
            raise ValueError("a regenerate repeats its parent's input and tags; leave them out")
        return value


class CancelRequest(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"conversation_id": "5f0c6f5e-8d1a-4b7e-9a51-2c3d4e5f6a7b"}]
        },
    )

    conversation_id: Id


class CancelResponse(BaseModel):
    """The state the conversation ended in, read back after the task saved its text."""

    conversation_id: str
    status: ConversationStatus
    user_input: str
    tags: list[str]
    partial_story: str
    """The refined text written so far ("" when the refine had not begun)."""
    partial_draft: str
    """The draft written so far (the whole draft once the refine has begun)."""


class EventPayload(BaseModel):
    event: ClassVar[str]


class Meta(EventPayload):
    event = "meta"
    thread_id: str
    conversation_id: str


StageName = Literal["draft", "refine", "title", "recommend"]
StageStatus = Literal["started", "done"]


class Stage(EventPayload):
    event = "stage"
    name: StageName
    status: StageStatus
    stop_reason: Literal["length"] | None = None
    """On ``done`` of draft or refine: the model stopped at the output-token limit (the text
    is kept, only shorter)."""


class Delta(EventPayload):
    event = "delta"
    stage: Literal["draft", "refine"]
    """Draft text streams first; the refine's text then replaces it on screen."""
    text: str


class Title(EventPayload):
    event = "title"
    title: str
    fallback: bool = False
    """The model gave no usable title: this one is made from the input."""


class Recommendations(EventPayload):
    event = "recommendations"
    items: list[str]


class Done(EventPayload):
    event = "done"
    status: Literal["completed"] = "completed"
    usage: dict[str, int]
    stop_reason: Literal["length"] | None = None
    """The refine stopped at the output-token limit; the story is kept as written."""


class Cancelled(EventPayload):
    event = "cancelled"
    user_input: str
    tags: list[str]
    partial_story: str
    partial_draft: str


class Error(EventPayload):
    event = "error"
    code: str
    message: str
