"""Runs the project's Alembic history in-process (CLI, start-up of the embedded default, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from storytool.config import Settings
from storytool.db.engine import create_engine

PROJECT_ROOT = Path(__file__).resolve().parents[3]
ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"


def alembic_config(url: str) -> Config:
    if not ALEMBIC_INI.is_file():
        raise FileNotFoundError(
            f"{ALEMBIC_INI} not found: run Storytool from its source tree (pip install -e .)"
        )
    config = Config(str(ALEMBIC_INI))
    config.attributes["url"] = url
    return config


async def _run(url: str, action: str, revision: str) -> None:
    def migrate(connection: Connection) -> None:
        config = alembic_config(url)
        # env.py runs on this connection instead of opening its own event loop.
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)

    engine = create_engine(Settings(), url=url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(migrate)
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    await _run(url, "upgrade", revision)


async def downgrade(url: str, revision: str = "base") -> None:
    await _run(url, "downgrade", revision)
