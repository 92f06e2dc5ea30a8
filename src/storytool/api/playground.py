"""``GET /``: the playground, one static page that drives the API from a browser."""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

PAGE = files("storytool") / "static" / "playground.html"

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def content_security_policy(page: str) -> str:
    """Only the page's own origin, and of inline code only the page's own ``<script>`` and
    ``<style>`` blocks, allowed by their hashes rather than ``'unsafe-inline'``: a script that
    found its way into the page (a story rendered as HTML by mistake) would not run."""
    allowed: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(page):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        allowed[kind].append(f"'sha256-{digest}'")
    return "; ".join(
        [
            "default-src 'self'",
            " ".join(["script-src 'self'", *allowed["script"]]),
            " ".join(["style-src 'self'", *allowed["style"]]),
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


@router.get("/", response_class=HTMLResponse)
async def playground() -> HTMLResponse:
    # Read per request (a few kB from the package): an edited page shows on reload, and its
    # policy follows it.
    page = PAGE.read_text(encoding="utf-8")
    return HTMLResponse(
        page,
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": content_security_policy(page),
        },
    )
