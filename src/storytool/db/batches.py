"""Group commit: writes that many tasks submit at once share a transaction.

A task submits its write and waits for it. A write submitted while a batch is being written goes
into the next batch, so one that finds nothing being written is written at once, alone, and a
burst is written in a few transactions instead of one each, with a few statements each instead of
one set per write. A transaction holds a pooled connection (on SQLite, the process's write queue)
through all of its round trips, and each round trip waits for a turn of an event loop that may be
busy with hundreds of streams: the number of transactions and of statements is what a burst waits
for.

A batch that fails on its rows (a value that does not fit, a key already taken, or a row another
party changed first, :class:`WriteAlone`) is written again one write at a time, so each write
gets its own outcome. Any other failure (the database away, the write queue timing out) fails
every write of the batch, as it would have failed each of them alone.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import DataError, IntegrityError

from storytool.errors import ServiceUnavailable

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

MAX_BATCH = 200
"""Writes in one transaction at most: a larger burst is written in several."""


class WriteAlone(Exception):
    """Raised by a batch whose writes must be made one by one to tell their outcomes apart."""


def _read_outcome(outcome: asyncio.Future[Any]) -> None:
    if not outcome.cancelled():
        outcome.exception()


@dataclass(slots=True)
class Submitted(Generic[ItemT, ResultT]):
    item: ItemT
    outcome: asyncio.Future[ResultT]


class GroupCommit(ABC, Generic[ItemT, ResultT]):
    """Subclasses write a batch (:meth:`_write_many`) and a single write (:meth:`_write_one`),
    each in one transaction of its own."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queued: list[Submitted[ItemT, ResultT]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: ItemT) -> ResultT:
        """Waits for the write. Cancelled while the write waits for a batch, it is not made;
        cancelled once its batch is being written, :meth:`_abandoned` decides what happens."""
        submitted = Submitted[ItemT, ResultT](item, asyncio.get_running_loop().create_future())
        self._queued.append(submitted)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)
        try:
            return await asyncio.shield(submitted.outcome)
        except asyncio.CancelledError:
            if submitted in self._queued:
                self._queued.remove(submitted)
            else:
                await self._abandoned(submitted)
            raise

    async def _abandoned(self, submitted: Submitted[ItemT, ResultT]) -> None:
        """A write whose submitter was cancelled while its batch was being written: it is
        written all the same (what an end saves stays saved), and a failure of it is read here,
        not reported as never retrieved."""
        submitted.outcome.add_done_callback(_read_outcome)

    @abstractmethod
    async def _write_many(self, items: list[ItemT]) -> list[ResultT]: ...

    @abstractmethod
    async def _write_one(self, item: ItemT) -> ResultT: ...

    async def _run(self) -> None:
        batch: list[Submitted[ItemT, ResultT]] = []
        try:
            while self._queued:
                batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
                await self._write(batch)
        finally:  # left early only when cancelled, as the app stops: no write waits forever
            for submitted in (*batch, *self._queued):
                if not submitted.outcome.done():
                    submitted.outcome.set_exception(ServiceUnavailable("the server is stopping"))

    async def _write(self, batch: list[Submitted[ItemT, ResultT]]) -> None:
        if len(batch) == 1:
            await self._write_alone(batch[0])
            return
        try:
            results = await self._write_many([submitted.item for submitted in batch])
        except (DataError, IntegrityError, WriteAlone):
            for submitted in batch:
                await self._write_alone(submitted)
            return
        except Exception as error:
            for submitted in batch:
                submitted.outcome.set_exception(error)
            return
        for submitted, result in zip(batch, results, strict=True):
            submitted.outcome.set_result(result)

    async def _write_alone(self, submitted: Submitted[ItemT, ResultT]) -> None:
        try:
            result = await self._write_one(submitted.item)
        except Exception as error:
            submitted.outcome.set_exception(error)
        else:
            submitted.outcome.set_result(result)
