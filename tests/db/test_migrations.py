from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Insert, delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storytool.config import Settings
from storytool.db.base import Base, utcnow
from storytool.db.engine import create_engine
from storytool.db.migrations import alembic_config, downgrade, upgrade
from storytool.generation.repository import ConversationRepository, new_conversation
from storytool.models import ContentEvaluation, Conversation, ConversationData, Thread
from storytool.threads.service import open_thread
from tests.conftest import reset_schema
from tests.db.test_exact_ids import UPSTREAM_ID


class TestMigrations:
    async def test_models_and_migrations_agree(self, connection: AsyncConnection):
        def diff(sync_connection):
            context = MigrationContext.configure(sync_connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)

        assert await connection.run_sync(diff) == []

    async def test_models_and_migrations_agree_on_collations(self, connection: AsyncConnection):
        """Alembic's type comparison passes a column whose collation only one side names: the
        exact (binary) id columns are compared here."""
        if connection.dialect.name != "mysql":
            return
        rows = await connection.execute(
            text(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns "
                "WHERE table_schema = DATABASE() AND collation_name IS NOT NULL"
            )
        )
        stored = {(str(table), str(column)): str(collation) for table, column, collation in rows}
        for table in Base.metadata.sorted_tables:
            for column in table.columns:
                declared = getattr(column.type.dialect_impl(connection.dialect), "collation", None)
                if (table.name, column.name) in stored and declared is not None:
                    assert stored[table.name, column.name] == declared, (table.name, column.name)
        assert stored["threads", "user_id"] == stored["content_evaluation", "user_id"]
        assert stored["threads", "user_id"] == "utf8mb4_bin"

    async def test_exact_ids_keep_every_row_and_reference(self, backend_url: str):
        """Rows written before the ids became exact stay, with their references: one spelled in
        capitals (MariaDB matched it to its row regardless of case, and a story generated into
        an upper-cased thread_id stored it so) takes its row's own spelling."""
        thread_id, conversation_id = (
            "aaaaaaaa-0000-4000-8000-000000000001",
            "bbbbbbbb-0000-4000-8000-000000000001",
        )
        now = utcnow()
        stamps = {"created_at": now, "updated_at": now}

        def verdict(number: int, user_id: str) -> Insert:
            return insert(ContentEvaluation).values(
                id=f"cccccccc-0000-4000-8000-00000000000{number}",
                conversation_id=conversation_id,
                user_id=user_id,
                rating="like",
                **stamps,
            )

        engine = create_engine(Settings(), url=backend_url)
        try:
            await downgrade(backend_url, "0002_variants_and_feedback")
            async with engine.begin() as connection:
                as_stored = str.upper if connection.dialect.name == "mysql" else str
                await connection.execute(
                    insert(Thread).values(id=thread_id, user_id="dave", **stamps)
                )
                await connection.execute(
                    insert(Conversation).values(
                        id=conversation_id,
                        thread_id=as_stored(thread_id),
                        status="completed",
                        **stamps,
                    )
                )
                await connection.execute(
                    insert(ConversationData).values(
                        conversation_id=as_stored(conversation_id), user_input="x", tags=[]
                    )
                )
                await connection.execute(verdict(1, "dave"))
            await upgrade(backend_url)
            async with engine.begin() as connection:
                references = (
                    await connection.execute(
                        select(Conversation.thread_id, ConversationData.conversation_id).join(
                            ConversationData
                        )
                    )
                ).one()
                assert tuple(references) == (thread_id, conversation_id)
                await connection.execute(verdict(2, "DAVE"))
                await connection.execute(
                    Conversation.__table__.update().values(upstream_response_id=UPSTREAM_ID)
                )
                await connection.execute(delete(Thread).where(Thread.id == thread_id))
                for table in (Conversation, ConversationData, ContentEvaluation):
                    left = await connection.execute(select(table))
                    assert left.all() == [], f"{table.__tablename__} kept rows of a deleted thread"
        finally:
            async with engine.begin() as connection:
                await connection.execute(delete(Thread).where(Thread.id == thread_id))
            await engine.dispose()
            await upgrade(backend_url)

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
        thread = await open_thread(session, user_id="사용자", thread_id=None)
        conversation = await ConversationRepository(session).add(
            new_conversation(
                thread_id=thread.id, user_input="춘향이 그네를 뛰더라", tags=["사랑", "절개"]
            )
        )
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
