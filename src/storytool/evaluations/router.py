"""``POST /api/updateEvaluation``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from storytool.api.deps import SessionDep, SettingsDep, UserDep
from storytool.evaluations.schemas import Evaluation, EvaluationUpdate
from storytool.evaluations.service import EvaluationService

router = APIRouter(prefix="/api", tags=["evaluations"])


def get_evaluation_service(
    session: SessionDep, settings: SettingsDep
) -> EvaluationService:
    return EvaluationService(session, max_comment_chars=settings.max_comment_chars)


EvaluationServiceDep = Annotated[EvaluationService, Depends(get_evaluation_service)]


@router.post(
    "/updateEvaluation",
    responses={
        401: {"description": "No or bad credentials"},
        404: {"description": "No such conversation of the caller's"},
    },
)
async def update_evaluation(
    update: EvaluationUpdate, user_id: UserDep, service: EvaluationServiceDep
) -> Evaluation:
    """Likes, dislikes or clears (rating none) the caller's verdict on one of their stories."""
    return await service.update(
        user_id=user_id,
        conversation_id=str(update.conversation_id),
        rating=update.rating,
        comment=update.comment,
    )
