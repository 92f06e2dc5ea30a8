"""Structured logs: JSON lines with request and conversation ids, and no secrets or story texts.

A real server runs a whole generation through the openai provider (against the fake OpenAI
server) with JWT auth, then the error paths: an upstream that keeps failing, a bad token, invalid
input, another user's conversation. Every log line of that run is captured as the server writes
it; none may hold the API key, the token, the JWT secret, the prompt or the story.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from pydantic import SecretStr

from storytool.config import AuthMode, Settings
from storytool.logging import JsonFormatter, conversation_id_var, request_id_var
from tests.fakes.openai_server import FakeOpenAI
from tests.generation.conftest import generate, serving
from tests.generation.test_openai_upstream import REFINED, on_fake
from tests.subprocesses import free_port, wait_for_port

API_KEY = "sk-proj-LOGSECRETlogsecret0123456789"
JWT_SECRET = "jwt-secret-that-must-stay-home-0123456789"
PROMPT = "비밀스러운 여우가 달밤에 선비를 찾아오니"


def token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every INFO+ record of storytool and uvicorn, formatted as ``storytool serve`` does."""
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(name) for name in ("storytool", "uvicorn.error")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield output
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_a_generation_and_its_error_paths_log_no_secret_and_no_story(
    settings: Settings, fake_openai: FakeOpenAI, captured: io.StringIO
):
    fake_openai.behaviour.texts = {"gpt-4o": REFINED}
    app_settings = on_fake(
        settings,
        fake_openai,
        openai_api_key=SecretStr(API_KEY),
        auth_mode=AuthMode.JWT,
        jwt_secret=SecretStr(JWT_SECRET),
    )
    alice = {"Authorization": f"Bearer {token('alice')}"}
    bob = {"Authorization": f"Bearer {token('bob')}"}
    body = {"user_input": PROMPT, "tags": ["여우"]}
    async with serving(app_settings) as client:
        events = await generate(client, body, headers=alice)
        conversation_id = events[0].data["conversation_id"]
        fake_openai.behaviour.fail_next(500, times=10, path="/v1/responses")
        failed = await generate(client, body, headers=alice)
        forged = await client.post(
            "/api/generate", json=body, headers={"Authorization": f"Bearer {token('x')}x"}
        )
        invalid = await client.post(
            "/api/generate", json={**body, "tags": "x"}, headers={**alice, "X-Request-ID": "r-1"}
        )
        others = await client.post(
            "/api/cancelGeneration", json={"conversation_id": conversation_id}, headers=bob
        )

    assert events[-1].event == "done"
    assert failed[-1].event == "error"
    assert (forged.status_code, invalid.status_code, others.status_code) == (401, 422, 404)
    assert API_KEY in fake_openai.received("/v1/responses")[0].headers["authorization"]
    text = captured.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert any(line["level"] == "WARNING" for line in lines)  # the upstream retries were logged
    for secret in (API_KEY, JWT_SECRET, token("alice"), PROMPT, REFINED[:20]):
        assert secret not in text
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
    ended = [line for line in lines if line["message"].startswith("generation ")]
    assert {line.get("conversation_id") for line in ended} >= {
        conversation_id,
        failed[0].data["conversation_id"],
    }
    assert all(line.get("request_id") for line in ended)


def test_the_formatter_adds_ids_and_masks_what_looks_like_a_secret():
    record = logging.LogRecord(
        "storytool.x", logging.INFO, __file__, 1, "sent %s", (f"Bearer {API_KEY}",), None
    )
    request_token = request_id_var.set("req-1")
    conversation_token = conversation_id_var.set("conv-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(request_token)
        conversation_id_var.reset(conversation_token)
    assert line["message"] == "sent Bearer [redacted]"
    assert (line["request_id"], line["conversation_id"]) == ("req-1", "conv-1")


def test_serve_writes_json_lines_carrying_the_request_id(tmp_path: Path):
    port = free_port()
    env = os.environ | {
        "STORYTOOL_DATA_DIR": str(tmp_path),
        "STORYTOOL_INDEX_DIR": str(tmp_path),
        "STORYTOOL_OPENAI_API_KEY": API_KEY,
        "STORYTOOL_LLM_PROVIDER": "offline",
    }
    command = [sys.executable, "-m", "storytool", "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, server)
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Request-ID": "probe-7"})
    finally:
        server.terminate()
        _out, errors = server.communicate(timeout=20)
    assert answer.status_code == 200
    lines = [json.loads(line) for line in errors.splitlines()]
    assert any(line["logger"] == "storytool" and "starting" in line["message"] for line in lines)
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert [line.get("request_id") for line in access] == ["probe-7"]
    assert API_KEY not in errors


def test_a_server_at_debug_level_under_a_debug_root_logs_no_story_text():
    # At DEBUG, aiosqlite logs every statement with its parameters and sse-starlette every chunk
    # it sends (as escaped bytes): with the server's logging configuration, a root logger at
    # DEBUG (an operator's own setup) still never sees them.
    script = f"""
import asyncio, logging, logging.config, sys
import aiosqlite
from sse_starlette import EventSourceResponse
from storytool.logging import logging_config
logging.config.dictConfig(logging_config("DEBUG"))
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout)
async def events():
    yield {{"data": {PROMPT!r}}}
async def receive():
    await asyncio.sleep(60)
async def send(message):
    if message.get("body"):
        print("sent", len(message["body"]), file=sys.stderr)
async def main():
    async with aiosqlite.connect(":memory:") as db:
        await db.execute("CREATE TABLE t (story TEXT)")
        await db.execute("INSERT INTO t VALUES (?)", ({PROMPT!r},))
    await EventSourceResponse(events(), ping=0)({{"type": "http", "method": "GET"}}, receive, send)
asyncio.run(main())
logging.getLogger("storytool").debug("saved")
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "saved" in run.stderr  # the server's own DEBUG records are written
    assert "sent" in run.stderr  # the story's event went out
    escaped = str(PROMPT.encode())[2:-1]  # how a logged bytes object shows it
    assert PROMPT not in run.stdout + run.stderr
    assert escaped not in run.stdout + run.stderr
