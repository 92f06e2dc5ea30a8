"""``GET /``: the playground, one static page that drives the API from a browser."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

PAGE = files("storytool") / "static" / "playground.html"


@router.get("/", response_class=HTMLResponse)
async def playground() -> HTMLResponse:
    # Read per request (a few kB from the package): an edited page shows on reload.
    return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-cache"})
