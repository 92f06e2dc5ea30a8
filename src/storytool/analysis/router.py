"""``POST /api/analyze``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from storytool.analysis.schemas import AnalyzeRequest, AnalyzeResponse
from storytool.analysis.service import AnalysisService
from storytool.api.deps import StateDep, UserDep

router = APIRouter(prefix="/api", tags=["analysis"])


def get_analysis_service(state: StateDep) -> AnalysisService:
    return AnalysisService(
        client=state["llm"], sessionmaker=state["sessionmaker"], settings=state["settings"]
    )


AnalysisServiceDep = Annotated[AnalysisService, Depends(get_analysis_service)]


@router.post(
    "/analyze",
    responses={
        401: {"description": "No or bad credentials"},
        404: {"description": "No such conversation of the caller's"},
        409: {"description": "The conversation has no story yet"},
        422: {"description": "Empty text, text over the limit, or not exactly one source"},
    },
)
async def analyze(
    request: AnalyzeRequest, user_id: UserDep, service: AnalysisServiceDep
) -> AnalyzeResponse:
    """Measured metrics of a story and the model's structured reading of it.

    Without a language model (the offline provider) the metrics are complete and the reading is
    marked ``available: false`` with the reason.
    """
    return await service.analyze(
        user_id=user_id, text=request.text, conversation_id=request.conversation_id
    )
