"""Initial schema: threads, conversations, their data and evaluations, and the search passages.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25 18:57:51.470000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storytool.db.base import MYSQL_TABLE_ARGS, JSONType, LongText, UTCDateTime

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "passages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("work", sa.String(length=200), nullable=False),
        sa.Column("chapter", sa.String(length=200), nullable=True),
        sa.Column("scene", sa.String(length=200), nullable=True),
        sa.Column("text", LongText, nullable=False),
        sa.Column("extra", JSONType, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_passages")),
        **MYSQL_TABLE_ARGS,
    )
    op.create_index("ix_passages_work", "passages", ["work"], unique=False)

    op.create_table(
        "threads",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=True),
        sa.Column("remote_conversation_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_threads")),
        **MYSQL_TABLE_ARGS,
    )
    op.create_index(
        "ix_threads_user_id_updated_at_id", "threads", ["user_id", "updated_at", "id"], unique=False
    )

    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("thread_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stop_reason", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("upstream_response_id", sa.String(length=128), nullable=True),
        sa.Column("upstream_sequence", sa.Integer(), nullable=True),
        sa.Column("owner_instance", sa.String(length=64), nullable=True),
        sa.Column("usage", JSONType, nullable=True),
        sa.Column("models", JSONType, nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["threads.id"],
            name=op.f("fk_conversations_thread_id_threads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
        **MYSQL_TABLE_ARGS,
    )
    op.create_index(
        "ix_conversations_status_owner_instance",
        "conversations",
        ["status", "owner_instance"],
        unique=False,
    )

    op.create_index(
        "ix_conversations_thread_id_created_at",
        "conversations",
        ["thread_id", "created_at"],
        unique=False,
    )

    op.create_table(
        "content_evaluation",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("rating", sa.String(length=8), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_content_evaluation_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_evaluation")),
        sa.UniqueConstraint(
            "conversation_id", "user_id", name=op.f("uq_content_evaluation_conversation_id")
        ),
        **MYSQL_TABLE_ARGS,
    )
    op.create_table(
        "conversation_data",
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("user_input", LongText, nullable=False),
        sa.Column("tags", JSONType, nullable=False),
        sa.Column("base_story", LongText, nullable=True),
        sa.Column("story", LongText, nullable=True),
        sa.Column("title", sa.String(length=200), nullable=True),
        sa.Column("recommendations", JSONType, nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_conversation_data_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("conversation_id", name=op.f("pk_conversation_data")),
        **MYSQL_TABLE_ARGS,
    )


def downgrade() -> None:
    op.drop_table("conversation_data")
    op.drop_table("content_evaluation")
    op.drop_table("conversations")
    op.drop_table("threads")
    op.drop_table("passages")
