"""History list pages on MariaDB: keyset vs OFFSET, at the first page and deep in the list.

    .venv/bin/python bench/history.py [--url mysql+asyncmy://root@127.0.0.1:3306/mysql]

Creates its own database (``storytool_bench``), migrates it, bulk-inserts 1,000,000 threads of
which 100,000 belong to one user (the rest to 9,000 others, interleaved so the user's rows are
spread over the whole table), then times list pages of 20:

- the repository's keyset query alone, at the first page and at depth 90,000;
- ``ThreadService.history``, what ``GET /api/retrieveChatHistoryList`` runs: the keyset query
  with each thread's count, last status and preview, checking and signing cursors, at the same
  two positions (depth 90,000 reached through a real signed cursor);
- the row-constructor form ``(updated_at, id) < (:a, :b)`` at depth 90,000, and the same page
  with ``LIMIT 20 OFFSET n``, for comparison;

and prints EXPLAIN for the keyset query (the expanded OR form the repository uses) and for the
row-constructor form. The database is dropped at the end unless ``--keep``.
Loopback only; bounded by ``--repeat`` per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, make_url, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from storytool.config import Settings
from storytool.db.engine import create_engine
from storytool.db.migrations import upgrade
from storytool.models import Conversation, ConversationData, ConversationStatus, Thread
from storytool.threads.cursor import CursorSigner
from storytool.threads.repository import ThreadKey, ThreadRepository
from storytool.threads.service import ThreadService

DATABASE = "storytool_bench"
USER = "bench-user"
TOTAL_ROWS = 1_000_000
USER_ROWS = 100_000
OTHER_USERS = 9_000
BATCH = 10_000
PAGE = 20
DEPTH = 90_000


class _NoRemote:
    """The bench deletes nothing upstream and runs no stories."""

    async def delete_conversation(self, conversation_id: str) -> None:
        raise AssertionError(f"unexpected upstream delete of {conversation_id}")

    async def cancel_thread(self, *, user_id: str, thread_id: str) -> None:
        raise AssertionError(f"unexpected cancel in {thread_id} of {user_id}")


async def _admin(url: str, statement: str) -> None:
    engine = create_engine(Settings(), url=url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def _fill(engine: AsyncEngine) -> float:
    """Inserts the rows in batches with executemany; answers the seconds it took. Each of the
    user's threads gets a finished conversation with a short story, so the page's activity
    query (count, last status, preview) has real rows to read."""
    rng = random.Random(7)
    owners = [USER] * USER_ROWS + [
        f"other-{n % OTHER_USERS}" for n in range(TOTAL_ROWS - USER_ROWS)
    ]
    rng.shuffle(owners)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    story = "화설 조선 시절에 한 선비가 있으되 " * 12
    began = time.perf_counter()
    for offset in range(0, TOTAL_ROWS, BATCH):
        threads, conversations, data = [], [], []
        for n in range(offset, min(offset + BATCH, TOTAL_ROWS)):
            # Whole seconds, ten threads a second: plenty of ties on updated_at for id to break.
            stamp = start + timedelta(seconds=n // 10)
            thread_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            threads.append(
                {
                    "id": thread_id,
                    "user_id": owners[n],
                    "title": f"이야기 {n}",
                    "created_at": stamp,
                    "updated_at": stamp,
                }
            )
            if owners[n] == USER:
                conversation_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                conversations.append(
                    {
                        "id": conversation_id,
                        "thread_id": thread_id,
                        "status": ConversationStatus.COMPLETED,
                        "created_at": stamp,
                        "updated_at": stamp,
                    }
                )
                data.append(
                    {"conversation_id": conversation_id, "user_input": f"{n}번째", "story": story}
                )
        async with engine.begin() as connection:
            await connection.execute(insert(Thread), threads)
            await connection.execute(insert(Conversation), conversations)
            await connection.execute(insert(ConversationData), data)
    async with engine.begin() as connection:
        for table in ("threads", "conversations", "conversation_data"):
            await connection.execute(text(f"ANALYZE TABLE {table}"))
    return time.perf_counter() - began


Measurement = tuple[str, str, Callable[[], Awaitable[Any]]]


async def _interleaved(measurements: list[Measurement], rounds: int) -> list[list[float]]:
    """Milliseconds per call, taking the calls in turn each round, so that load from other
    work on the machine falls on every measurement alike rather than on whichever ran then."""
    for _, _, call in measurements:
        await call()  # warm caches and the pool
    samples: list[list[float]] = [[] for _ in measurements]
    for _ in range(rounds):
        for taken, (_, _, call) in zip(samples, measurements, strict=True):
            began = time.perf_counter()
            await call()
            taken.append((time.perf_counter() - began) * 1000)
    return samples


def _report(measurements: list[Measurement], samples: list[list[float]]) -> None:
    for (name, position, _), taken in zip(measurements, samples, strict=True):
        taken.sort()
        p99 = taken[min(len(taken) - 1, int(len(taken) * 0.99))]
        print(
            f"| {name} | {position} | {len(taken)} | {statistics.median(taken):.2f} | {p99:.2f} |"
        )


def _keyset_statement(after: ThreadKey, *, row_constructor: bool) -> Any:
    updated_at, thread_id = after
    """The repository's keyset query (``ThreadRepository.page``) or its row-constructor twin."""
    statement = select(Thread).where(Thread.user_id == USER)
    if row_constructor:
        statement = statement.where(
            tuple_(Thread.updated_at, Thread.id) < tuple_(updated_at, thread_id)
        )
    else:
        statement = statement.where(
            (Thread.updated_at < updated_at)
            | ((Thread.updated_at == updated_at) & (Thread.id < thread_id))
        )
    return statement.order_by(Thread.updated_at.desc(), Thread.id.desc()).limit(PAGE)


