"""A TCP proxy on loopback that really cuts Server-Sent Event streams mid-way, so resume logic is
tested against dropped sockets, not a mock.

The *i*-th connection that carries SSE events is cut (both sockets closed at once) after
``cuts[i]`` events went through it; connections that carry none (pages, JSON answers) pass
untouched, which makes it usable in front of a browser that reuses keep-alive connections. Once
every cut is spent, later connections pass, or are refused outright when ``refuse`` is set.
With ``stall_s``, a cut connection first goes silent that long, open but forwarding nothing (a
half-open socket, as behind a proxy that lost its peer).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

EVENT_LINE = b"\nevent: "
"""How an SSE event's name line starts on the wire (after its ``id:`` line)."""


class CuttingProxy:
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
        self.connections += 1
        if self.refuse and not self._cuts:
            writer.transport.abort()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._port)
        pipes = {
            asyncio.create_task(self._pipe(reader, upstream_writer, downstream=False)),
            asyncio.create_task(self._pipe(upstream_reader, writer, downstream=True)),
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
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, downstream: bool
    ) -> None:
        events = 0
        cut_after: int | None = None
        with contextlib.suppress(ConnectionError):  # the other side went away: so do we
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
                if not downstream or EVENT_LINE not in data:
                    continue
                if events == 0 and self._cuts:
                    cut_after = self._cuts.pop(0)
                events += data.count(EVENT_LINE)
                if cut_after is not None and events >= cut_after:
                    self.cut += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._closing.wait(), self._stall_s)
                    return


class ProxyThread:
    """A :class:`CuttingProxy` on its own event loop in a background thread, for synchronous
    tests (a browser driven by Selenium)."""

    def __init__(self, port: int, *, cuts: list[int]) -> None:
        self._port = port
        self._cuts = cuts
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.proxy: CuttingProxy | None = None

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with CuttingProxy(self._port, cuts=self._cuts) as proxy:
            self.proxy = proxy
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("the proxy did not start")
        assert self.proxy is not None
        return self.proxy

    def __exit__(self, *_exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
