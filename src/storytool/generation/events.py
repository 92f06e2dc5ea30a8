"""The event log of a generation: what the task wrote, replayable by any reader.

A generation's task *writes* events here; every stream (the first ``POST /api/generate`` and
any ``GET /api/generate/{conversation_id}/events`` resume) *reads* them. Each event gets the next
integer id of its conversation (1, 2, 3, ...), sent as the SSE ``id:`` so a browser's
``EventSource`` reconnects with ``Last-Event-ID`` and loses nothing.

The protocol, in order (payloads are JSON objects, see :mod:`storytool.generation.schemas`)::

    meta             {thread_id, conversation_id}                   always first
    stage            {name: draft|refine|title|recommend,           around each stage
                      status: started|done}
    delta            {text}                                         many, refine output in order
    title            {title}
    recommendations  {items: [str]}
    -- exactly one terminal event --
    done             {status: "completed", usage: {name: int}}
    cancelled        {user_input, tags, partial_story}              user cancel or client gone
    error            {code, message}                                code is the provider's code,
                                                                    "timeout", "output_limit",
                                                                    "shutdown" or "internal_error"

A comment line (``: ping``) every 15 s keeps idle connections open; it has no id.

:class:`EventLog` is the seam for several replicas: :class:`MemoryEventLog` serves one process;
a Redis Stream per conversation (``XADD`` with the id as the entry's field, ``XREAD BLOCK`` to
follow, ``EXPIRE`` after the terminal event) gives every replica the same answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from storytool.generation.schemas import Cancelled, Done, Error, EventPayload

TERMINAL_EVENTS = frozenset({Done.event, Cancelled.event, Error.event})


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    id: int
    event: str
    data: str
    """The payload as JSON text, so a log outside this process stores it as it is."""

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS


class EventLog(Protocol):
    async def open(self, conversation_id: str) -> None:
        """Starts an empty log for a conversation about to run."""
        ...

    async def append(self, conversation_id: str, payload: EventPayload) -> int:
        """Adds an event and returns its id. After the terminal event the log is kept for a while
        (for late resumes), then dropped."""
        ...

    async def knows(self, conversation_id: str) -> bool: ...

    def follow(self, conversation_id: str, *, after: int = 0) -> AsyncIterator[LoggedEvent]:
        """The events with ids above ``after``, then new ones as they come, until the terminal
        event. Nothing when the log is unknown or already dropped."""
        ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Stream:
    events: list[LoggedEvent] = field(default_factory=list)
    appended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set (and replaced) on every append; readers wait on the one they saw."""


class MemoryEventLog:
    """One process's logs. Memory stays bounded: a log holds one conversation's events (its output
    is capped by ``max_output_chars``), and it is dropped ``retention_s`` after its terminal event
    or, past ``max_finished`` finished logs, oldest first."""

    def __init__(self, *, retention_s: float, max_finished: int = 1000) -> None:
        self._retention_s = retention_s
        self._max_finished = max_finished
        self._streams: dict[str, _Stream] = {}
        self._finished: dict[str, asyncio.TimerHandle] = {}

    async def open(self, conversation_id: str) -> None:
        self._streams[conversation_id] = _Stream()

    async def append(self, conversation_id: str, payload: EventPayload) -> int:
        stream = self._streams[conversation_id]
        logged = LoggedEvent(
            id=len(stream.events) + 1, event=payload.event, data=payload.model_dump_json()
        )
        stream.events.append(logged)
        stream.appended.set()
        stream.appended = asyncio.Event()
        if logged.terminal:
            self._retire(conversation_id)
        return logged.id

    async def knows(self, conversation_id: str) -> bool:
        return conversation_id in self._streams

    async def follow(self, conversation_id: str, *, after: int = 0) -> AsyncIterator[LoggedEvent]:
        stream = self._streams.get(conversation_id)
        if stream is None:
            return
        position = max(after, 0)
        while True:
            while position < len(stream.events):
                logged = stream.events[position]
                position += 1
                yield logged
                if logged.terminal:
                    return
            await stream.appended.wait()

    async def aclose(self) -> None:
        for handle in self._finished.values():
            handle.cancel()
        self._finished.clear()
        self._streams.clear()

    def _retire(self, conversation_id: str) -> None:
        loop = asyncio.get_running_loop()
        self._finished[conversation_id] = loop.call_later(
            self._retention_s, self._drop, conversation_id
        )
        while len(self._finished) > self._max_finished:
            oldest = next(iter(self._finished))
            self._finished[oldest].cancel()
            self._drop(oldest)

    def _drop(self, conversation_id: str) -> None:
        self._finished.pop(conversation_id, None)
        self._streams.pop(conversation_id, None)
