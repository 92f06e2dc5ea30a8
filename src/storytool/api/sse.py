"""Server-Sent Events responses with defaults that survive proxies.

Every event carries its integer id, so a reconnecting ``EventSource`` sends ``Last-Event-ID``. A
comment ping every 15 s keeps idle connections open through proxies that cut quiet streams
(Cloudflare at 100 s). ``no-transform`` and ``X-Accel-Buffering: no`` stop proxies from buffering
or rewriting the stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Protocol

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent

PING_INTERVAL_S = 15
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


class Message(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def event(self) -> str: ...
    @property
    def data(self) -> str: ...


def event_stream(
    messages: AsyncGenerator[Message, None],
    *,
    shutdown: anyio.Event | None = None,
    shutdown_grace_s: float = 0,
) -> EventSourceResponse:
    """``shutdown`` is set when the server begins to stop; the stream then gets up to
    ``shutdown_grace_s`` to send its last events before it is cut."""

    async def encode() -> AsyncIterator[ServerSentEvent]:
        # Closing the encoder closes the source too, so its cleanup runs on a disconnect.
        async with aclosing(messages):
            async for message in messages:
                yield ServerSentEvent(message.data, event=message.event, id=str(message.id))

    return EventSourceResponse(
        encode(),
        ping=PING_INTERVAL_S,
        headers=SSE_HEADERS,
        shutdown_event=shutdown,
        shutdown_grace_period=shutdown_grace_s,
    )
