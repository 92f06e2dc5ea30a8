"""The feedback export over many liked stories: rows a second and the peak Python memory.

    .venv/bin/python -m bench.export [--url mysql+asyncmy://root@127.0.0.1:3306/mysql] [--rows N]

Without ``--url`` it runs on a fresh SQLite file; with a MariaDB/MySQL server URL it creates its
own database (``storytool_bench_export``) beside the one named and drops it at the end. It
migrates, bulk-inserts ``--rows`` liked stories of about 1,000 characters (one user, 100 to a
thread), then reads the whole export through :class:`FeedbackExport` (what
``GET /api/evaluations/export`` streams) twice: once timed, once under ``tracemalloc`` for the
peak. Loopback only; bounded by ``--rows``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import tracemalloc
from pathlib import Path

from sqlalchemy import make_url, text
from tests.factories import seed_judged

from storytool.config import Settings
from storytool.db.engine import create_engine, create_sessionmaker
from storytool.db.migrations import upgrade
from storytool.evaluations.export import EXPORT_BATCH_ROWS, FeedbackExport
from storytool.models import Rating

BENCH_DATABASE = "storytool_bench_export"


async def _server_database(url: str, *, drop: bool) -> str:
    engine = create_engine(Settings(), url=url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP DATABASE IF EXISTS `{BENCH_DATABASE}`"))
            if not drop:
                await connection.execute(
                    text(f"CREATE DATABASE `{BENCH_DATABASE}` CHARACTER SET utf8mb4")
                )
    finally:
        await engine.dispose()
    return make_url(url).set(database=BENCH_DATABASE).render_as_string(hide_password=False)


async def _read(export: FeedbackExport) -> tuple[int, int]:
    lines = size = 0
    async for line in export.lines(user_id="bench", rating=Rating.LIKE, since=None):
        lines += 1
        size += len(line.encode())
    return lines, size


async def run(url: str, rows: int) -> None:
    await upgrade(url)
    started = time.perf_counter()
    await seed_judged(url, user_id="bench", count=rows)
    print(f"seeded {rows:,} liked stories in {time.perf_counter() - started:.1f} s")
    engine = create_engine(Settings(), url=url)
    export = FeedbackExport(create_sessionmaker(engine), system_prompt="고전 소설 작가")
    try:
        started = time.perf_counter()
        lines, size = await _read(export)
        elapsed = time.perf_counter() - started
        tracemalloc.start()
        await _read(export)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        await engine.dispose()
    print(
        f"{engine.dialect.name}: {lines:,} lines, {size / 1e6:.1f} MB in {elapsed:.2f} s "
        f"({lines / elapsed:,.0f} lines/s, {size / 1e6 / elapsed:.1f} MB/s); "
        f"peak traced memory {peak / 1e6:.1f} MB (batches of {EXPORT_BATCH_ROWS})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a MariaDB/MySQL server URL; SQLite when left out")
    parser.add_argument("--rows", type=int, default=100_000)
    arguments = parser.parse_args()
    if arguments.url is None:
        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(run(f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}", arguments.rows))
        return
    url = asyncio.run(_server_database(arguments.url, drop=False))
    try:
        asyncio.run(run(url, arguments.rows))
    finally:
        asyncio.run(_server_database(arguments.url, drop=True))


if __name__ == "__main__":
    main()
