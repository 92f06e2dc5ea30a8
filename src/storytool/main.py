"""The application factory. ``uvicorn --factory storytool.main:create_app`` serves it."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from storytool import __version__
from storytool.analysis import router as analysis_router
from storytool.api import health, playground
from storytool.api.docs import describe_event_streams, install_docs
from storytool.api.errors import install_error_handlers
from storytool.api.middleware import (
    MetricsMiddleware,
    RequestBodyMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
)
from storytool.api.responses import COMMON_ERRORS
from storytool.config import Settings
from storytool.evaluations import router as evaluations_router
from storytool.generation import router as generation_router
from storytool.lifespan import build_lifespan
from storytool.metrics import Metrics
from storytool.search import router as search_router
from storytool.threads import export as threads_export
from storytool.threads import router as threads_router

OPENAPI_URL = "/openapi.json"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    app = FastAPI(
        title="Storytool",
        version=__version__,
        summary="Writes Korean classical-style stories and streams them over Server-Sent Events.",
        lifespan=build_lifespan(settings, metrics),
        openapi_url=OPENAPI_URL if settings.docs_enabled else None,
        # FastAPI's pages load their assets from a CDN; install_docs serves them offline.
        docs_url=None,
        redoc_url=None,
    )
    if settings.docs_enabled:  # else /docs, /redoc and /openapi.json are all 404
        install_docs(app, openapi_url=OPENAPI_URL)
    install_error_handlers(app)
    # Added innermost first: the request id wraps everything, so even a 413 carries one.
    app.add_middleware(
        RequestBodyMiddleware,
        max_bytes=settings.max_body_bytes,
        read_timeout_s=settings.body_read_timeout_s,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(playground.router)
    for api_router in (
        generation_router.router,
        analysis_router.router,
        search_router.router,
        threads_router.router,
        threads_export.router,
        evaluations_router.router,
    ):
        app.include_router(api_router, responses=COMMON_ERRORS)
    describe_event_streams(app)
    return app
