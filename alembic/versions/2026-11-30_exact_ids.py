"""Exact ids: every id, foreign key, user id and replica id compares byte for byte, and upstream
ids are stored whole.

MySQL/MariaDB compared them by the tables' collation (``utf8mb4_unicode_ci``), which ignores
case: user ``DAVE`` found ``dave``'s threads, and one verdict per (conversation, user) held for
``dave`` and ``DAVE`` together. Those columns become ``utf8mb4_bin`` (their indexes and unique
keys follow). SQLite compares exactly already; there only the upstream ids' declared type
changes, which leaves the stored rows as they are.

Revision ID: 0003_exact_ids
Revises: 0002_variants_and_feedback
Create Date: 2026-11-30 12:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from storytool.db.sqlite_schema import edit_table_sql

revision: str = "0003_exact_ids"
down_revision: str | None = "0002_variants_and_feedback"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EXACT: dict[str, list[tuple[str, int, bool]]] = {
    "threads": [("id", 36, False), ("user_id", 128, False)],
    "conversations": [
        ("id", 36, False),
        ("thread_id", 36, False),
        ("parent_conversation_id", 36, True),
        ("owner_instance", 64, True),
    ],
    "conversation_data": [("conversation_id", 36, False)],
    "content_evaluation": [
        ("id", 36, False),
        ("conversation_id", 36, False),
        ("user_id", 128, False),
    ],
}
"""(column, length, nullable) of every column compared as an identity, by table."""

_FOREIGN_KEYS: list[tuple[str, str, str, str, str]] = [
    ("fk_conversations_thread_id_threads", "conversations", "thread_id", "threads", "CASCADE"),
    (
        "fk_conversations_parent_conversation_id_conversations",
        "conversations",
        "parent_conversation_id",
        "conversations",
        "SET NULL",
    ),
    (
        "fk_conversation_data_conversation_id_conversations",
        "conversation_data",
        "conversation_id",
        "conversations",
        "CASCADE",
    ),
    (
        "fk_content_evaluation_conversation_id_conversations",
        "content_evaluation",
        "conversation_id",
        "conversations",
        "CASCADE",
    ),
]
"""(name, table, column, referred table, on delete); each refers to its referred table's id."""

_UPSTREAM_IDS = [("threads", "remote_conversation_id"), ("conversations", "upstream_response_id")]
"""Ids other servers give: LiteLLM's run to ~450 characters. Never compared, never indexed."""


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        _spell_references_as_their_rows()
        _change_id_columns(exact=True)
    _retype_upstream_ids(sa.String(128), sa.Text())


def downgrade() -> None:
    _retype_upstream_ids(sa.Text(), sa.String(128))
    if op.get_bind().dialect.name != "sqlite":
        _change_id_columns(exact=False)


def _retype_upstream_ids(old: sa.types.TypeEngine[str], new: sa.types.TypeEngine[str]) -> None:
    """On SQLite the declared type is edited in place: both have TEXT affinity, so the stored
    rows are as they were."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        for table, column in _UPSTREAM_IDS:
            op.alter_column(table, column, type_=new, existing_type=old, existing_nullable=True)
        return
    before, after = (type_.compile(dialect=bind.dialect) for type_ in (old, new))
    for table, column in _UPSTREAM_IDS:
        edit_table_sql(
            bind,
            table,
            lambda sql, column=column: sql.replace(f"{column} {before}", f"{column} {after}"),
        )


def _spell_references_as_their_rows() -> None:
    """Before, a reference found its row in any case (a story generated into ``thread_id`` in
    capitals stored the capitals); compared exactly, it would find none. Each reference takes
    its row's own spelling first, while the old collation still matches them."""
    for _name, table, column, referred, _on_delete in _FOREIGN_KEYS:
        child = sa.table(table, sa.column(column)).alias("child")
        parent = sa.table(referred, sa.column("id")).alias("parent")
        op.execute(
            sa.update(child)
            .where(
                child.c[column] == parent.c.id,
                child.c[column].collate("utf8mb4_bin") != parent.c.id,
            )
            .values({column: parent.c.id})
        )


def _change_id_columns(*, exact: bool) -> None:
    """MariaDB refuses to change the collation of a column a foreign key uses, and a foreign key
    between columns of two collations: the keys are dropped around the change and made again
    (which checks every reference against its row, now exactly)."""
    for name, table, _column, _referred, _on_delete in _FOREIGN_KEYS:
        op.drop_constraint(name, table, type_="foreignkey")
    for table, columns in _EXACT.items():
        for column, length, nullable in columns:
            op.alter_column(
                table,
                column,
                type_=mysql.VARCHAR(length, collation="utf8mb4_bin" if exact else None),
                existing_type=sa.String(length),
                existing_nullable=nullable,
            )
    for name, table, column, referred, on_delete in _FOREIGN_KEYS:
        op.create_foreign_key(name, table, referred, [column], ["id"], ondelete=on_delete)
