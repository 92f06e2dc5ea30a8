"""A client that sends one request and then reads nothing, through a receive buffer of a few KB:
a frozen browser tab, a stuck proxy or a hostile script, as the server sees it; and the
``drops`` fixture, the clients the server has dropped for it.

A plain non-blocking socket, not an asyncio stream: a stream's transport goes on reading into
memory whatever the test does, so the server's sends would never wait. Here they fill the
socket's buffers (with a server whose own send buffer is small too: ``ServerThread(...,
send_buffer=...)``) and then block until the test reads or the server gives up.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Iterator

import pytest

RECEIVE_BUFFER = 4096


class StalledClient:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def request(
        cls,
        port: int,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> StalledClient:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.setblocking(False)
        client = cls(sock)
        await client._loop.sock_connect(sock, ("127.0.0.1", port))
        head = {"Host": "t", "Connection": "close", **(headers or {})}
        if body:
            head |= {"Content-Type": "application/json", "Content-Length": str(len(body))}
        lines = "".join(f"{name}: {value}\r\n" for name, value in head.items())
        await client._loop.sock_sendall(
            sock, f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode() + body
        )
        return client

    async def read_until(self, marker: bytes) -> bytes:
        """Reads (a little more than) up to ``marker``, then stops reading again."""
        received = b""
        while marker not in received:
            chunk = await self._loop.sock_recv(self._sock, RECEIVE_BUFFER)
            if not chunk:
                raise EOFError(f"closed before {marker!r}; got {received[-200:]!r}")
            received += chunk
        return received

    async def read_to_end(self, *, timeout_s: float = 120.0) -> bytes:
        """Everything the server sends from now until it closes the connection; a connection
        still open after ``timeout_s`` fails the test instead of hanging the suite.

        The receive buffer is made large first. Kept at a few KB, the kernel may not announce
        that the window reopened as it is read, and the server's kernel, its own zero-window
        probes backed off over the stall, sends the rest only at its next probe, up to two
        minutes later: the stream looked cut although the server had closed it with every byte
        queued (seen in ``ss``: the server's socket in FIN-WAIT-1 with its Send-Q full)."""
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        received = b""
        async with asyncio.timeout(timeout_s):
            while chunk := await self._loop.sock_recv(self._sock, 1 << 16):
                received += chunk
        return received

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def drops() -> Iterator[list[str]]:
    """The clients the server logs as dropped for not reading (``METHOD path`` of each)."""
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found = re.match(r"dropped the client of (\S+ \S+):", record.getMessage())
            if found:
                seen.append(found.group(1))

    handler = Collect()
    logger = logging.getLogger("storytool.api")
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)


async def until_dropped(drops: list[str], request: str, *, send_timeout_s: float) -> None:
    async with asyncio.timeout(send_timeout_s + 30):
        while request not in drops:
            await asyncio.sleep(0.05)
