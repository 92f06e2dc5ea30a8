"""What a story writer is asked and answers, and the one interface both writers implement.

Two writers: :class:`storytool.generation.model_writer.ModelWriter` (language models through
:mod:`storytool.llm`, prompts from :mod:`storytool.generation.prompts`) and the offline composer
(deterministic, no network, never presented as a model). The pipeline knows only
:class:`StoryWriter`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import BaseModel

from storytool.config import Settings
from storytool.llm.base import ModelClient, StreamEvent

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
    """Nearest corpus passages, for writers that draw on them (may be empty)."""
    remote_conversation_id: str | None = None
    """The thread's upstream conversation, when context is kept upstream."""
    seed: str = ""
    """What makes this conversation's story its own (its id): a deterministic writer gives each
    variant of one input a different story, and the same one again for the same conversation."""


class StoryExtras(BaseModel):
    """The small model's structured answer after a story is written."""

    title: str
    recommendations: list[str]


class StoryWriter(Protocol):
    name: str
    """``openai`` or ``offline``."""

    models: dict[str, str]
    """Model used per stage (draft, refine, mini, embedding), recorded with each story."""

    async def prepare(self) -> None:
        """Finds out, before a draft is spent, whether the refine step can run (raises
        :class:`storytool.llm.base.ProviderError` with a message that says what to change)."""
        ...

    def draft(self, request: StoryRequest) -> AsyncIterator[StreamEvent]:
        """The base story. Closing the iterator closes the upstream call."""
        ...

    def refine(
        self, request: StoryRequest, base_story: str, *, resume: tuple[str, int] | None = None
    ) -> AsyncIterator[StreamEvent]:
        """The refined story, streamed. ``resume=(response_id, sequence_number)`` picks a
        background run up after that event instead of starting over."""
        ...

    async def cancel(self, response_id: str) -> None:
        """Stops a confirmed background run started by :meth:`refine`."""
        ...

    async def extras(self, request: StoryRequest, story: str) -> StoryExtras:
        """Title and next-step recommendations for a finished story."""
        ...


def build_writer(settings: Settings, client: ModelClient | None) -> StoryWriter:
    """Language models through ``client``, or the offline composer when there is none."""
    if client is not None:
        from storytool.generation.model_writer import ModelWriter

        return ModelWriter(client, settings)
    from storytool.generation.offline_writer import OfflineWriter

    return OfflineWriter(settings)
