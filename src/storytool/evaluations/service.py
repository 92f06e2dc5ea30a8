"""A user's verdict on one of their own conversations: like, dislike, or none to clear it."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.errors import InvalidInput, NotFound
from storytool.evaluations.repository import EvaluationRepository
from storytool.evaluations.schemas import Evaluation, Reason
from storytool.models import ContentEvaluation, Rating
from storytool.threads.service import conversation_of


class EvaluationService:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, max_comment_chars: int
    ) -> None:
        self._sessionmaker = sessionmaker
        self._max_comment_chars = max_comment_chars

    async def update(
        self,
        *,
        user_id: str,
        conversation_id: str,
        rating: Rating,
        comment: str | None,
        reasons: list[Reason],
    ) -> Evaluation:
        """Stores the verdict, replacing the user's earlier one, and answers what is stored.

        A blank comment is stored as none; repeated reasons once. The verdict keeps a copy of
        what produced the story, which stays true after the deployment's models change. In a
        transaction of its own, committed before the answer, like every write of a service.
        """
        if comment is not None and len(comment) > self._max_comment_chars:
            raise InvalidInput(
                f"comment is longer than {self._max_comment_chars} characters", field="comment"
            )
        try:
            async with self._sessionmaker.begin() as session:
                stored = await self._store(
                    session,
                    user_id=user_id,
                    conversation_id=conversation_id,
                    rating=rating,
                    comment=comment,
                    reasons=reasons,
                )
                return Evaluation.model_validate(stored)
        except IntegrityError as exc:
            # The thread was deleted between the ownership check and the write.
            raise NotFound("conversation not found", field="conversation_id") from exc

    @staticmethod
    async def _store(
        session: AsyncSession,
        *,
        user_id: str,
        conversation_id: str,
        rating: Rating,
        comment: str | None,
        reasons: list[Reason],
    ) -> ContentEvaluation:
        conversation = await conversation_of(
            session, user_id=user_id, conversation_id=conversation_id
        )
        return await EvaluationRepository(session).upsert(
            conversation_id=conversation_id,
            user_id=user_id,
            rating=rating,
            comment=comment if comment and comment.strip() else None,
            reasons=list(dict.fromkeys(reasons)),
            produced_by={
                "mode": conversation.mode.value,
                "models": conversation.models or {},
                "options": conversation.options or {},
            },
        )
