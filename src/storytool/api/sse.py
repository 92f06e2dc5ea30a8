"""Server-Sent Events responses with defaults that survive proxies.

Every event carries its integer id, so a reconnecting ``EventSource`` sends ``Last-Event-ID``. A
comment ping every 15 s keeps idle connections open through proxies that cut quiet streams
(Cloudflare at 100 s). ``no-transform`` and ``X-Accel-Buffering: no`` stop proxies from buffering
or rewriting the stream. A client that takes nothing for ``send_timeout_s`` once the buffers
are full is dropped (:mod:`storytool.api.streaming`); the story it was reading goes on.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from typing import Any, Protocol

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from storytool.api.streaming import SendTimedOut, dropped, sends_in_time

PING_INTERVAL_S = 15
WRITE_BYTES = 4096
"""A batch of events goes out in writes of about this size: few writes for a reader behind the
writer, while the server's write buffer still fills write by write, so a reader that takes
nothing is found out by a send that waits, not handed a whole story into server memory."""
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


class Message(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def event(self) -> str: ...
    @property
    def data(self) -> str: ...


class _EventStreamResponse(EventSourceResponse):
    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        send_timeout_s: float,
        release: Callable[[], None] | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(content, **kwargs)
        self._send_timeout_s = send_timeout_s
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Every send bounded here, once: sse-starlette's own send_timeout leaves out the send
        # that ends the answer, which waits for the buffers to drain like any other.
        try:
            await super().__call__(scope, receive, sends_in_time(send, self._send_timeout_s))
        except SendTimedOut:
            dropped(scope, self._send_timeout_s)
        finally:
            if self._release is not None:
                self._release()


def event_stream(
    messages: AsyncGenerator[Sequence[Message], None],
    *,
    send_timeout_s: float,
    shutdown: anyio.Event | None = None,
    shutdown_grace_s: float = 0,
    release: Callable[[], None] | None = None,
) -> EventSourceResponse:
    """``shutdown`` is set when the server begins to stop; the stream then gets up to
    ``shutdown_grace_s`` to send its last events before it is cut. ``release`` is called once
    the response has ended, however it ended (even before its first event). ``messages`` come
    in batches, each sent in writes of about :data:`WRITE_BYTES`."""

    async def encode() -> AsyncIterator[bytes]:
        # Closing the encoder closes the source too, so its cleanup runs on a disconnect.
        async with aclosing(messages):
            async for batch in messages:
                write = b""
                for message in batch:
                    write += ServerSentEvent(
                        message.data, event=message.event, id=str(message.id)
                    ).encode()
                    if len(write) >= WRITE_BYTES:
                        yield write
                        write = b""
                if write:
                    yield write

    return _EventStreamResponse(
        encode(),
        ping=PING_INTERVAL_S,
        headers=SSE_HEADERS,
        send_timeout_s=send_timeout_s,
        shutdown_event=shutdown,
        shutdown_grace_period=shutdown_grace_s,
        release=release,
    )
