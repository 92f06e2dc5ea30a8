"""``/docs`` (Swagger UI) and ``/redoc`` that work without a network.

FastAPI's own pages load their scripts and styles from a CDN, so behind a firewall, on a plane or
on a machine without internet they are blank. Here both pages load the same assets from the
``fastapi-offline`` package (Swagger UI, ReDoc, a favicon), served by the app under
:data:`ASSETS_PATH`; ReDoc is told not to fetch Google Fonts.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

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
