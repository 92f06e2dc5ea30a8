"""The event log of a generation: what the task wrote, replayable by any reader.

A generation's task *writes* events here; every stream (the first ``POST /api/generate`` and
any ``GET /api/generate/{conversation_id}/events`` resume) *reads* them. Each event gets the next
integer id of its conversation (1, 2, 3, ...), sent as the SSE ``id:`` so a browser's
``EventSource`` reconnects with ``Last-Event-ID`` and loses nothing.

The protocol, in order (payloads are JSON objects, see :mod:`storytool.generation.schemas`)::

    meta             {thread_id, conversation_id}                   always first
    stage            {name: draft|refine|title|recommend,           around each stage; on done
                      status: started|done, stop_reason?}           "length" when the model
                                                                    stopped at its token limit
    delta            {stage: draft|refine, text}                    many, in order: the draft as
                                                                    it is written, then the
                                                                    refine, whose text replaces
                                                                    the draft on screen
    title            {title, fallback}                              fallback: made from the input
                                                                    (the model gave none)
    recommendations  {items: [str]}                                 may be empty
    -- exactly one terminal event --
    done             {status: "completed", usage: {name: int},
                      stop_reason: null|"length"}
    cancelled        {user_input, tags, partial_story,              user cancel or client gone;
                      partial_draft}                                story = refined text so far
    error            {code, message}                                code is the provider's code,
                                                                    "timeout", "output_limit",
                                                                    "shutdown" or "internal_error"

A comment line (``: ping``) every 15 s keeps idle connections open; it has no id.

:class:`EventLog` is the seam for several replicas: :class:`MemoryEventLog` serves one process;
:class:`RedisEventLog`, a Redis Stream per conversation (the event id is the entry id, ``XREAD
BLOCK`` to follow, ``EXPIRE`` after the terminal event), gives every replica the same answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from storytool.generation.schemas import Cancelled, Done, Error, EventPayload

logger = logging.getLogger("storytool.generation")

TERMINAL_EVENTS = frozenset({Done.event, Cancelled.event, Error.event})

MAX_READERS = 10_000
"""Connections this process may hold open to follow logs, one per waiting reader: as many
streams as it serves at once, well under Redis' own limit (10,000 clients by default)."""


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

    async def last(self, conversation_id: str) -> LoggedEvent | None:
        """The latest event, or None when the log is unknown or dropped."""
        ...

    async def end(self, conversation_id: str, payload: EventPayload) -> None:
        """Appends a terminal event for a conversation whose writer is gone (its replica died),
        so its readers stop waiting; nothing when the log already ended or is unknown."""
        ...

    def follow(self, conversation_id: str, *, after: int = 0) -> AsyncIterator[list[LoggedEvent]]:
        """The events with ids above ``after``, then new ones as they come, until the terminal
        event, which ends it even when its id is not above ``after`` (then nothing is yielded).
        Nothing when the log is unknown or already dropped.

        Events come in batches, each non-empty and in order: all that were there when the
        reader looked. A reader behind the writer (a burst of deltas, the events that end a
        story) then sends them in one write instead of one per event; a reader keeping up gets
        them one by one, as soon as each is written."""
        ...

    async def take_over(self, conversation_id: str) -> list[LoggedEvent]:
        """Makes this process the writer of a log whose writer is gone (an adopted story): its
        events so far, after which appends go on with the next ids. A log that is gone is
        started afresh (and an empty list returned)."""
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

    async def last(self, conversation_id: str) -> LoggedEvent | None:
        stream = self._streams.get(conversation_id)
        return stream.events[-1] if stream is not None and stream.events else None

    async def end(self, conversation_id: str, payload: EventPayload) -> None:
        last = await self.last(conversation_id)
        if last is not None and not last.terminal:
            await self.append(conversation_id, payload)

    async def take_over(self, conversation_id: str) -> list[LoggedEvent]:
        stream = self._streams.setdefault(conversation_id, _Stream())
        return list(stream.events)

    async def follow(
        self, conversation_id: str, *, after: int = 0
    ) -> AsyncIterator[list[LoggedEvent]]:
        stream = self._streams.get(conversation_id)
        if stream is None:
            return
        # Event n sits at index n - 1. A reader claiming the last event or more starts from
        # the last one, unsent, so it still sees that (or a later) event end the log instead of
        # waiting for ids that will never be written.
        position = min(max(after, 0), max(len(stream.events) - 1, 0))
        while True:
            # The signal of the next append, taken with the events it follows: appends made
            # while this reader was away at its yield have set it already.
            appended = stream.appended
            batch, ended = _batch(stream.events[position:], after)
            position = len(stream.events)
            if batch:
                yield batch
            if ended:
                return
            await appended.wait()

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


