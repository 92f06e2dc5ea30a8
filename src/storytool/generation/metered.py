"""Generation metrics, read off the event log every generation writes through.

Every story's life is in its events (``meta`` first, ``delta`` as it streams, exactly one terminal
event), so wrapping the log measures every generation without the pipeline knowing about metrics:
streams in flight, time to the first delta, characters per second, and how each one ended
(``done`` → completed; ``cancelled``; ``error`` → failed, by its code; the ``shutdown`` code →
interrupted). Each end is also logged at INFO, with counts only (never the story).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from storytool.generation.events import EventLog, LoggedEvent
from storytool.generation.schemas import (
    Cancelled,
    Delta,
    Done,
    Error,
    EventPayload,
    Meta,
    Title,
)
from storytool.metrics import Metrics

logger = logging.getLogger("storytool.generation")


@dataclass(slots=True)
class _Timing:
    started: float
    first_delta: float | None = None
    characters: int = 0


class MeteredEventLog:
    """An :class:`EventLog` that records :class:`Metrics` as events pass into ``inner``."""

    def __init__(self, inner: EventLog, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self._timings: dict[str, _Timing] = {}

    async def open(self, conversation_id: str) -> None:
        await self._inner.open(conversation_id)

    async def append(self, conversation_id: str, payload: EventPayload) -> int:
        event_id = await self._inner.append(conversation_id, payload)
        self._observe(conversation_id, payload)
        return event_id

    def _observe(self, conversation_id: str, payload: EventPayload) -> None:
        now = time.monotonic()
        if isinstance(payload, Meta):
            self._timings[conversation_id] = _Timing(started=now)
            self._metrics.active_streams.inc()
            return
        timing = self._timings.get(conversation_id)
        if timing is None:
            return
        if isinstance(payload, Title) and payload.fallback:
            self._metrics.optional_fallbacks.labels("title").inc()
        elif isinstance(payload, Delta):
            if timing.first_delta is None:
                timing.first_delta = now
                self._metrics.first_delta_seconds.observe(now - timing.started)
            timing.characters += len(payload.text)
        elif isinstance(payload, Done | Cancelled | Error):
            del self._timings[conversation_id]
            self._metrics.active_streams.dec()
            status, stop_reason = _outcome(payload)
            self._metrics.generations.labels(status, stop_reason).inc()
            if timing.first_delta is not None and now > timing.first_delta:
                rate = timing.characters / (now - timing.first_delta)
                self._metrics.characters_per_second.observe(rate)
            logger.info(
                "generation %s ended: %s (%s), %d characters in %.1f s",
                conversation_id,
                status,
                stop_reason,
                timing.characters,
                now - timing.started,
            )

    async def take_over(self, conversation_id: str) -> list[LoggedEvent]:
        """An adopted story is measured from here on, as one more stream of this process."""
        events = await self._inner.take_over(conversation_id)
        self._timings[conversation_id] = _Timing(started=time.monotonic())
        self._metrics.active_streams.inc()
        return events

    async def last(self, conversation_id: str) -> LoggedEvent | None:
        return await self._inner.last(conversation_id)

    async def end(self, conversation_id: str, payload: EventPayload) -> None:
        """A dead replica's story, ended by this one: counted by how it ended, not as a stream
        of this process."""
        await self._inner.end(conversation_id, payload)
        if isinstance(payload, Done | Cancelled | Error):
            self._metrics.generations.labels(*_outcome(payload)).inc()

    def follow(self, conversation_id: str, *, after: int = 0) -> AsyncIterator[list[LoggedEvent]]:
        return self._inner.follow(conversation_id, after=after)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _outcome(payload: Done | Cancelled | Error) -> tuple[str, str]:
    """(status, stop_reason) labels of a terminal event."""
    if isinstance(payload, Done):
        return "completed", payload.stop_reason or "none"
    if isinstance(payload, Cancelled):
        return "cancelled", "cancel"
    if payload.code in ("shutdown", "interrupted"):
        return "interrupted", payload.code
    return "failed", payload.code
