"""An ASGI app under uvicorn in a background thread, on a free loopback port.

Streaming, disconnect and resume tests need real sockets (httpx's ASGITransport buffers whole
bodies), and a thread keeps the server's event loop apart from the test's.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Literal

import uvicorn
from starlette.types import ASGIApp


class ServerThread:
    def __init__(
        self,
        app: ASGIApp,
        *,
        lifespan: Literal["auto", "on", "off"] = "auto",
        shutdown_s: int = 2,
        send_buffer: int | None = None,
    ) -> None:
        """``send_buffer``: SO_SNDBUF of the listening socket, which every accepted connection
        inherits. Loopback otherwise grows a connection's send buffer to megabytes, so a client
        that stops reading blocks the server's sends only after that much."""
        # log_config=None: uvicorn's own dictConfig would close every handler already
        # installed, pytest's --log-file among them, which then drops all later records.
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            lifespan=lifespan,
            timeout_graceful_shutdown=shutdown_s,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._send_buffer = send_buffer
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Binds the socket first (no race for the port), then waits until uvicorn serves."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self._send_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)
            self._thread = None

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
