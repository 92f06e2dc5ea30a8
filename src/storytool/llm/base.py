"""The one interface every language-model provider implements, and the values that cross it.

Two implementations: :mod:`storytool.llm.openai` (any OpenAI-compatible server) and
:mod:`storytool.llm.offline` (deterministic, no network). Services depend on :class:`LLMProvider`
only; nothing above this package imports the ``openai`` SDK.

Streaming calls yield :data:`StreamEvent` values:

    UpstreamStarted(response_id)       the upstream run exists; cancel or resume it by this id
    TextDelta(text, sequence_number)   a piece of text, in order
    StreamFinished(usage)              the stream ended normally; token usage as reported upstream

A failure raises :class:`ProviderError` with the ``stop_reason`` the conversation records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel

from storytool.models import StopReason

StoryLength = Literal["short", "medium", "long"]


@dataclass(frozen=True, slots=True)
class Turn:
    """An earlier conversation of the thread, sent as context."""

    user_input: str
    tags: list[str]
    story: str


@dataclass(frozen=True, slots=True)
class StoryRequest:
    user_input: str
    tags: list[str]
    length: StoryLength = "medium"
    temperature: float | None = None
    history: list[Turn] = field(default_factory=list)
    passages: list[str] = field(default_factory=list)
    """Nearest corpus passages, for providers that draw on them (may be empty)."""
    remote_conversation_id: str | None = None
    """The thread's upstream conversation, when context is kept upstream."""


@dataclass(frozen=True, slots=True)
class UpstreamStarted:
    response_id: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    sequence_number: int | None = None


@dataclass(frozen=True, slots=True)
class StreamFinished:
    usage: dict[str, int] = field(default_factory=dict)


StreamEvent = UpstreamStarted | TextDelta | StreamFinished


class StoryExtras(BaseModel):
    """The small model's structured answer after a story is written."""

    title: str
    recommendations: list[str]


class ProviderError(Exception):
    """An upstream call failed in a way the caller reports to the user."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "provider_error",
        stop_reason: StopReason = StopReason.PROVIDER_ERROR,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.stop_reason = stop_reason


class InvalidModelOutput(ProviderError):
    """The model's structured answer did not validate, even after one retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="invalid_model_output")


class StructuredOutputUnavailable(Exception):
    """This provider cannot produce free-form structured analysis (the offline provider)."""


OutputT = TypeVar("OutputT", bound=BaseModel)


class LLMProvider(Protocol):
    name: str
    """``openai`` or ``offline``."""

    models: dict[str, str]
    """Model used per stage (draft, refine, mini, embedding), recorded with each story."""

    def draft(self, request: StoryRequest) -> AsyncIterator[StreamEvent]:
        """The fine-tuned model's base story. Closing the iterator closes the upstream call."""
        ...

    def refine(
        self,
        request: StoryRequest,
        base_story: str,
        *,
        resume: tuple[str, int] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """The refine model's story, streamed. ``resume=(response_id, sequence_number)`` picks a
        dropped upstream stream up after that event instead of starting over."""
        ...

    async def cancel(self, response_id: str) -> None:
        """Stops an upstream run started by :meth:`refine` (best effort, idempotent)."""
        ...

    async def extras(self, request: StoryRequest, story: str) -> StoryExtras:
        """Title and next-step recommendations for a finished story."""
        ...

    async def structured(self, output: type[OutputT], *, instructions: str, text: str) -> OutputT:
        """The small model's answer in the shape of ``output`` (a JSON schema sent upstream,
        validated by Pydantic, one retry). Raises :class:`InvalidModelOutput` when it stays
        invalid and :class:`StructuredOutputUnavailable` when the provider has no model."""
        ...

    async def create_conversation(self) -> str | None:
        """A new upstream conversation for a thread, or None when context is kept locally."""
        ...

    async def delete_conversation(self, conversation_id: str) -> None: ...

    async def aclose(self) -> None: ...
