"""Statements over ``content_evaluation``: one verdict per user per conversation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, literal_column, select, true
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storytool.db.base import new_id, utcnow
from storytool.models import (
    ContentEvaluation,
    Conversation,
    ConversationData,
    ConversationStatus,
    GenerationMode,
    Rating,
)

_EXPORT_INDEX = "ix_content_evaluation_user_id_rating_updated_at"
"""The index an export walks. Asked for one instant past a tie-breaker, MariaDB picks it for an
equality on its three columns and reads the instant from its start; told to use it, it seeks on
all four (InnoDB's last part is the primary key)."""

ExportKey = tuple[str, datetime, Any]
"""Where an export stands: the user id, time and tie-breaker of the last verdict it read."""


@dataclass(frozen=True, slots=True)
class JudgedStory:
    key: ExportKey
    user_input: str
    tags: list[str] | None
    story: str | None
    options: dict[str, Any] | None
    continued: str | None
    """The story a continuation continued, else None."""


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

    async def judged_stories(
        self,
        *,
        user_id: str | None,
        rating: Rating,
        since: datetime | None,
        until: datetime,
        after: ExportKey | None,
        limit: int,
    ) -> list[JudgedStory]:
        """The next ``limit`` completed stories whose verdict by ``user_id`` (anyone's when None)
        is ``rating``, given or changed between ``since`` and ``until``, past ``after``: in the
        order of the ``(user_id, rating, updated_at)`` index, by user, oldest verdict first.

        Up to three statements, each one range of that index: the rest of the last verdict's
        instant, that user's later verdicts, the next users'. One statement with their OR makes
        SQLite scan from the start of the instant, which bulk-made verdicts can share by the
        thousand."""
        tiebreak = self._tiebreak()
        user_col, time_col = ContentEvaluation.user_id, ContentEvaluation.updated_at
        statement = (
            _judged(user_id=user_id, rating=rating, since=since, until=until)
            .add_columns(user_col, time_col, tiebreak)
            .with_hint(ContentEvaluation, f"FORCE INDEX ({_EXPORT_INDEX})", "mysql")
        )
        # Each range ordered only by what varies in it: ordered by all three, MariaDB sorted the
        # rest of an instant to send a hundred of it.
        ranges: list[tuple[ColumnElement[bool], tuple[Any, ...]]] = [
            (true(), (user_col, time_col, tiebreak))
        ]
        if after is not None:
            user, judged_at, tie = after
            ranges = [
                (and_(user_col == user, time_col == judged_at, tiebreak > tie), (tiebreak,)),
                (and_(user_col == user, time_col > judged_at), (time_col, tiebreak)),
                (user_col > user, (user_col, time_col, tiebreak)),
            ]
        found: list[JudgedStory] = []
        for where, order in ranges:
            rows = await self.session.execute(
                statement.where(where).order_by(*order).limit(limit - len(found))
            )
            found += [
                JudgedStory(tuple(key), user_input, tags, story, options, continued)
                for user_input, tags, story, options, continued, *key in rows
            ]
            if len(found) == limit:
                break
        return found

    def _tiebreak(self) -> ColumnElement[Any]:
        """What orders one user's verdicts of one instant in the index as it is: InnoDB ends
        every secondary index with the primary key, SQLite with the rowid."""
        if self.session.get_bind().dialect.name == "sqlite":
            return literal_column(f"{ContentEvaluation.__tablename__}.rowid")
        return ContentEvaluation.__table__.c.id


def _judged(
    *, user_id: str | None, rating: Rating, since: datetime | None, until: datetime
) -> Select[Any]:
    continued = aliased(ConversationData)
    statement = (
        select(
            ConversationData.user_input,
            ConversationData.tags,
            ConversationData.story,
            Conversation.options,
            continued.story,
        )
        .join(Conversation, Conversation.id == ConversationData.conversation_id)
        .join(ContentEvaluation, ContentEvaluation.conversation_id == Conversation.id)
        .outerjoin(
            continued,
            and_(
                Conversation.mode == GenerationMode.CONTINUE,
                continued.conversation_id == Conversation.parent_conversation_id,
            ),
        )
        .where(
            ContentEvaluation.rating == rating,
            ContentEvaluation.updated_at <= until,
            Conversation.status == ConversationStatus.COMPLETED,
        )
    )
    if user_id is not None:
        statement = statement.where(ContentEvaluation.user_id == user_id)
    if since is not None:
        statement = statement.where(ContentEvaluation.updated_at >= since)
    return statement
