"""A client that reads very slowly holds neither the story back nor unbounded memory.

The story's task writes to the event log whatever the reader does (it finishes and is stored while
the reader sits still); the stream to the reader only sends as fast as the socket drains, so
what the server holds per stalled stream is its event log (capped by ``max_output_chars``) and a
socket buffer, not a growing queue. Measured with tracemalloc on an in-process uvicorn server.
These offline stories (8 KB each) fit in the kernel's socket buffers; the send path past them
awaits the socket (uvicorn's flow control), which this test does not push to.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import tracemalloc

from sqlalchemy import select

from storytool.config import Settings
from storytool.main import create_app
from storytool.models import Conversation, ConversationStatus
from tests.fakes.server_thread import ServerThread
from tests.generation.conftest import Database

READERS = 8
BODY = json.dumps(
    {"user_input": "느리게 읽는 손님이 이야기를 청하니", "tags": [], "options": {"length": "long"}}
).encode()


async def open_stalled_reader(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Sends ``POST /api/generate`` from a socket with a tiny receive buffer, and reads nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**24)
    writer.write(
        b"POST /api/generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n".encode()
        + BODY
    )
    await writer.drain()
    return reader, writer


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def test_stalled_readers_do_not_hold_the_story_back_nor_grow_memory(
    settings: Settings, database: Database
):
    app_settings = settings.model_copy(
        update={"offline_chars_per_second": 20_000.0, "max_running_per_user": READERS}
    )
    with ServerThread(create_app(app_settings)) as server:
        warm_up, _writer = await open_stalled_reader(server.port)
        await warm_up.read()  # first-request caches (SQL compilation, pools) are not the streams'
        tracemalloc.start()
        try:
            before = traced()
            readers = [await open_stalled_reader(server.port) for _ in range(READERS)]
            # The stories finish and are stored although nobody has read a byte of them.
            async with asyncio.timeout(20):
                while (await database.counts())[1] <= READERS or not await all_completed(database):
                    await asyncio.sleep(0.1)
            held = traced() - before
            await asyncio.sleep(1.0)
            later = traced() - before
        finally:
            tracemalloc.stop()
        bodies = [await reader.read() for reader, _writer in readers]
        for _reader, writer in readers:
            writer.close()

    for body in bodies:
        names = [line for line in body.splitlines() if line.startswith(b"event:")]
        assert names[0] == b"event: meta"
        assert names[-1] == b"event: done"
    streamed = sum(len(body) for body in bodies)
    assert streamed > READERS * 4096  # more than the readers' receive buffers could take
    assert later - held < 64 * 1024  # flat while the readers sit still
    # Per stalled stream: its event log, socket buffers and, on MariaDB, a pooled connection
    # (measured: about 60 KiB on SQLite, 350 KiB on MariaDB).
    assert held / READERS < 512 * 1024


async def all_completed(database: Database) -> bool:
    async with database.sessionmaker() as session:
        statuses = (await session.scalars(select(Conversation.status))).all()
    return all(status is ConversationStatus.COMPLETED for status in statuses)
