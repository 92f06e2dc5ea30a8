"""``/docs`` (Swagger UI) and ``/redoc`` that work without a network, and the event streams
described in the schema they show.

FastAPI's own pages load their scripts and styles from a CDN, so behind a firewall, on a plane or
on a machine without internet they are blank. Here both pages load the same assets from the
``fastapi-offline`` package (Swagger UI, ReDoc, a favicon), served by the app under
:data:`ASSETS_PATH`; ReDoc is told not to fetch Google Fonts.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import re
import textwrap
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from storytool.generation import events

ASSETS_PATH = "/docs/assets"

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _offline(page: HTMLResponse) -> HTMLResponse:
    """A Content-Security-Policy that keeps the page on its own origin: ReDoc's sidebar logo is
    fetched from a CDN (it hides itself when that fails), and no other outside request is made."""
    scripts = [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(bytes(page.body).decode())
    ]
    page.headers["Content-Security-Policy"] = "; ".join(
        [
            "default-src 'self'",
            " ".join(["script-src 'self'", *scripts]),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return page


def install_docs(app: FastAPI, *, openapi_url: str) -> None:
    """Adds ``/docs``, ``/redoc`` and their assets to ``app``, which must be built with
    ``docs_url=None, redoc_url=None`` (FastAPI's CDN pages)."""
    app.mount(
        ASSETS_PATH,
        StaticFiles(packages=[("fastapi_offline", "static")]),
        name="docs-assets",
    )
    router = APIRouter(include_in_schema=False)

    def urls(request: Request) -> tuple[str, str]:
        """The schema's and the assets' paths, behind a proxy's ``root_path`` too."""
        root = request.scope.get("root_path", "")
        return f"{root}{openapi_url}", f"{root}{ASSETS_PATH}"

    @router.get("/docs")
    async def swagger_ui(request: Request) -> HTMLResponse:
        schema, assets = urls(request)
        page = get_swagger_ui_html(
            openapi_url=schema,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
        )
        return _offline(page)

    @router.get("/redoc")
    async def redoc(request: Request) -> HTMLResponse:
        schema, assets = urls(request)
        page = get_redoc_html(
            openapi_url=schema,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{assets}/favicon.png",
            with_google_fonts=False,
        )
        return _offline(page)

    app.include_router(router)


def _literal_block(docstring: str) -> str:
    """The first literal block (the indented lines after a ``::``) of a docstring."""
    lines = inspect.cleandoc(docstring).splitlines()
    start = next(number for number, line in enumerate(lines) if line.endswith("::")) + 1
    block: list[str] = []
    for line in lines[start:]:
        if line and not line.startswith(" "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip("\n")


STREAM_DESCRIPTION = (
    "A `text/event-stream`. Every event carries an integer `id:` (1, 2, 3… within the "
    "conversation): after a dropped connection, `GET /api/generate/{conversation_id}/events` "
    "with the header `Last-Event-ID` replays what was missed, then follows live. A `: ping` "
    "comment keeps an idle stream open. The events, in order (payloads are JSON objects):\n\n"
    f"```text\n{_literal_block(events.__doc__ or '')}\n```"
)
"""Read from :mod:`storytool.generation.events`, where the protocol is written down."""


def describe_event_streams(app: FastAPI) -> None:
    """Every answer of ``app``'s schema that is an event stream gets :data:`STREAM_DESCRIPTION`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = FastAPI.openapi(app)  # built once, kept as app.openapi_schema
        for operations in schema["paths"].values():
            for operation in operations.values():
                answer = operation.get("responses", {}).get("200", {})
                if "text/event-stream" in answer.get("content", {}):
                    answer["description"] = STREAM_DESCRIPTION
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
