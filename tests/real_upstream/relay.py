"""A relay in front of a real model server that caps how long its answers are.

llama.cpp's ``n_predict`` is only the length of an answer whose request names none: Storytool asks
for up to 1,500 tokens a stage, and SmolLM2 then often loops to that limit (15 s a stage on two
cores). The relay lowers ``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens`` of
generation requests and passes everything else through byte for byte, streams included; a client
that goes away closes the upstream request, as it would without the relay.

A model can also be made *endless*: its answers never stop early (the end-of-text tokens banned),
so a test can cancel in the middle of one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

GENERATION_PATHS = ("/v1/chat/completions", "/v1/responses")
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
END_TOKENS = {"0": -100, "2": -100}
"""SmolLM2's ``<|endoftext|>`` and ``<|im_end|>`` (``ignore_eos`` alone misses the latter)."""


@dataclass
class Caps:
    tokens: int = 64
    """The most tokens an answer may have."""
    endless: dict[str, int] = field(default_factory=dict)
    """Models whose answers run to this many tokens without stopping early."""
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Generation requests as they arrived (path, body), before capping."""

    def apply(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append((path, dict(body)))
        model = body.get("model")
        cap = self.endless.get(model, self.tokens) if isinstance(model, str) else self.tokens
        capped = dict(body)
        keys = ["max_output_tokens"] if path == "/v1/responses" else ["max_tokens"]
        keys += [key for key in ("max_completion_tokens",) if key in body]
        for key in keys:
            asked = body.get(key)
            capped[key] = min(asked, cap) if isinstance(asked, int) else cap
        if model in self.endless:
            capped["logit_bias"] = END_TOKENS
            capped["ignore_eos"] = True
        return capped


def relay_app(upstream: str, caps: Caps) -> Starlette:
    """``upstream``: the server's root URL (``http://127.0.0.1:PORT``)."""
    # No kept-alive connections: llama.cpp closes idle ones, and a request sent on one it has
    # just closed fails with no answer at all (which the server itself would never do).
    client = httpx.AsyncClient(
        base_url=upstream,
        timeout=httpx.Timeout(300, connect=10),
        limits=httpx.Limits(max_keepalive_connections=0),
    )

    async def forward(request: Request) -> Response:
        raw = await request.body()
        path = request.url.path
        if request.method == "POST" and path in GENERATION_PATHS and raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if isinstance(body, dict) and ("input" in body or "messages" in body):
                raw = json.dumps(caps.apply(path, body)).encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        upstream_request = client.build_request(
            request.method, path, params=request.query_params, headers=headers, content=raw
        )
        answer = await client.send(upstream_request, stream=True)
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}

        async def body_bytes() -> AsyncIterator[bytes]:
            try:
                async for chunk in answer.aiter_raw():
                    yield chunk
            finally:
                # A client that went away cancels this generator: the close must still happen,
                # or llama.cpp writes on and one of its few HTTP threads stays taken.
                with anyio.CancelScope(shield=True):
                    await answer.aclose()

        # The background close covers a client gone before the body was started.
        return StreamingResponse(
            body_bytes(),
            status_code=answer.status_code,
            headers=kept,
            background=BackgroundTask(answer.aclose),
        )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    methods = ["GET", "POST", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)
