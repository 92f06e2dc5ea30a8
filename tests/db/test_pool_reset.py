"""A connection goes back to the pool rolled back when, and only when, its driver still has a
transaction open: after a commit the rollback would be one more round trip per transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from storytool.config import Settings
from storytool.db.engine import create_engine


def _count_rollbacks(engine: AsyncEngine) -> list[Any]:
    """Every rollback the dialect sends (transaction ends and pool resets alike)."""
    seen: list[Any] = []
    dialect = engine.sync_engine.dialect
    original = dialect.do_rollback

    def do_rollback(dbapi_connection: Any) -> None:
        seen.append(dbapi_connection)
        original(dbapi_connection)

    dialect.do_rollback = do_rollback  # type: ignore[method-assign]
    return seen


async def test_a_committed_connection_goes_back_without_a_rollback(backend_url: str) -> None:
    engine = create_engine(Settings(), url=backend_url)
    try:
        async with engine.connect():
            pass  # the first connect's own set-up rolls back once
        rollbacks = _count_rollbacks(engine)
        for _ in range(3):
            async with engine.begin() as connection:
                await connection.execute(text("SELECT 1"))
        assert rollbacks == []
    finally:
        await engine.dispose()


async def test_a_transaction_left_open_below_sqlalchemy_is_rolled_back(
    backend_url: str,
) -> None:
    # A write the driver holds open without SQLAlchemy knowing (its transaction already ended):
    # the pool's reset must still undo it before another caller gets the connection.
    engine = create_engine(Settings(), url=backend_url)
    marker = "pool-reset-probe"
    mark = "?" if backend_url.startswith("sqlite") else "%s"

    def write_below(sync_connection: Any) -> None:
        cursor = sync_connection.connection.dbapi_connection.cursor()
        cursor.execute(f"INSERT INTO passages (work, text) VALUES ({mark}, 'x')", (marker,))
        cursor.close()

    try:
        connection = await engine.connect()
        await connection.execute(text("SELECT 1"))
        await connection.commit()
        await connection.run_sync(write_below)
        await connection.close()
        async with engine.connect() as other:
            left = await other.scalar(
                text("SELECT COUNT(*) FROM passages WHERE work = :w"), {"w": marker}
            )
        assert left == 0
    finally:
        await engine.dispose()
