"""The error answer as an OpenAPI model, and the errors every API route can give.

Routes document their own domain errors (404, 409, ...); the ones below come from the layers every
route shares (body parsing, the body-size limit, authentication, the per-user rate limit, the
database), so :func:`storytool.main.create_app` documents them once per router. Schemathesis
holds the server to these documents (``tests/fuzz``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    """``{"error": {"code", "message", "field"?}}``, as :mod:`storytool.api.errors` renders it."""

    error: ErrorDetail


def error_response(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


def errors(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's own errors, each documented with the error body: the only way routes list
    them, so none loses the schema the shared ones carry (a route that lists a status replaces
    the shared entry for it)."""
    return {status: error_response(description) for status, description in described.items()}


COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error_response(
        "The body is not valid JSON (or not UTF-8), or a header that must appear once "
        "(X-User-Id, Authorization, the gateway's secret) appears twice"
    ),
    401: error_response("No valid credentials (auth_mode header or jwt)"),
    408: error_response("The body did not arrive within body_read_timeout_s"),
    413: error_response("The body is larger than max_body_bytes"),
    422: error_response("A field is missing or invalid; error.field names the first"),
    429: error_response("Too many requests from this user (rate_limit); see Retry-After"),
    503: error_response("The database is busy or unreachable; see Retry-After"),
}
