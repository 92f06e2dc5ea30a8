"""Stories that open a new thread, started together.

Such a story reads nothing before it starts: its start is three new rows (the thread, the
conversation, its data). Each in a transaction of its own, a burst of N starts was N transactions
of three statements, each waiting at the pool (on SQLite, the process's write queue) for all of
the others' round trips: at 1,000 stories arriving at once the starts queued for seconds. Here
the starts that arrive while a batch is being written go into the next one, one transaction with
one multi-row INSERT per table (:class:`storytool.db.batches.GroupCommit`).
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.db.base import Base, insert_into, new_row
from storytool.db.batches import GroupCommit, Submitted
from storytool.models import Thread

_THREADS: Table = Thread.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class _Start:
    thread_id: str
    rows: list[tuple[Table, dict[str, Any]]]


class StartWriter(GroupCommit[_Start, None]):
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        gate: AbstractAsyncContextManager[Any],
    ) -> None:
        super().__init__("start-writer")
        self._sessionmaker = sessionmaker
        self._gate = gate

    async def write(self, thread: Thread, *rows: Base) -> None:
        """Writes a new thread and the rows that go in it (in order), and returns once they are
        committed. Cancelled while its start waits for a batch, nothing is written; cancelled
        once its batch is being written, the thread (and with it every row in it) is deleted
        again before the cancel goes on."""
        await self.submit(_Start(thread.id, [new_row(instance) for instance in (thread, *rows)]))

    async def _abandoned(self, submitted: Submitted[_Start, None]) -> None:
        try:
            await submitted.outcome
        except Exception:  # not written: nothing to undo
            return
        async with self._gate, self._sessionmaker.begin() as session:
            await session.execute(delete(_THREADS).where(_THREADS.c.id == submitted.item.thread_id))

    async def _write_one(self, item: _Start) -> None:
        await self._write_many([item])

    async def _write_many(self, items: list[_Start]) -> list[None]:
        by_table: defaultdict[Table, list[dict[str, Any]]] = defaultdict(list)
        for start in items:
            for table, row in start.rows:
                by_table[table].append(row)
        async with self._gate, self._sessionmaker.begin() as session:
            for table, rows in by_table.items():  # the first start's order: parents first
                await session.execute(insert_into(table), rows)
        return [None] * len(items)
