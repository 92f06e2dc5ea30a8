"""Text that is not valid Unicode is refused (422, naming the field) wherever a request carries it.

JSON may escape a lone UTF-16 surrogate (``"\\ud800"``); Python decodes it to a ``str`` that no
codec encodes, so the database driver failed on it (500 on updateEvaluation's comment) and so did
an answer that echoed it (500 on search's query). Every string field of every request body is
found in the server's ``/openapi.json`` and sent one at a time with a surrogate; a new route is
walked without being listed here, and one this test has no valid body for fails and says so.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest

from storytool.config import Settings
from tests.generation.conftest import Database, generate, serving
from tests.generation.test_passages import with_sample_index
from tests.search.conftest import build

BROKEN = "이야기\ud800"
"""Korean text with a lone high surrogate, as ``json.dumps`` escapes it: ``\\ud800``."""

Path = tuple[str | int, ...]


def valid_bodies(conversation_id: str, thread_id: str) -> dict[str, dict[str, Any]]:
    """A valid body per operation path, with every optional string field filled, so the only
    thing wrong with each request is the surrogate."""
    return {
        "/api/generate": {
            "user_input": "나그네 이야기",
            "thread_id": thread_id,
            "tags": ["모험"],
            "options": {"length": "short"},
        },
        "/api/search": {"query": "춘향", "filters": {"work": "춘향전"}},
        "/api/analyze": {"text": "화설. 한 선비가 길을 떠나니라."},
        "/api/cancelGeneration": {"conversation_id": conversation_id},
        "/api/updateEvaluation": {
            "conversation_id": conversation_id,
            "rating": "like",
            "comment": "좋은 이야기",
            "reasons": ["style"],
        },
        "/api/selectVariant": {"conversation_id": conversation_id},
    }


def body_operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, body schema) of every operation that takes a JSON body."""
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                found.append((method.upper(), path, content["application/json"]["schema"]))
    return found


def string_fields(schema: dict[str, Any], node: dict[str, Any], path: Path = ()) -> list[Path]:
    """Where in a body a string goes: ``("tags", 0)`` for a list of strings."""
    if "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    found: list[Path] = []
    for option in node.get("anyOf", []):
        found += [field for field in string_fields(schema, option, path) if field not in found]
    if node.get("type") == "string":
        found.append(path)
    elif node.get("type") == "array":
        found += string_fields(schema, node["items"], (*path, 0))
    for name, field in node.get("properties", {}).items():
        found += string_fields(schema, field, (*path, name))
    return found


def with_value(body: dict[str, Any], path: Path, value: str) -> dict[str, Any]:
    """``body`` with ``value`` at ``path`` (the valid bodies hold every list and object)."""
    changed = copy.deepcopy(body)
    *parents, last = path
    node: Any = changed
    for step in parents:
        node = node[step]
    node[last] = value
    return changed


async def post_raw(
    client: httpx.AsyncClient, method: str, path: str, body: object
) -> httpx.Response:
    """Sends the body as JSON with its surrogates escaped, as a browser's JSON.stringify does."""
    content = json.dumps(body, ensure_ascii=True)
    return await client.request(
        method, path, content=content, headers={"Content-Type": "application/json"}
    )


async def history(client: httpx.AsyncClient, thread_id: str) -> Any:
    """The thread with its stories and their evaluations, as the caller sees it."""
    detail = await client.get("/api/retrieveChatHistoryDetail", params={"thread_id": thread_id})
    assert detail.status_code == 200
    return detail.json()


async def test_every_string_field_refuses_a_lone_surrogate(settings: Settings, database: Database):
    search_ready = with_sample_index(settings)
    await build(search_ready)
    async with serving(search_ready) as client:
        meta = (await generate(client, {"user_input": "여우 이야기", "tags": []}))[0].data
        bodies = valid_bodies(meta["conversation_id"], meta["thread_id"])
        rated = await client.post("/api/updateEvaluation", json=bodies["/api/updateEvaluation"])
        assert rated.status_code == 200
        before = [await database.counts(), await history(client, meta["thread_id"])]

        schema = (await client.get("/openapi.json")).json()
        operations = body_operations(schema)
        sent = []
        for method, path, body_schema in operations:
            if path not in bodies:
                pytest.fail(f"{method} {path}: add a valid body for it to valid_bodies")
            fields = string_fields(schema, body_schema)
            for field in fields:
                answer = await post_raw(
                    client, method, path, with_value(bodies[path], field, BROKEN)
                )
                where = f"{method} {path} {field}"
                assert answer.status_code == 422, f"{where}: {answer.status_code} {answer.text}"
                assert answer.headers["content-type"] == "application/json", where
                error = answer.json()["error"]
                assert error["field"] == field[0], where
                assert "surrogate" in error["message"], where
                sent.append((path, field))
            named = await post_raw(client, method, path, {**bodies[path], BROKEN: "x"})
            assert named.status_code == 422, f"{method} {path}: a field name: {named.status_code}"

        after = [await database.counts(), await history(client, meta["thread_id"])]

    assert after == before
    assert {
        ("/api/search", ("query",)),
        ("/api/search", ("filters", "work")),
        ("/api/updateEvaluation", ("comment",)),
        ("/api/generate", ("user_input",)),
        ("/api/generate", ("tags", 0)),
        ("/api/generate", ("options", "length")),
        ("/api/analyze", ("text",)),
    } <= set(sent)


@pytest.mark.parametrize(
    "url",
    [
        "/api/retrieveChatHistoryList?cursor=%ED%A0%80",
        "/api/retrieveChatHistoryDetail?thread_id=%ED%A0%80",
        "/api/generate/%ED%A0%80/events",
        "/api/evaluations/export?since=%ED%A0%80",
    ],
)
async def test_a_surrogate_in_a_query_or_path_is_refused(settings: Settings, url: str):
    """Percent-decoding turns a surrogate's UTF-8 bytes into U+FFFD, never into a surrogate: what
    reaches the routes is text, and a wrong one is a 422 like any other."""
    async with serving(settings) as client:
        answer = await client.get(url)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "invalid_input"
