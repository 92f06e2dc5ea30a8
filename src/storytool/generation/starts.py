"""Stories that open a new thread, written together.

Such a story reads nothing before it starts: its start is three new rows (the thread, the
conversation, its data). Each in a transaction of its own, a burst of N starts was N transactions
of three statements, and each of them held a pooled connection (on SQLite, the process's write
queue, :func:`storytool.db.engine.write_gate`) through all of its round trips, each one waiting
a turn of an event loop busy with the streams already running: at 1,000 stories arriving at once
the starts queued for seconds. Here the starts that arrive while a batch is being written go
into the next one: one transaction, one multi-row INSERT per table. A start that finds nothing
being written is written at once, as before.

A batch that fails on one of its rows (a value that does not fit, a key already taken) is
written again one start at a time, so only the start at fault fails. Any other failure (the
database away, the write queue timing out) fails every start of the batch, as it would have
failed each of them alone.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, delete
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.db.base import Base, insert_into, new_row
from storytool.errors import ServiceUnavailable
from storytool.models import Thread

MAX_BATCH = 200
"""Starts in one transaction at most: a burst larger than this is written in several."""

_THREADS: Table = Thread.__table__  # type: ignore[assignment]


@dataclass(slots=True)
class _Start:
    thread_id: str
    rows: list[tuple[Table, dict[str, Any]]]
    written: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class StartWriter:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        gate: AbstractAsyncContextManager[Any],
    ) -> None:
        self._sessionmaker = sessionmaker
        self._gate = gate
        self._queued: list[_Start] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, thread: Thread, *rows: Base) -> None:
        """Writes a new thread and the rows that go in it (in order), and returns once they are
        committed. Cancelled while its start waits for a batch, nothing is written; cancelled
        once its batch is being written, the thread (and with it every row in it) is deleted
        again before the cancel goes on."""
        start = _Start(thread.id, [new_row(instance) for instance in (thread, *rows)])
        self._queued.append(start)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="start-writer")
        try:
            await asyncio.shield(start.written)
        except asyncio.CancelledError:
            if start in self._queued:
                self._queued.remove(start)
            else:
                await self._undo(start)
            raise

    async def _undo(self, start: _Start) -> None:
        try:
            await start.written
        except Exception:  # not written: nothing to undo
            return
        async with self._gate, self._sessionmaker.begin() as session:
            await session.execute(delete(_THREADS).where(_THREADS.c.id == start.thread_id))

    async def _run(self) -> None:
        batch: list[_Start] = []
        try:
            while self._queued:
                batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
                await self._write_batch(batch)
        finally:  # left early only when cancelled, as the app stops: no start waits forever
            for start in (*batch, *self._queued):
                if not start.written.done():
                    start.written.set_exception(ServiceUnavailable("the server is stopping"))

    async def _write_batch(self, batch: list[_Start]) -> None:
        try:
            await self._insert(batch)
        except (DataError, IntegrityError) as error:
            if len(batch) == 1:
                batch[0].written.set_exception(error)
                return
            for start in batch:  # find the start at fault: the others are written
                await self._write_batch([start])
            return
        except Exception as error:
            for start in batch:
                start.written.set_exception(error)
            return
        for start in batch:
            start.written.set_result(None)

    async def _insert(self, batch: list[_Start]) -> None:
        by_table: defaultdict[Table, list[dict[str, Any]]] = defaultdict(list)
        for start in batch:
            for table, row in start.rows:
                by_table[table].append(row)
        async with self._gate, self._sessionmaker.begin() as session:
            for table, rows in by_table.items():  # the first start's order: parents first
                await session.execute(insert_into(table), rows)
