"""A real server for the fuzzer on each database, as a gateway would put it behind itself.

Header auth (the fuzzer sends ``X-User-Id``), a per-user rate limit a deployment could run with,
the offline provider at a fast pace (a story is written in under a second, so a cancel sent
right after it starts finds it running, one sent later finds it done), and a small
search index (the hashing embedder builds it at once), so ``POST /api/search`` answers from an
index rather than a 503. Its rows are deleted when the module is done with it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import delete

from storytool.config import AuthMode, EmbedderKind, Settings
from storytool.db.base import Base
from storytool.db.engine import create_engine
from storytool.main import create_app
from tests.fakes.server_thread import ServerThread
from tests.fuzz.oracle import Oracle
from tests.search.conftest import build

RATE_LIMIT = "40/second"
"""Per user: a burst no person at a browser reaches and a script (this fuzzer) does, so some
requests are refused (429) and most get through. The default (120/minute) would refuse nearly
everything after each user's first 120 requests."""

USERS = ("dave", "DAVE")
"""Two users whose ids are equal only when case is ignored (as MariaDB's default collation
does): neither may see anything of the other's."""


@dataclass
class Target:
    url: str
    oracle: Oracle = field(default_factory=Oracle)
    users: Iterator[str] = field(default_factory=lambda: itertools.cycle(USERS))
    """Who sends the next request of the run over every operation: each user in turn."""
    ran: set[str] = field(default_factory=set)
    """The tests that have run against it."""


@pytest.fixture(scope="module")
def fuzzed(backend_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("fuzz")
    app_settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=backend_url,
        data_dir=folder / "data",
        index_dir=folder / "indexes",
        embedder=EmbedderKind.HASHING,
        index_name="sample",
        offline_chars_per_second=4_000.0,
        auth_mode=AuthMode.HEADER,
        rate_limit=RATE_LIMIT,
    )
    asyncio.run(build(app_settings))
    try:
        with ServerThread(create_app(app_settings)) as server:
            yield Target(server.url)
    finally:
        asyncio.run(_delete_rows(backend_url))


async def _delete_rows(url: str) -> None:
    engine = create_engine(Settings(), url=url)
    try:
        async with engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                await connection.execute(delete(table))
    finally:
        await engine.dispose()
