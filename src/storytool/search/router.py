"""``POST /api/search``: passages like a query, and where a story on it could go next."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends

from storytool.api.deps import StateDep, get_user_id
from storytool.api.responses import errors
from storytool.search.schemas import SearchRequest, SearchResponse
from storytool.search.service import SearchService

router = APIRouter(prefix="/api", tags=["search"])


async def get_search_service(state: StateDep) -> SearchService:
    return state["search"]


SearchServiceDep = Annotated[SearchService, Depends(get_search_service)]


@router.post(
    "/search",
    dependencies=[Depends(get_user_id)],
    summary="Passages most like a query, with recommendations",
    responses=errors(
        {
            422: "Blank or too long query, top_k outside 1 to 50",
            503: "The search index is not built or not loaded (the message says how), or the "
            "database is away",
        }
    ),
)
async def search(body: SearchRequest, service: SearchServiceDep, state: StateDep) -> SearchResponse:
    started = time.perf_counter()
    # A session of its own, closed before the model is asked for recommendations: a pooled
    # connection must not wait on a model call.
    async with state["sessionmaker"]() as session:
        hits = await service.search(
            session, query=body.query, top_k=body.top_k, work=body.filters.work
        )
    state["metrics"].search_seconds.observe(time.perf_counter() - started)
    recommendations = await service.recommend(state["llm"], query=body.query, hits=hits)
    return SearchResponse(query=body.query, passages=hits, recommendations=recommendations)
