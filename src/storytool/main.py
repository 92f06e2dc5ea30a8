"""The application factory. ``uvicorn --factory storytool.main:create_app`` serves it."""

from __future__ import annotations

from fastapi import FastAPI

from storytool import __version__
from storytool.api import health
from storytool.api.errors import install_error_handlers
from storytool.api.middleware import RequestIdMiddleware
from storytool.config import Settings
from storytool.lifespan import build_lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="Storytool",
        version=__version__,
        summary="Writes Korean classical-style stories and streams them over Server-Sent Events.",
        lifespan=build_lifespan(settings),
    )
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    return app
