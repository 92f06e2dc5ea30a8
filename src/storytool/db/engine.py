"""Engine and sessionmaker built from settings; the lifespan owns their lifetime."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

import sqlalchemy.exc
from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import PoolResetState

from storytool.config import Settings


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # SQLite ignores ON DELETE CASCADE unless each connection opts in.
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets the history endpoints read while a stream's task writes its partial story.
    cursor.execute("PRAGMA journal_mode=WAL")
    # Under WAL, NORMAL syncs at checkpoints instead of on every commit: a commit stays atomic
    # and the database consistent; a power cut (not a process crash) may lose the last commits.
    # A streaming story commits several times (start, stage results, flushes, end), and with
    # FULL each of those waits on an fsync while holding SQLite's single write lock.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _rollback_if_open(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
    """A connection going back to the pool is rolled back only when its driver says a
    transaction is still open: after a commit, SQLAlchemy's default rollback-on-return is one
    more round trip (on SQLite one more hop to its thread) for every transaction, a sixth of
    a short one's cost. A driver that cannot tell is always rolled back."""
    if state.terminate_only or not state.asyncio_safe:
        return  # the pool discards this connection; no I/O from here
    driver = dbapi_connection.driver_connection
    if hasattr(driver, "in_transaction"):  # aiosqlite: sqlite3's own flag
        open_transaction = bool(driver.in_transaction)
    elif hasattr(driver, "get_transaction_status"):  # asyncmy: the server's status flags
        open_transaction = bool(driver.get_transaction_status())
    else:
        open_transaction = True
    if open_transaction:
        dbapi_connection.rollback()


_STATEMENT_CACHE = {"stmt_cache_size": 128}
"""asyncmy's server-side prepared statements, the last 128 of each connection: parameters go
in binary form (no escaping of a story's text into the SQL string), and on MariaDB a statement
run for many rows (the batched starts, ends and writes behind the stream) is one round trip
(``COM_STMT_BULK_EXECUTE``) instead of one per row. Measured alone (bench/README): a 200-row
INSERT 1.2 ms of client CPU against 15-21 ms, a 10-row UPDATE 0.2 against 1.0 ms."""


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """``hide_parameters``: a failed statement's exception text would carry its parameters (a
    whole story, a prompt) into every log line that records the failure."""
    url = url or settings.effective_database_url
    if url.startswith("sqlite"):
        # A writer waits for SQLite's single write lock rather than failing at once. The pool is
        # sized like any other backend's: SQLAlchemy's default (5 + 10) starves many streams.
        engine = create_async_engine(
            url,
            echo=settings.db_echo,
            hide_parameters=True,
            connect_args={"timeout": settings.db_busy_timeout_s},
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_reset_on_return=None,
        )
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        event.listen(engine.sync_engine, "reset", _rollback_if_open)
        return engine
    # No pre-ping: it costs every transaction one more round trip (a story makes several, and
    # under load each round trip waits a turn of a busy event loop while holding its pooled
    # connection). Instead a connection found dead makes SQLAlchemy drop every connection opened
    # before it, so after a database restart one transaction fails (answered 503, or retried by
    # the story's end) and the next ones reconnect; pool_recycle retires connections before the
    # server's idle timeout would.
    engine = create_async_engine(
        url,
        echo=settings.db_echo,
        hide_parameters=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=3600,
        pool_reset_on_return=None,
        connect_args=_STATEMENT_CACHE if make_url(url).get_driver_name() == "asyncmy" else {},
    )
    event.listen(engine.sync_engine, "reset", _rollback_if_open)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class _SQLiteWriters:
    """A queue of the process's SQLite writers, in arrival order. A writer waits as long as the
    writers ahead of it get through; when none has for a whole ``timeout_s`` (SQLite's busy
    timeout: the file is locked from outside, or the disk is stuck), it gives up with the pool's
    timeout error, which the API answers with 503, instead of waiting out every writer ahead."""

    def __init__(self, timeout_s: float) -> None:
        self._lock = asyncio.Lock()
        self._timeout_s = timeout_s
        self._written = 0
        self._queued = 0

    async def __aenter__(self) -> None:
        if not self._lock.locked() and not self._queued:
            await self._lock.acquire()  # free and nobody waiting: taken at once, no wait to time
            return
        self._queued += 1
        try:
            await self._wait_turn()
        finally:
            self._queued -= 1

    async def _wait_turn(self) -> None:
        turn = asyncio.ensure_future(self._lock.acquire())
        try:
            seen = self._written
            while not turn.done():
                await asyncio.wait([turn], timeout=self._timeout_s)
                if not turn.done() and self._written == seen:
                    raise sqlalchemy.exc.TimeoutError(
                        f"no SQLite write got through in {self._timeout_s:g} s"
                    )
                seen = self._written
        except BaseException:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self._lock.release()  # the turn came as this wait was given up
            else:
                turn.cancel()
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        if exc_type is None:
            self._written += 1
        self._lock.release()


def write_gate(
    sessionmaker: async_sessionmaker[AsyncSession], *, timeout_s: float
) -> AbstractAsyncContextManager[Any]:
    """What the busiest write transactions (a story's start, its writes behind the stream, its
    end) enter before they take a connection. SQLite lets one connection write at a time, and a
    connection that finds the file locked sleeps in growing steps (up to 100 ms) before it tries
    again: with many stories streaming, writers spend their time asleep, holding pool slots that
    new stories wait for. A queue in the process hands the file from one writer to the next at
    once; a writer gives up only when no write has got through for ``timeout_s`` (SQLite's busy
    timeout). Other databases lock rows: there is nothing to queue."""
    bind = sessionmaker.kw.get("bind")
    if isinstance(bind, AsyncEngine) and bind.dialect.name == "sqlite":
        return _SQLiteWriters(timeout_s)
    return nullcontext()