class RedisEventLog:
    """Every replica's logs: one Redis Stream per conversation, whose entry ids are the events'
    own ids (``7-0`` for event 7), so ``Last-Event-ID`` maps straight onto a stream position.

    Only the owning task appends, so this process counts its conversations' ids itself. A stream
    is capped at about ``maxlen`` entries and expires ``running_ttl_s`` after its first event
    (the longest a generation may run), or ``retention_s`` after its terminal event: a replica
    that dies mid-story leaves nothing behind for long.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        retention_s: float,
        running_ttl_s: float,
        maxlen: int,
        block_s: float = 5.0,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._retention_ms = max(1, int(retention_s * 1000))
        self._running_ttl_ms = max(1, int(running_ttl_s * 1000))
        self._maxlen = maxlen
        self._block_ms = int(block_s * 1000)
        self._next: dict[str, int] = {}
        # Each reader blocks a connection of its own on XREAD; in the shared pool (100 by
        # default) a hundred readers left no connection for the writers' appends.
        pool = redis.connection_pool
        self._readers = Redis(
            connection_pool=ConnectionPool(
                connection_class=pool.connection_class,
                max_connections=MAX_READERS,
                **pool.connection_kwargs,
            )
        )

    def _key(self, conversation_id: str) -> str:
        return f"{self._prefix}:events:{conversation_id}"

    async def open(self, conversation_id: str) -> None:
        self._next[conversation_id] = 1
        await self._redis.delete(self._key(conversation_id))

    async def append(self, conversation_id: str, payload: EventPayload) -> int:
        """As :meth:`EventLog.append`; 0 (nothing written) once another replica has ended the
        log, having taken this one for dead (:meth:`end`)."""
        event_id = self._next.get(conversation_id)
        if event_id is None:
            return 0
        self._next[conversation_id] = event_id + 1
        try:
            return await self._add(conversation_id, event_id, payload)
        except ResponseError:
            # The id is taken: another replica ended the log; its readers have their end.
            logger.warning("the events of %s were ended by another replica", conversation_id)
            del self._next[conversation_id]
            return 0
        except BaseException:
            self._next[conversation_id] = event_id  # not written: the next event takes its id
            raise

    async def _add(self, conversation_id: str, event_id: int, payload: EventPayload) -> int:
        logged = LoggedEvent(id=event_id, event=payload.event, data=payload.model_dump_json())
        key = self._key(conversation_id)
        fields = _fields(logged)
        entry = f"{event_id}-0"
        if event_id > 1 and not logged.terminal:  # the hot path: one round trip per delta
            await self._redis.xadd(key, fields, id=entry, maxlen=self._maxlen, approximate=True)
            return event_id
        expiry = self._retention_ms if logged.terminal else self._running_ttl_ms
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, fields, id=entry, maxlen=self._maxlen, approximate=True)
            pipe.pexpire(key, expiry)
            await pipe.execute()
        if logged.terminal:
            del self._next[conversation_id]
        return event_id

    async def take_over(self, conversation_id: str) -> list[LoggedEvent]:
        events = _parse(await self._redis.xrange(self._key(conversation_id)))
        self._next[conversation_id] = events[-1].id + 1 if events else 1
        return events

    async def last(self, conversation_id: str) -> LoggedEvent | None:
        entries = _parse(await self._redis.xrevrange(self._key(conversation_id), count=1))
        return entries[0] if entries else None

    async def end(self, conversation_id: str, payload: EventPayload) -> None:
        last = await self.last(conversation_id)
        if last is None or last.terminal:
            return
        key = self._key(conversation_id)
        logged = LoggedEvent(id=last.id + 1, event=payload.event, data=payload.model_dump_json())
        # ResponseError: its writer was alive after all and wrote that id first; it ends the log.
        with contextlib.suppress(ResponseError):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(key, _fields(logged), id=f"{logged.id}-0")
                pipe.pexpire(key, self._retention_ms)
                await pipe.execute()

    async def follow(
        self, conversation_id: str, *, after: int = 0
    ) -> AsyncIterator[list[LoggedEvent]]:
        key = self._key(conversation_id)
        after = max(after, 0)
        position = after
        missed = _parse(await self._redis.xrange(key, min=f"{after + 1}-0"))
        if not missed:
            last = await self.last(conversation_id)
            if last is None or last.terminal:
                return  # unknown or expired, or ended at or before ``after``
            # XREAD from where the log is, not from ``after``: a reader claiming more than it
            # holds still sees the terminal event come.
            position = min(after, last.id)
        answer = missed
        while True:
            if answer:
                position = answer[-1].id
                batch, ended = _batch(answer, after)
                if batch:
                    yield batch
                if ended:
                    return
            read = await self._readers.xread(
                {key: f"{position}-0"}, count=500, block=self._block_ms
            )
            if not read:
                if not await self._redis.exists(key):
                    return  # expired, or its replica died before the end
            answer = _parse(cast("list[list[Any]]", read)[0][1]) if read else []

    async def aclose(self) -> None:
        self._next.clear()
        await self._readers.aclose()


def _batch(events: list[LoggedEvent], after: int) -> tuple[list[LoggedEvent], bool]:
    """Of ``events`` (in order), those above ``after`` up to the terminal one, and whether the
    terminal one was among them."""
    batch: list[LoggedEvent] = []
    for logged in events:
        if logged.id > after:
            batch.append(logged)
        if logged.terminal:
            return batch, True
    return batch, False


def _fields(logged: LoggedEvent) -> dict[FieldT, EncodableT]:
    return {"event": logged.event, "data": logged.data}


def _parse(entries: Any) -> list[LoggedEvent]:
    """Stream entries as the client decodes them (RESP2, ``decode_responses``):
    ``[(id, {field: value}), ...]``."""
    typed = cast("list[tuple[str, dict[str, str]]]", entries or [])
    return [
        LoggedEvent(id=int(entry_id.partition("-")[0]), event=fields["event"], data=fields["data"])
        for entry_id, fields in typed
    ]
