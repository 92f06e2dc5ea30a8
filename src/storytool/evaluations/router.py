"""``POST /api/updateEvaluation`` and the feedback export, ``GET /api/evaluations/export``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from storytool.api.deps import CallerDep, SettingsDep, StateDep, UserDep
from storytool.api.responses import errors
from storytool.api.streaming import JsonLinesResponse
from storytool.evaluations.export import FeedbackExport
from storytool.evaluations.schemas import Evaluation, EvaluationUpdate
from storytool.evaluations.service import EvaluationService
from storytool.models import Rating

router = APIRouter(prefix="/api", tags=["evaluations"])


async def get_evaluation_service(state: StateDep, settings: SettingsDep) -> EvaluationService:
    return EvaluationService(state["sessionmaker"], max_comment_chars=settings.max_comment_chars)


EvaluationServiceDep = Annotated[EvaluationService, Depends(get_evaluation_service)]


@router.post(
    "/updateEvaluation",
    responses=errors({404: "No such conversation of the caller's"}),
)
async def update_evaluation(
    update: EvaluationUpdate, user_id: UserDep, service: EvaluationServiceDep
) -> Evaluation:
    """Likes, dislikes or clears (rating none) the caller's verdict on one of their stories."""
    return await service.update(
        user_id=user_id,
        conversation_id=update.conversation_id,
        rating=update.rating,
        comment=update.comment,
        reasons=update.reasons,
    )


@router.get(
    "/evaluations/export",
    # The answer is a JsonLinesResponse, but declared as a plain Response: FastAPI documents
    # every error answer in the route's media type, and errors are JSON, not JSON lines.
    response_class=Response,
    responses={
        200: {
            "content": {"application/jsonl": {"schema": {"type": "string"}}},
            "description": "One OpenAI chat fine-tuning example per line",
        },
        **errors({422: "Unknown format or rating, or since is not a date-time"}),
    },
)
async def export_evaluations(
    caller: CallerDep,
    state: StateDep,
    format: Annotated[  # noqa: ARG001 (one format today; the parameter names it for tomorrow)
        Literal["openai-chat"], Query(description="openai-chat: the chat fine-tuning format.")
    ] = "openai-chat",
    rating: Annotated[
        Literal[Rating.LIKE, Rating.DISLIKE], Query(description="Which verdicts to export.")
    ] = Rating.LIKE,
    since: Annotated[
        datetime | None,
        Query(
            description="Only verdicts given or changed at or after this (ISO 8601; UTC if "
            "no zone)."
        ),
    ] = None,
) -> JsonLinesResponse:
    """The caller's judged, completed stories as fine-tuning data, streamed as JSON lines; an
    admin's token exports everyone's. A client that takes nothing for ``send_timeout_s`` is
    dropped."""
    export = FeedbackExport(state["sessionmaker"], system_prompt=state["settings"].system_prompt)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    lines = export.lines(
        user_id=None if caller.is_admin else caller.user_id, rating=rating, since=since
    )
    return JsonLinesResponse(
        lines,
        send_timeout_s=state["settings"].send_timeout_s,
        headers={"Content-Disposition": 'attachment; filename="storytool-feedback.jsonl"'},
    )
