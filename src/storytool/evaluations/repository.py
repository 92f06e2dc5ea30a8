"""Statements over ``content_evaluation``: one verdict per user per conversation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storytool.db.base import new_id, utcnow
from storytool.models import ContentEvaluation, Rating


class EvaluationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def upsert(
        self,
        *,
        conversation_id: str,
        user_id: str,
        rating: Rating,
        comment: str | None,
        reasons: Sequence[str] = (),
        produced_by: dict[str, Any] | None = None,
    ) -> ContentEvaluation:
        """Inserts the verdict or replaces the user's earlier one, in one statement, so two
        concurrent submissions cannot both insert."""
        now = utcnow()
        values = {
            "id": new_id(),
            "conversation_id": conversation_id,
            "user_id": user_id,
            "rating": rating,
            "comment": comment,
            "reasons": list(reasons),
            "produced_by": produced_by,
            "created_at": now,
            "updated_at": now,
        }
        changes = {
            "rating": rating,
            "comment": comment,
            "reasons": list(reasons),
            "produced_by": produced_by,
            "updated_at": now,
        }
        if self.session.get_bind().dialect.name == "sqlite":
            sqlite_statement = sqlite_insert(ContentEvaluation).values(values)
            await self.session.execute(
                sqlite_statement.on_conflict_do_update(
                    index_elements=["conversation_id", "user_id"], set_=changes
                )
            )
        else:
            mysql_statement = mysql_insert(ContentEvaluation).values(values)
            await self.session.execute(mysql_statement.on_duplicate_key_update(changes))
        result = await self.session.execute(
            select(ContentEvaluation)
            .where(
                ContentEvaluation.conversation_id == conversation_id,
                ContentEvaluation.user_id == user_id,
            )
            .execution_options(populate_existing=True)
        )
        return result.scalar_one()
