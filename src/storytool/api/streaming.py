"""Streamed answers that let go of a client who stops reading.

A streamed answer goes out as fast as its client reads: once the kernel's socket buffers and the
server's write buffer are full, each send waits for the client. A client that never reads again
(a frozen tab, a stuck proxy, a script with a tiny receive window) would hold that send, and
whatever the stream holds, for ever. So every send gets ``send_timeout_s``; past it the answer
gives up and the server closes the connection. Only a client that takes *nothing* for that long
is dropped: the wait starts once the buffers are full, and a slow reader keeps draining them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

logger = logging.getLogger("storytool.api")


class SendTimedOut(Exception):
    """Not a TimeoutError: Starlette turns an OSError from a send into a client disconnect."""


def sends_in_time(send: Send, timeout_s: float) -> Send:
    """``send`` with each message bounded by ``timeout_s``, past which it raises
    :class:`SendTimedOut`. Every message, the one that ends the answer too: that one waits for
    the buffers to drain like any other."""

    async def send_in_time(message: Message) -> None:
        with anyio.move_on_after(timeout_s) as waited:
            await send(message)
        if waited.cancelled_caught:
            raise SendTimedOut

    return send_in_time


def dropped(scope: Scope, send_timeout_s: float | None) -> None:
    """Logs a client dropped for not reading. The ASGI app can only return without finishing
    the answer; uvicorn then closes the connection (and logs that it was left incomplete)."""
    logger.warning(
        "dropped the client of %s %s: it took nothing for %g s",
        scope["method"],
        scope["path"],
        send_timeout_s,
    )


class JsonLinesResponse(StreamingResponse):
    """``application/jsonl`` lines as they are made, each send bounded by ``send_timeout_s``."""

    media_type = "application/jsonl"

    def __init__(
        self,
        lines: AsyncIterator[str],
        *,
        send_timeout_s: float,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(lines, headers=headers)
        self.send_timeout_s = send_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, sends_in_time(send, self.send_timeout_s))
        except SendTimedOut:
            dropped(scope, self.send_timeout_s)