async def _explain(engine: AsyncEngine, statement: Any) -> list[dict[str, Any]]:
    sql = statement.compile(engine.sync_engine, compile_kwargs={"literal_binds": True})
    async with engine.connect() as connection:
        result = await connection.execute(text(f"EXPLAIN {sql}"))
        return [dict(row._mapping) for row in result]


async def run(admin_url: str, repeat: int, *, keep: bool) -> None:
    base = make_url(admin_url)
    url = base.set(database=DATABASE).render_as_string(hide_password=False)
    await _admin(admin_url, f"DROP DATABASE IF EXISTS `{DATABASE}`")
    await _admin(
        admin_url,
        f"CREATE DATABASE `{DATABASE}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
    )
    try:
        await upgrade(url)
        engine = create_engine(Settings(), url=url)
        try:
            seconds = await _fill(engine)
            print(
                f"inserted {TOTAL_ROWS:,} threads ({USER_ROWS:,} for one user) in {seconds:.0f} s"
            )
            await _measure(engine, repeat)
        finally:
            await engine.dispose()
    finally:
        if not keep:
            await _admin(admin_url, f"DROP DATABASE IF EXISTS `{DATABASE}`")


async def _measure(engine: AsyncEngine, repeat: int) -> None:
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    signer = CursorSigner("bench")
    idle = _NoRemote()
    service = ThreadService(
        sessionmaker=sessionmaker, cursors=signer, remote=idle, generations=idle
    )

    async with sessionmaker() as session:
        ordered = (
            select(Thread.updated_at, Thread.id)
            .where(Thread.user_id == USER)
            .order_by(Thread.updated_at.desc(), Thread.id.desc())
        )
        deep_row = (await session.execute(ordered.offset(DEPTH - 1).limit(1))).one()
    deep_key: ThreadKey = (deep_row.updated_at, deep_row.id)
    deep_cursor = signer.dump(deep_key, user_id=USER)

    first_page = await service.history(user_id=USER, limit=PAGE, cursor=None)
    deep_page = await service.history(user_id=USER, limit=PAGE, cursor=deep_cursor)
    async with sessionmaker() as session:
        offset_ids = (
            await session.scalars(ordered.with_only_columns(Thread.id).offset(DEPTH).limit(PAGE))
        ).all()
    assert [item.id for item in deep_page.items] == list(offset_ids), "keyset and OFFSET disagree"
    assert len(first_page.items) == PAGE
    assert all(item.conversation_count == 1 for item in deep_page.items)

    async def offset_page(depth: int) -> None:
        async with sessionmaker() as session:
            statement = (
                select(Thread)
                .where(Thread.user_id == USER)
                .order_by(Thread.updated_at.desc(), Thread.id.desc())
                .offset(depth)
                .limit(PAGE)
            )
            (await session.scalars(statement)).all()

    async def keyset_page(after: ThreadKey | None) -> None:
        async with sessionmaker() as session:
            await ThreadRepository(session).page(user_id=USER, limit=PAGE + 1, after=after)

    async def row_constructor_page() -> None:
        async with sessionmaker() as session:
            statement = _keyset_statement(deep_key, row_constructor=True)
            (await session.scalars(statement)).all()

    deep = f"depth {DEPTH:,}"
    fast: list[Measurement] = [
        ("keyset query", "first page", lambda: keyset_page(None)),
        ("keyset query", deep, lambda: keyset_page(deep_key)),
        (
            "keyset, whole service",
            "first page",
            lambda: service.history(user_id=USER, limit=PAGE, cursor=None),
        ),
        (
            "keyset, whole service",
            deep,
            lambda: service.history(user_id=USER, limit=PAGE, cursor=deep_cursor),
        ),
        ("OFFSET query", "first page", lambda: offset_page(0)),
    ]
    # Each of these reads ~90,000 index entries and takes seconds: fewer rounds.
    slow: list[Measurement] = [
        ("row-constructor query", deep, row_constructor_page),
        ("OFFSET query", deep, lambda: offset_page(DEPTH)),
    ]
    print(f"\npages of {PAGE}, milliseconds (p99 of n samples: the largest when n < 100)")
    print("| paging | position | n | p50 ms | p99 ms |\n|---|---|---|---|---|")
    _report(fast, await _interleaved(fast, repeat))
    _report(slow, await _interleaved(slow, max(5, repeat // 20)))

    for label, row_constructor in (("expanded OR (repository)", False), ("row constructor", True)):
        print(f"\nEXPLAIN, {label}:")
        for plan in await _explain(
            engine, _keyset_statement(deep_key, row_constructor=row_constructor)
        ):
            print(
                f"  type={plan['type']} key={plan['key']} rows={plan['rows']} extra={plan['Extra']}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default="mysql+asyncmy://root@127.0.0.1:3306/mysql?charset=utf8mb4",
        help="An admin URL on the MariaDB server; the bench makes its own database beside it.",
    )
    parser.add_argument("--repeat", type=int, default=200, help="Requests per measurement.")
    parser.add_argument(
        "--keep", action="store_true", help="Leave the database for inspection (next run drops it)."
    )
    arguments = parser.parse_args()
    asyncio.run(run(arguments.url, arguments.repeat, keep=arguments.keep))


if __name__ == "__main__":
    main()
