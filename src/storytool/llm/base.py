"""Transport to language-model servers: the abilities a server may have, and the values that cross.

This package knows nothing of stories: prompts and message building live with the domains that
ask (:mod:`storytool.generation.prompts`, the analysis and search services). A provider is one
class of a few transport methods — stream a chat, stream a response (cancel and resume where the
server has them), answer in the shape of a Pydantic type — plus the conversations some servers
keep. :mod:`storytool.llm.openai` is the one implementation: any OpenAI-compatible server, with
what that server can do detected and reported (:class:`Capabilities`).

Streaming calls yield :data:`StreamEvent` values:

    UpstreamStarted(response_id, background)   the upstream run exists; ``background`` when the
                                               server confirmed a background run, which alone
                                               can be cancelled or resumed by its id
    TextDelta(text, sequence_number)           a piece of text, in order
    StreamFinished(usage, cut)                 the stream ended; ``cut`` when the server stopped
                                               at the output-token limit (the text is kept)

A failure raises :class:`ProviderError` with the ``stop_reason`` the conversation records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel

from storytool.models import StopReason

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class UpstreamStarted:
    response_id: str
    background: bool = False
    """The server confirmed a background run: it goes on without our stream, so it can (and
    must) be cancelled by id, and a dropped stream can be resumed."""


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    sequence_number: int | None = None


@dataclass(frozen=True, slots=True)
class StreamFinished:
    usage: dict[str, int] = field(default_factory=dict)
    cut: bool = False
    """The server stopped at the output-token limit; the text so far is whole, only shorter."""


StreamEvent = UpstreamStarted | TextDelta | StreamFinished


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


@dataclass(slots=True)
class Capabilities:
    """What one base URL was found to do; None until a call (or ``check``) has found out."""

    responses: bool | None = None
    """``/v1/responses`` exists."""
    background: bool | None = None
    """A run asked for with ``background: true`` is confirmed as one (cancel and resume by id)."""
    json_schema: bool | None = None
    """``text.format`` json_schema is honoured by ``/v1/responses`` (its answer validates)."""
    chat_json_schema: bool | None = None
    """``response_format`` json_schema is honoured by chat completions."""
    notes: list[str] = field(default_factory=list)
    """What was found, in words, with the setting to change where one helps."""

    def as_dict(self) -> dict[str, object]:
        return {
            "responses": self.responses,
            "background": self.background,
            "json_schema": self.json_schema,
            "chat_json_schema": self.chat_json_schema,
            "notes": list(self.notes),
        }


OutputT = TypeVar("OutputT", bound=BaseModel)


class ModelClient(Protocol):
    """One model server. Every model name comes from the caller (from settings)."""

    capabilities: Capabilities

    def stream_chat(
        self,
        *,
        model: str,
        messages: list[Message],
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """A chat completion, streamed. Closing the iterator closes the upstream call."""
        ...

    def stream_response(
        self,
        *,
        model: str,
        instructions: str,
        messages: list[Message],
        temperature: float | None = None,
        max_tokens: int | None = None,
        conversation: str | None = None,
        resume: tuple[str, int] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """A response, streamed: the Responses API where the server has it (background when
        the settings ask), else a chat completion with ``instructions`` as the system message.
        ``resume=(response_id, sequence_number)`` re-attaches to a background run after that
        event instead of starting one."""
        ...

    async def cancel(self, response_id: str) -> None:
        """Stops a confirmed background run (best effort, idempotent, quiet where the server
        has no cancel)."""
        ...

    async def structured(
        self, output: type[OutputT], *, model: str, instructions: str, text: str
    ) -> OutputT:
        """The model's answer in the shape of ``output``, validated by Pydantic, one retry.
        Raises :class:`InvalidModelOutput` when it stays invalid."""
        ...

    async def prepare(self) -> None:
        """Learns, once, whether the server has the Responses API (a request that costs no
        tokens); raises :class:`ProviderError` saying which setting to change when the settings
        ask for what the server lacks."""
        ...

    async def embed(
        self, *, model: str, texts: list[str], dimensions: int | None = None
    ) -> list[list[float]]:
        """One vector per text, in order (retried within the budget: embedding is idempotent)."""
        ...

    async def check(self) -> Capabilities:
        """Finds out what the server does (a few tiny calls) and returns it."""
        ...

    async def create_conversation(self) -> str:
        """A new upstream conversation (servers that keep context upstream)."""
        ...

    async def delete_conversation(self, conversation_id: str) -> None: ...

    async def aclose(self) -> None: ...
