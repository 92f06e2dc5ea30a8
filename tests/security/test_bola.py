"""OWASP API1 (broken object-level authorization): no user reaches another user's objects.

The operations are read from the server's own ``/openapi.json``: every one that takes an id (a
path, query or body field named ``*_id``) is called by Bob with Alice's ids, and must answer 404,
exactly as for an id that does not exist, and change nothing of Alice's. A new route that takes an
id is walked without anyone listing it here; one with a required field this test cannot fill fails
and says which.

The same walk checks that the OpenAI API key never leaves the server: not in any answer's body or
headers, nor in the schema, the metrics or the readiness report.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from storytool.config import AuthMode, Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.generation.conftest import Database, generate, serving
from tests.generation.test_openai_upstream import REFINED, on_fake

API_KEY = "sk-proj-BOLAsecret0123456789abcdef"
ALICE = {"X-User-Id": "alice"}
BOB = {"X-User-Id": "bob"}
FILLERS: dict[str, Any] = {
    "user_input": "남의 이야기를 엿보려 하니",
    "rating": "dislike",
    "comment": "bob was here",
    "text": "bob's text",
}
"""Values for the other fields of a body, so the request is valid and only its id is wrong."""
CHOICES: dict[str, dict[str, Any]] = {
    "parent_conversation_id": {"mode": "continue"},
    "thread_id": {"user_input": FILLERS["user_input"]},
}
"""What else a body needs, by the id field it carries: a new story takes a prompt and no parent,
a continued one a parent."""


def id_operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], str | None]]:
    """(method, path, operation, body id field) for every operation taking an id anywhere: one
    call per id field of its body (each alone, so each is checked), or one when its ids are all
    in the path or query."""
    found: list[tuple[str, str, dict[str, Any], str | None]] = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            in_body = [
                name
                for name in body_schema(schema, operation).get("properties", {})
                if name.endswith("_id")
            ]
            if in_body:
                found += [(method.upper(), path, operation, name) for name in in_body]
            elif id_fields(schema, operation):
                found.append((method.upper(), path, operation, None))
    return found


def body_schema(schema: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    content = operation.get("requestBody", {}).get("content", {})
    reference = content.get("application/json", {}).get("schema", {}).get("$ref", "")
    return schema["components"]["schemas"].get(reference.rsplit("/", 1)[-1], {})


def id_fields(schema: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    names = [parameter["name"] for parameter in operation.get("parameters", [])]
    names += list(body_schema(schema, operation).get("properties", {}))
    return [name for name in names if name.endswith("_id")]


def bobs_request(
    client: httpx.AsyncClient,
    schema: dict[str, Any],
    method: str,
    path: str,
    operation: dict[str, Any],
    field: str | None,
    ids: dict[str, str],
) -> httpx.Request:
    """The operation called with Alice's ids in its path and query, and in the body ``field``,
    with valid values elsewhere."""
    query = {}
    for parameter in operation.get("parameters", []):
        name = parameter["name"]
        if parameter["in"] == "path":
            path = path.replace(f"{{{name}}}", ids[name])
        elif parameter["in"] == "query" and name in ids:
            query[name] = ids[name]
    body = None
    model = body_schema(schema, operation)
    if model:
        assert field is not None
        if field not in ids:
            pytest.fail(f"{method} {path}: add one of Alice's ids for {field!r} to the walk")
        body = {field: ids[field], **CHOICES.get(field, {})}
        for name in model.get("required", []):
            if name not in body:
                if name not in FILLERS:
                    pytest.fail(f"{method} {path}: add a valid value for {name!r} to FILLERS")
                body[name] = FILLERS[name]
    return client.build_request(method, path, params=query, json=body, headers=BOB)


async def alices_view(client: httpx.AsyncClient, thread_id: str) -> list[Any]:
    detail = await client.get(
        "/api/retrieveChatHistoryDetail", params={"thread_id": thread_id}, headers=ALICE
    )
    listing = await client.get("/api/retrieveChatHistoryList", headers=ALICE)
    assert detail.status_code == listing.status_code == 200
    return [detail.json(), listing.json()]


async def test_bob_gets_404_for_every_id_of_alice_and_changes_nothing(
    settings: Settings, fake_openai: FakeOpenAI, database: Database
):
    fake_openai.behaviour.texts = {"gpt-4o": REFINED}
    app_settings = on_fake(
        settings, fake_openai, openai_api_key=SecretStr(API_KEY), auth_mode=AuthMode.HEADER
    )
    answers: list[httpx.Response] = []
    async with serving(app_settings) as client:
        events = await generate(client, {"user_input": "여우 이야기", "tags": []}, headers=ALICE)
        ids = {
            "thread_id": events[0].data["thread_id"],
            "conversation_id": events[0].data["conversation_id"],
            "parent_conversation_id": events[0].data["conversation_id"],
        }
        rated = await client.post(
            "/api/updateEvaluation",
            json={"conversation_id": ids["conversation_id"], "rating": "like", "comment": "좋다"},
            headers=ALICE,
        )
        assert rated.status_code == 200
        before = await alices_view(client, ids["thread_id"])
        counts = await database.counts()

        schema = (await client.get("/openapi.json")).json()
        operations = id_operations(schema)
        for method, path, operation, field in operations:
            request = bobs_request(client, schema, method, path, operation, field, ids)
            answer = await client.send(request)
            answers.append(answer)
            assert answer.status_code == 404, f"{method} {path} {field}: {answer.status_code}"
            assert answer.json()["error"]["code"] == "not_found"

        after = await alices_view(client, ids["thread_id"])
        for probe in ("/openapi.json", "/readyz", "/metrics", "/docs"):
            answers.append(await client.get(probe))

    walked = {(method, path) for method, path, _operation, _field in operations}
    assert ("POST", "/api/generate", "parent_conversation_id") in {
        (method, path, field) for method, path, _operation, field in operations
    }
    assert {
        ("POST", "/api/generate"),
        ("GET", "/api/generate/{conversation_id}/events"),
        ("POST", "/api/cancelGeneration"),
        ("POST", "/api/analyze"),
        ("GET", "/api/retrieveChatHistoryDetail"),
        ("DELETE", "/api/deleteThread"),
        ("POST", "/api/updateEvaluation"),
    } <= walked
    assert after == before
    assert await database.counts() == counts
    for answer in answers:
        assert API_KEY not in answer.text
        assert API_KEY not in str(answer.headers)
