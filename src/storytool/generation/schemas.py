"""What ``POST /api/generate`` accepts, what its SSE events carry, and the cancel exchange.

The event payloads are the wire protocol described in :mod:`storytool.generation.events`; each
model's ``event`` class variable is the SSE ``event:`` name it is sent under.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from storytool.llm.base import StoryLength
from storytool.models import ConversationStatus

MAX_TAGS = 20
"""Tags steer the draft prompt; past a handful they only dilute it and lengthen every request."""

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]


class GenerationOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    length: StoryLength = "medium"
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)


class GenerateRequest(BaseModel):
    """The length limit of ``user_input`` is a setting, checked by the service."""

    model_config = ConfigDict(extra="forbid")

    user_input: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    thread_id: str | None = Field(default=None, max_length=64)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    options: GenerationOptions = Field(default_factory=GenerationOptions)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversation_id: str = Field(min_length=1, max_length=64)


class CancelResponse(BaseModel):
    """The state the conversation ended in, read back after the task saved its text."""

    conversation_id: str
    status: ConversationStatus
    user_input: str
    tags: list[str]
    partial_story: str


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


class Delta(EventPayload):
    event = "delta"
    text: str


class Title(EventPayload):
    event = "title"
    title: str


class Recommendations(EventPayload):
    event = "recommendations"
    items: list[str]


class Done(EventPayload):
    event = "done"
    status: Literal["completed"] = "completed"
    usage: dict[str, int]


class Cancelled(EventPayload):
    event = "cancelled"
    user_input: str
    tags: list[str]
    partial_story: str


class Error(EventPayload):
    event = "error"
    code: str
    message: str
