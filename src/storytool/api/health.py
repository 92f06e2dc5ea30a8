from __future__ import annotations

import asyncio
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from storytool.api.deps import StateDep
from storytool.api.responses import error_response
from storytool.auth import bearer_token
from storytool.errors import Unauthorized
from storytool.llm.base import ModelClient, ProviderError

MODEL_PROBE_TIMEOUT_S = 2.0
"""/readyz must answer fast; the first probe of a slow model server is not worth more."""

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The process can serve: the database answers, the search index is loaded",
    responses={503: {"description": "A dependency is not ready; the body says which"}},
)
async def readyz(state: StateDep) -> JSONResponse:
    checks: dict[str, Any] = {"llm_provider": state["settings"].effective_llm_provider.value}
    if state["llm"] is not None:
        checks["llm"] = await _model_server(state["llm"])
    ready = True
    try:
        async with state["engine"].connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "not ready", and the body says which
        checks["database"] = f"unavailable: {type(exc).__name__}"
        ready = False
    # A missing search index fails /api/search only, not stories: the replica stays in rotation
    # and says "degraded", with the message that tells how to build the index.
    search = state["search"].readiness
    checks["search_index"] = search.message if search.ready else f"not_ready: {search.message}"
    status = "not_ready" if not ready else "ready" if search.ready else "degraded"
    return JSONResponse(
        {"status": status, "checks": checks},
        status_code=200 if ready else 503,
    )


async def _model_server(client: ModelClient) -> dict[str, object]:
    """What the model server was found to do. Its absence does not take the replica out of
    rotation (every replica shares the server; history and search still work): it is said."""
    try:
        async with asyncio.timeout(MODEL_PROBE_TIMEOUT_S):
            await client.prepare()
    except (ProviderError, TimeoutError) as exc:
        message = exc.message if isinstance(exc, ProviderError) else "no answer in time"
        return {"status": f"unavailable: {message}", **client.capabilities.as_dict()}
    return {"status": "ok", **client.capabilities.as_dict()}


async def check_metrics_token(
    state: StateDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """With settings.metrics_token set, the scraper must present it: the metrics tell an outsider
    how busy the service is and which routes are used."""
    expected = state["settings"].metrics_token
    if expected is None:
        return
    sent = bearer_token(authorization)
    # Header values arrive decoded as latin-1; encoding them back gives the bytes as sent.
    if not hmac.compare_digest(sent.encode("latin-1"), expected.get_secret_value().encode()):
        raise Unauthorized("the metrics token is wrong")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    dependencies=[Depends(check_metrics_token)],
    responses={401: error_response("settings.metrics_token is set and was not sent")},
)
async def metrics(state: StateDep) -> Response:
    pool = state["engine"].pool
    checked_out = getattr(pool, "checkedout", None)
    if callable(checked_out):
        state["metrics"].db_pool_checked_out.set(checked_out())
    return Response(generate_latest(state["metrics"].registry), media_type=CONTENT_TYPE_LATEST)
