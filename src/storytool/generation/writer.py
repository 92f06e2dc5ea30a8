"""Writes behind the streams: stage results, partial stories and upstream run ids of every story
the process runs, together.

A stream never waits for these writes. Values wait in memory until the writer's next
transaction, which carries whatever every story has queued by then: with N stories streaming,
the database sees about one transaction a second instead of N, and they take one pooled
connection instead of N. A newer value for a column replaces an older one still waiting.

The end of a story does not go through here: it saves the story's latest values with its final
status in its own transaction, after :meth:`StageWriter.settle` has dropped what the story still
had queued and waited out any batch already carrying older values of it, so an older partial
text never lands after the end.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.db.base import execute_by_columns
from storytool.generation.repository import SAVE_DATA, SAVE_RUN

logger = logging.getLogger("storytool.generation")


@dataclass(slots=True)
class _Waiting:
    """One story's values not yet written: ``conversation_data`` columns and the upstream run."""

    values: dict[str, Any] = field(default_factory=dict)
    upstream: str | None = None
    sequence: int | None = None
    """The upstream event the saved text ends at: where an adopting replica resumes the run."""


class StageWriter:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        gate: AbstractAsyncContextManager[Any],
    ) -> None:
        self._sessionmaker = sessionmaker
        self._gate = gate
        self._waiting: dict[str, _Waiting] = {}
        self._in_flight: frozenset[str] = frozenset()
        self._batch_done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def put(
        self,
        conversation_id: str,
        *,
        upstream: str | None = None,
        sequence: int | None = None,
        **values: Any,
    ) -> None:
        """Queues column values; ``sequence`` goes with the text it was put with, in one
        transaction, so the saved text and the position to resume from always agree."""
        waiting = self._waiting.setdefault(conversation_id, _Waiting())
        waiting.values.update(values)
        if upstream is not None:
            waiting.upstream = upstream
        if sequence is not None:
            waiting.sequence = sequence
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="stage-writer")

    async def settle(self, conversation_id: str) -> None:
        """Drops the story's queued values (its end saves newer ones) and returns once no batch
        in flight still holds older ones of it."""
        self._waiting.pop(conversation_id, None)
        while conversation_id in self._in_flight:
            await self._batch_done.wait()

    async def _run(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            self._in_flight = frozenset(batch)
            done = self._batch_done = asyncio.Event()
            try:
                await self._write(batch)
            except Exception:  # each story's end saves its text again
                logger.exception("a write behind %d generation(s) failed", len(batch))
            finally:
                self._in_flight = frozenset()
                done.set()

    async def _write(self, batch: dict[str, _Waiting]) -> None:
        values: list[dict[str, Any]] = []
        runs: list[dict[str, Any]] = []
        for conversation_id, waiting in batch.items():
            if waiting.values:
                values.append({"row_id": conversation_id, **waiting.values})
            run = {
                column: value
                for column, value in (
                    ("upstream_response_id", waiting.upstream),
                    ("upstream_sequence", waiting.sequence),
                )
                if value is not None
            }
            if run:
                runs.append({"row_id": conversation_id, **run})
        async with self._gate, self._sessionmaker.begin() as session:
            await execute_by_columns(session, SAVE_DATA, values)
            await execute_by_columns(session, SAVE_RUN, runs)
