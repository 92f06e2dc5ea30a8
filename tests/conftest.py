"""Shared fixtures. Every database test runs on SQLite and on MariaDB/MySQL.

The MariaDB URL comes from ``STORYTOOL_TEST_MYSQL_URL`` (default: root on 127.0.0.1:3306, database
``test``). Each test run creates its own database beside that one and drops it at the end, so runs
in parallel do not meet. When MariaDB does not answer, the MariaDB half is skipped locally and
reported at the end of the run; under ``CI=true`` that is an error instead.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from storytool.config import Settings
from storytool.db.base import Base
from storytool.db.engine import create_engine
from storytool.db.migrations import upgrade
from tests.fakes.openai_server import FakeOpenAI

DEFAULT_MYSQL_URL = "mysql+asyncmy://root@127.0.0.1:3306/test?charset=utf8mb4"
MYSQL_URL = os.environ.get("STORYTOOL_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# One test process starts hundreds of apps: freezing what is alive at each start (the previous
# apps included) would keep their reference cycles for the rest of the run. Servers the tests
# start as subprocesses inherit this too.
os.environ.setdefault("STORYTOOL_GC_FREEZE", "false")

_mysql_unavailable: list[str] = []
_backends_run: set[str] = set()


async def _mysql_answers(url: str) -> str | None:
    engine = create_engine(Settings(), url=url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # any failure to connect means "not available here"
        return f"{type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()


async def _create_database(url: str, name: str, *, drop: bool = False) -> None:
    engine = create_engine(Settings(), url=url)
    try:
        async with engine.begin() as connection:
            if drop:
                await connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            else:
                await connection.execute(
                    text(
                        f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                    )
                )
    finally:
        await engine.dispose()


async def reset_schema(url: str) -> None:
    """Drops every table (ours and Alembic's) so the history runs from nothing."""
    engine = create_engine(Settings(), url=url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.drop_all)
            await connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "mariadb"])
def backend_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database URL per backend, migrated to head once per session."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'storytool.db'}"
        asyncio.run(upgrade(url))
        _backends_run.add(request.param)
        yield url
        return
    problem = asyncio.run(_mysql_answers(MYSQL_URL))
    if problem is not None:
        if IN_CI:
            pytest.fail(f"MariaDB at {MYSQL_URL} does not answer under CI: {problem}")
        _mysql_unavailable.append(problem)
        pytest.skip(f"MariaDB half not run: {MYSQL_URL} does not answer ({problem})")
    base = make_url(MYSQL_URL)
    name = f"{base.database}_storytool_{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_database(MYSQL_URL, name))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        asyncio.run(upgrade(url))
        _backends_run.add(request.param)
        yield url
    finally:
        asyncio.run(_create_database(MYSQL_URL, name, drop=True))


@pytest.fixture(scope="session")
async def engine(backend_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(Settings(), url=backend_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection whose outer transaction is rolled back after the test."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield connection
        await transaction.rollback()


@pytest.fixture
async def session(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    """A session inside the test's transaction; its commits become savepoints."""
    async with AsyncSession(
        bind=connection,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
    ) as session:
        yield session


@pytest.fixture
async def committed_url(backend_url: str) -> AsyncIterator[str]:
    """The backend's URL for tests whose code commits for real (apps, servers); every row is
    deleted afterwards."""
    yield backend_url
    engine = create_engine(Settings(), url=backend_url)
    try:
        async with engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                await connection.execute(delete(table))
    finally:
        await engine.dispose()


@pytest.fixture
def settings(committed_url: str, tmp_path: Path) -> Settings:
    """Settings for an app on the test's database, offline provider, local auth."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=committed_url,
        data_dir=tmp_path / "data",
        index_dir=tmp_path / "indexes",
    )


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    """One fake OpenAI server on loopback for the whole run (see tests/fakes/openai_server.py)."""
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> FakeOpenAI:
    """The shared fake server with a fresh behaviour and empty records for this test."""
    fake_openai_server.reset()
    return fake_openai_server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _mysql_unavailable:
        terminalreporter.write_line(
            f"NOTE: the MariaDB half of the database tests was NOT run ({MYSQL_URL} did not "
            "answer); only SQLite was tested. Set STORYTOOL_TEST_MYSQL_URL or start MariaDB.",
            yellow=True,
        )
    if _backends_run:
        names = " and ".join(sorted(_backends_run))
        terminalreporter.write_line(f"database tests ran on: {names}", green=True)
