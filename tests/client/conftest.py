"""A real uvicorn server on loopback for the client, and a TCP proxy in front of it that really
cuts connections (the client's resume is tested against dropped sockets, not a mock)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from storytool.client import StorytoolClient
from storytool.config import AuthMode, Settings
from storytool.main import create_app
from tests.fakes.server_thread import ServerThread


@pytest.fixture
def client_settings(settings: Settings) -> Settings:
    """Offline stories at a pace that finishes a short story in a fraction of a second, users
    named by ``X-User-Id`` so tests can be two people."""
    return settings.model_copy(
        update={"offline_chars_per_second": 3000.0, "auth_mode": AuthMode.HEADER}
    )


@pytest.fixture
def server(client_settings: Settings) -> Iterator[ServerThread]:
    with ServerThread(create_app(client_settings)) as server:
        yield server


@pytest.fixture
async def alice(server: ServerThread) -> AsyncIterator[StorytoolClient]:
    async with StorytoolClient(server.url, user_id="alice", reconnect_backoff=0.01) as client:
        yield client


@pytest.fixture
async def bob(server: ServerThread) -> AsyncIterator[StorytoolClient]:
    async with StorytoolClient(server.url, user_id="bob") as client:
        yield client


class CuttingProxy:
    """Forwards loopback connections to ``port``. Connection number *i* is cut (both sockets
    closed at once, mid-stream) after ``cuts[i]`` SSE events went through it; later
    connections pass untouched, or are refused outright once ``refuse`` is set. With
    ``stall_s``, a cut connection first goes silent that long, open but forwarding nothing (a
    half-open socket, as behind a proxy that lost its peer)."""

    def __init__(
        self, port: int, *, cuts: list[int], refuse: bool = False, stall_s: float = 0.0
    ) -> None:
        self._port = port
        self._cuts = list(cuts)
        self.refuse = refuse
        self._stall_s = stall_s
        self.connections = 0
        self.cut = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._closing.set()  # ends the stalls: no connection lingers past the test
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)
        number = self.connections
        self.connections += 1
        cut_after = self._cuts[number] if number < len(self._cuts) else None
        if cut_after is None and self.refuse:
            writer.transport.abort()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._port)
        pipes = {
            asyncio.create_task(self._pipe(reader, upstream_writer, None)),
            asyncio.create_task(self._pipe(upstream_reader, writer, cut_after)),
        }
        # Either side hanging up ends the connection: a client that left must not wait for the
        # server's keep-alive timeout.
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        writer.transport.abort()
        upstream_writer.transport.abort()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, cut_after: int | None
    ) -> None:
        events = 0
        with contextlib.suppress(ConnectionError):  # the other side went away: so do we
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
                events += data.count(b"event: ")
                if cut_after is not None and events >= cut_after:
                    self.cut += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._closing.wait(), self._stall_s)
                    return
