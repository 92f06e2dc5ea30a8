"""Variants and feedback: how each conversation came to be (new, regenerate, continue), its parent
and whether it is its group's pick; an evaluation's reason tags and what produced the story, and
the index the feedback export reads by.

Revision ID: 0002_variants_and_feedback
Revises: 0001_initial
Create Date: 2026-11-25 20:07:03.269571+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storytool.db.base import JSONType
from storytool.db.sqlite_schema import edit_table_sql

revision: str = "0002_variants_and_feedback"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PARENT_FK = "fk_conversations_parent_conversation_id_conversations"
_PARENT_FK_SQL = (
    f"CONSTRAINT {_PARENT_FK} FOREIGN KEY(parent_conversation_id) "
    "REFERENCES conversations (id) ON DELETE SET NULL"
)


def upgrade() -> None:
    op.add_column("content_evaluation", sa.Column("reasons", JSONType, nullable=True))
    op.add_column("content_evaluation", sa.Column("produced_by", JSONType, nullable=True))
    op.create_index(
        "ix_content_evaluation_user_id_rating_updated_at",
        "content_evaluation",
        ["user_id", "rating", "updated_at"],
    )
    op.add_column(
        "conversations",
        sa.Column("mode", sa.String(length=16), server_default="new", nullable=False),
    )
    op.add_column(
        "conversations",
        sa.Column("selected", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column("conversations", sa.Column("options", JSONType, nullable=True))
    op.add_column(
        "conversations", sa.Column("parent_conversation_id", sa.String(length=36), nullable=True)
    )
    if op.get_bind().dialect.name == "sqlite":
        edit_table_sql(
            op.get_bind(),
            "conversations",
            lambda sql: f"{sql.rstrip()[:-1].rstrip()},\n\t{_PARENT_FK_SQL}\n)",
        )
    else:
        op.create_foreign_key(
            _PARENT_FK,
            "conversations",
            "conversations",
            ["parent_conversation_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_index(
        "ix_conversations_parent_conversation_id", "conversations", ["parent_conversation_id"]
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        edit_table_sql(
            op.get_bind(), "conversations", lambda sql: sql.replace(f",\n\t{_PARENT_FK_SQL}", "")
        )
    else:
        op.drop_constraint(_PARENT_FK, "conversations", type_="foreignkey")
    op.drop_index("ix_conversations_parent_conversation_id", table_name="conversations")
    for column in ("parent_conversation_id", "options", "selected", "mode"):
        op.drop_column("conversations", column)
    op.drop_index(
        "ix_content_evaluation_user_id_rating_updated_at", table_name="content_evaluation"
    )
    op.drop_column("content_evaluation", "produced_by")
    op.drop_column("content_evaluation", "reasons")
