"""Engine and sessionmaker built from settings; the lifespan owns their lifetime."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

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


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    url = url or settings.effective_database_url
    if url.startswith("sqlite"):
        # A writer waits for SQLite's single write lock rather than failing at once. The pool is
        # sized like any other backend's: SQLAlchemy's default (5 + 10) starves many streams.
        engine = create_async_engine(
            url,
            echo=settings.db_echo,
            connect_args={"timeout": settings.db_busy_timeout_s},
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        return engine
    return create_async_engine(
        url,
        echo=settings.db_echo,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        pool_recycle=3600,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
