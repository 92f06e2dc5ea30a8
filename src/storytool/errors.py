"""Domain errors. Each carries its HTTP status and a stable code; one handler renders them all as

    {"error": {"code": "...", "message": "...", "field": "..."}}

Services raise these; they never import FastAPI. Request validation (422) is FastAPI's own and is
rendered in the same shape by the handler in :mod:`storytool.api.errors`.
"""

from __future__ import annotations


class StorytoolError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers


class BadRequest(StorytoolError):
    """A request no well-behaved client sends, such as a header that must appear once."""

    status_code = 400
    code = "bad_request"


class NotFound(StorytoolError):
    """Missing, or owned by another user: the two look the same from outside."""

    status_code = 404
    code = "not_found"


class Conflict(StorytoolError):
    status_code = 409
    code = "conflict"


class InvalidInput(StorytoolError):
    status_code = 422
    code = "invalid_input"


class Unauthorized(StorytoolError):
    status_code = 401
    code = "unauthorized"


class TooManyRequests(StorytoolError):
    status_code = 429
    code = "too_many_requests"


class ServiceUnavailable(StorytoolError):
    status_code = 503
    code = "service_unavailable"
