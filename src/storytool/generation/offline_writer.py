"""The offline writer: streams stories composed without a language model or a network.

It makes the embedded default and demos work end to end without a key. The stories come from
:mod:`storytool.generation.classical` (the prompt read as a clause, the tags as themes, the
nearest corpus passages quoted whole); this module only paces them like a model's stream and
stops them like a background run. The same conversation always gets the same story, each variant
its own. Its ``models`` say ``offline`` so nothing records it as a model.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

from storytool.config import Settings
from storytool.generation.classical import (
    compose_base_story,
    compose_extras,
    compose_refined_story,
)
from storytool.generation.story import StoryExtras, StoryRequest, StoryWriter
from storytool.llm.base import (
    ProviderError,
    StreamEvent,
    StreamFinished,
    TextDelta,
    UpstreamStarted,
)
from storytool.models import StopReason

CHUNK_CHARS = 8
"""Characters per streamed delta: small enough to look live, large enough that a long story at
the default pace is not thousands of tiny events."""


def _chunks(text: str) -> list[str]:
    return [text[start : start + CHUNK_CHARS] for start in range(0, len(text), CHUNK_CHARS)]


def _usage(request: StoryRequest, text: str) -> dict[str, int]:
    """Characters, not tokens: honest about what was counted, same keys as upstream usage."""
    return {"input_chars": len(request.user_input), "output_chars": len(text)}


class OfflineWriter(StoryWriter):
    name = "offline"

    def __init__(self, settings: Settings) -> None:
        self._chars_per_second = settings.offline_chars_per_second
        self.models = dict.fromkeys(("draft", "refine", "mini", "embedding"), "offline")
        self._cancelled: set[str] = set()
        self._running: set[str] = set()

    async def prepare(self) -> None:
        """Nothing to find out: the composer is always there."""

    async def draft(self, request: StoryRequest) -> AsyncIterator[StreamEvent]:
        """The whole base story at once: it is composed, not written, so the screen has it at
        once; the refine that replaces it streams at the configured pace."""
        story = compose_base_story(request)
        yield TextDelta(story, 0)
        yield StreamFinished(_usage(request, story))

    async def refine(
        self,
        request: StoryRequest,
        base_story: str,
        *,
        resume: tuple[str, int] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Streams the refined story at the configured pace. The text is deterministic, so a
        resume simply skips the chunks up to the given sequence number."""
        # Numbered from 1, as a Responses stream's text follows its event 0 (created): resuming
        # after 0 is resuming from the start.
        response_id, after = resume if resume else (f"offline_{uuid.uuid4().hex}", 0)
        story = compose_refined_story(request, base_story)
        self._running.add(response_id)
        try:
            # Like a background run: stopped by id, resumed from a sequence number.
            yield UpstreamStarted(response_id, background=True)
            for sequence_number, chunk in enumerate(_chunks(story), start=1):
                if sequence_number <= after:
                    continue
                await asyncio.sleep(len(chunk) / self._chars_per_second)
                if response_id in self._cancelled:
                    raise ProviderError(
                        "the story was cancelled",
                        code="cancelled",
                        stop_reason=StopReason.USER_CANCEL,
                    )
                yield TextDelta(chunk, sequence_number)
            yield StreamFinished(_usage(request, story))
        finally:
            self._running.discard(response_id)
            self._cancelled.discard(response_id)

    async def cancel(self, response_id: str) -> None:
        if response_id in self._running:
            self._cancelled.add(response_id)

    async def extras(self, request: StoryRequest, story: str) -> StoryExtras:  # noqa: ARG002
        """From the choices the story was composed of, which say more than its text."""
        return compose_extras(request)
