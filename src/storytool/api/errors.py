"""Renders every error as ``{"error": {"code", "message", "field"?}}``."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from storytool.errors import StorytoolError

logger = logging.getLogger("storytool.errors")

# Where in the request a value came from; the field name after it is what the caller wrote.
_LOCATIONS = {"body", "query", "path", "header", "cookie"}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}


def _field_name(location: tuple[Any, ...]) -> str | None:
    parts = [str(part) for part in location]
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts) or None


async def _storytool_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StorytoolError)
    return JSONResponse(
        error_body(exc.code, exc.message, exc.field),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
    field = _field_name(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid request"))
    body = error_body("invalid_input", f"{field}: {message}" if field else message, field)
    body["error"]["details"] = [
        {"field": _field_name(tuple(p.get("loc", ()))), "message": str(p.get("msg", ""))}
        for p in problems
    ]
    return JSONResponse(body, status_code=422)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


DATABASE_RETRY_AFTER_S = 5
"""What a client is told to wait when the database is down or every pooled connection is busy:
long enough for a pool to drain or a database to fail over, short enough not to lose the user."""


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """No connection within the pool timeout, or the database refused or dropped one: the
    server is overloaded or its database is away, which is a 503 to retry, not a bug."""
    logger.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    return JSONResponse(
        error_body("database_unavailable", "the database is busy or unreachable; try again"),
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A driver error other than the operational ones: a 503 when SQLAlchemy found it meant a
    lost connection (asyncmy reports a statement prepared on a dropped connection as an
    ``InterfaceError``, "Not connected"), otherwise a bug."""
    assert isinstance(exc, sqlalchemy.exc.DBAPIError)
    if exc.connection_invalidated:
        return await _database_unavailable(request, exc)
    return await _unexpected_error(request, exc)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StorytoolError, _storytool_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(sqlalchemy.exc.TimeoutError, _database_unavailable)
    app.add_exception_handler(sqlalchemy.exc.OperationalError, _database_unavailable)
    app.add_exception_handler(sqlalchemy.exc.DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)
