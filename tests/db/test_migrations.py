from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storytool.config import Settings
from storytool.db.base import Base
from storytool.db.engine import create_engine
from storytool.db.migrations import alembic_config, downgrade, upgrade
from storytool.generation.repository import ConversationRepository
from tests.conftest import reset_schema


class TestMigrations:
    async def test_models_and_migrations_agree(self, connection: AsyncConnection):
        def diff(sync_connection):
            context = MigrationContext.configure(sync_connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)

        assert await connection.run_sync(diff) == []

    async def test_history_downgrades_and_upgrades_again(self, backend_url: str):
        await downgrade(backend_url, "base")
        engine = create_engine(Settings(), url=backend_url)
        try:
            async with engine.connect() as connection:
                tables = await connection.run_sync(lambda sync: sync.dialect.get_table_names(sync))
            assert set(tables) <= {"alembic_version"}
        finally:
            await engine.dispose()
            await upgrade(backend_url)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: sync.dialect.get_table_names(sync))
        await engine.dispose()
        assert {"threads", "conversations", "conversation_data", "content_evaluation"} <= set(
            tables
        )

    async def test_korean_and_four_byte_text_round_trips(self, session: AsyncSession):
        story = "화설, 옛날 남원 땅에 춘향이라 하는 여인이 있었더라. 🌸 " * 2000
        conversation = await ConversationRepository(session).start(
            user_id="사용자",
            thread_id=None,
            user_input="춘향이 그네를 뛰더라",
            tags=["사랑", "절개"],
        )
        assert conversation is not None
        await ConversationRepository(session).save_data(
            conversation_id=conversation.id, story=story, title="춘향전 새로 쓰기"
        )
        await session.commit()
        session.expunge_all()
        data = await ConversationRepository(session).get_data(conversation_id=conversation.id)
        assert data.story == story  # longer than MySQL's 64 KB TEXT: needs MEDIUMTEXT
        assert data.user_input == "춘향이 그네를 뛰더라"
        assert data.tags == ["사랑", "절개"]
        assert data.title == "춘향전 새로 쓰기"

    async def test_mysql_tables_use_utf8mb4(self, connection: AsyncConnection):
        if connection.dialect.name != "mysql":
            charset = (await connection.execute(text("PRAGMA encoding"))).scalar_one()
            assert charset == "UTF-8"
            return
        rows = await connection.execute(
            text(
                "SELECT table_name, table_collation FROM information_schema.tables "
                "WHERE table_schema = DATABASE()"
            )
        )
        collations = {str(row[0]): str(row[1]) for row in rows}
        for table in ("threads", "conversations", "conversation_data", "passages"):
            assert collations[table].startswith("utf8mb4"), (table, collations[table])


async def test_reset_then_upgrade_builds_every_table(backend_url: str):
    await reset_schema(backend_url)
    await upgrade(backend_url)
    engine = create_engine(Settings(), url=backend_url)
    try:
        async with engine.connect() as connection:
            version = (
                await connection.execute(text("SELECT version_num FROM alembic_version"))
            ).scalar_one()
    finally:
        await engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(backend_url)).get_current_head()
    assert version == head
