"""The exceptions :class:`storytool.client.StorytoolClient` raises.

::

    StorytoolClientError            anything the client reports
    ├── APIError                    the server answered an error: status, code, message, field
    │   ├── Unauthorized            401
    │   ├── NotFound                404, also for another user's data
    │   ├── Conflict                409, e.g. cancelling a finished story
    │   ├── PayloadTooLarge         413
    │   ├── InvalidInput            422, ``field`` names the bad input
    │   ├── RateLimited             429, ``retry_after`` in seconds when the server said
    │   ├── ServiceUnavailable      503, ``retry_after`` as above
    │   └── ServerError             any other 5xx
    └── StreamLost                  a story's stream dropped and could not be resumed

Network failures outside a story stream are httpx's own (``httpx.TransportError``).
"""

from __future__ import annotations

from typing import Any

import httpx


class StorytoolClientError(Exception):
    pass


class APIError(StorytoolClientError):
    """The server's JSON error, ``{"error": {"code", "message", "field"?}}``, as attributes."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str,
        field: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.message = message
        self.status_code = status_code
        self.code = code
        self.field = field
        self.body = body or {}


class Unauthorized(APIError):
    pass


class NotFound(APIError):
    pass


class Conflict(APIError):
    pass


class PayloadTooLarge(APIError):
    pass


class InvalidInput(APIError):
    pass


class _RetryLater(APIError):
    def __init__(self, message: str, *, retry_after: float | None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        """Seconds the server asked to wait (``Retry-After``), if it said."""


class RateLimited(_RetryLater):
    pass


class ServiceUnavailable(_RetryLater):
    pass


class ServerError(APIError):
    pass


class StreamLost(StorytoolClientError):
    """The stream dropped and every reconnection failed. The story may still be running on the
    server: ``resume(conversation_id, last_event_id)`` later picks up after the last event
    received (``conversation_id`` is None when the drop came before the first event)."""

    def __init__(self, message: str, *, conversation_id: str | None, last_event_id: int) -> None:
        super().__init__(message)
        self.conversation_id = conversation_id
        self.last_event_id = last_event_id


_BY_STATUS: dict[int, type[APIError]] = {
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidInput,
}


def api_error(response: httpx.Response) -> APIError:
    """The exception for an error answer; its body must have been read."""
    try:
        body = response.json()
        error = body["error"]
        code, message, field = str(error["code"]), str(error["message"]), error.get("field")
    except (ValueError, KeyError, TypeError):
        # Not our JSON (a proxy's HTML page, say): keep what there is.
        body = {}
        code, message, field = "http_error", response.text[:500] or response.reason_phrase, None
    details: dict[str, Any] = {
        "status_code": response.status_code,
        "code": code,
        "field": field,
        "body": body,
    }
    if response.status_code in (429, 503):
        kind: type[_RetryLater] = RateLimited if response.status_code == 429 else ServiceUnavailable
        return kind(message, retry_after=_retry_after(response), **details)
    if response.status_code >= 500:
        return ServerError(message, **details)
    return _BY_STATUS.get(response.status_code, APIError)(message, **details)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return None if value is None else float(value)
    except ValueError:
        return None  # an HTTP date: rare enough from us that the caller picks its own wait
