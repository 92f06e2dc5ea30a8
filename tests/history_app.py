"""An app in auth_mode=header with a client per user, and committed seeding, for the history and
evaluation tests (their routes commit for real, so the rows must be committed too)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import Engine, event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.config import AuthMode, Settings
from storytool.db.engine import create_engine
from storytool.main import create_app

ALICE = "alice"
BOB = "bob"


@dataclass
class Api:
    """One app; ``as_user(id)`` is a client whose gateway says the caller is ``id``."""

    transport: httpx.ASGITransport

    def as_user(self, user_id: str | None) -> httpx.AsyncClient:
        headers = {"X-User-Id": user_id} if user_id else {}
        return httpx.AsyncClient(transport=self.transport, base_url="http://test", headers=headers)


@pytest.fixture
def header_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"auth_mode": AuthMode.HEADER, "max_comment_chars": 50})


@pytest.fixture
async def api(header_settings: Settings) -> AsyncIterator[Api]:
    app = create_app(header_settings)
    async with LifespanManager(app) as manager:
        yield Api(httpx.ASGITransport(app=manager.app))


@pytest.fixture
async def alice(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with api.as_user(ALICE) as client:
        yield client


@pytest.fixture
async def bob(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with api.as_user(BOB) as client:
        yield client


@pytest.fixture
async def db(committed_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the app's database for seeding and checking rows; commit what you seed."""
    engine = create_engine(Settings(), url=committed_url)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def count(db: async_sessionmaker[AsyncSession], model: type, **where: object) -> int:
    async with db() as session:
        statement = select(func.count()).select_from(model).filter_by(**where)
        return int(await session.scalar(statement) or 0)


@contextmanager
def counting_queries() -> Iterator[list[str]]:
    """Every SQL statement any engine in this process sends while the block runs."""
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", record)
