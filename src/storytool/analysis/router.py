"""``POST /api/analyze``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from storytool.analysis.schemas import AnalyzeRequest, AnalyzeResponse
from storytool.analysis.service import AnalysisService
from storytool.api.deps import StateDep, UserDep
from storytool.api.responses import errors

router = APIRouter(prefix="/api", tags=["analysis"])


async def get_analysis_service(state: StateDep) -> AnalysisService:
    return AnalysisService(
        client=state["llm"], sessionmaker=state["sessionmaker"], settings=state["settings"]
    )


AnalysisServiceDep = Annotated[AnalysisService, Depends(get_analysis_service)]


@router.post(
    "/analyze",
    responses=errors(
        {
            404: "No such conversation of the caller's",
            409: "The conversation has no story yet",
            422: "Empty text, text over the limit, or not exactly one source",
        }
    ),
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
