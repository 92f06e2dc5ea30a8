"""For tests of the writers that batch stories' writes (starts, ends, writes behind the stream):
a write gate the test holds, and the statements a test ran."""

from __future__ import annotations

import asyncio

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


class HeldGate:
    """A write gate the test holds: a batch waits in it until :meth:`release`, so what the test
    queues meanwhile goes into the next batch."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.waiting = asyncio.Event()

    async def hold(self) -> None:
        await self._lock.acquire()

    def release(self) -> None:
        self._lock.release()

    async def __aenter__(self) -> None:
        self.waiting.set()
        await self._lock.acquire()

    async def __aexit__(self, *_exc: object) -> None:
        self._lock.release()


def count_statements(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    """Every statement the sessionmaker's engine runs from now on, up to its first parenthesis
    (an executemany counts once)."""
    statements: list[str] = []
    engine = sessionmaker.kw["bind"]

    def seen(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        statements.append(statement.split("(")[0].strip())

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    return statements
