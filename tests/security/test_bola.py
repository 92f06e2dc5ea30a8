"""OWASP API1 (broken object-level authorization): no user reaches another user's objects.

The operations are read from the server's own ``/openapi.json``: every one that takes an id (a
path, query or body field named ``*_id``) is called by an intruder with the owner's ids, and must
answer 404, exactly as for an id that does not exist, and change nothing of the owner's. A new
route that takes an id is walked without anyone listing it here; one with a required field this
test cannot fill fails and says which.

The intruders include the owner's name in other cases (``DAVE``, ``Dave`` for ``dave``): user ids
compare exactly, on MariaDB too, whose default collation ignores case. Each id is tried as the
owner received it and upper-cased, against a finished story and one still being written.

The same walk checks that the OpenAI API key never leaves the server: not in any answer's body or
headers, nor in the schema, the metrics or the readiness report.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from storytool.config import AuthMode, Settings
from storytool.models import ConversationStatus
from tests.fakes.openai_server import FakeOpenAI
from tests.generation.conftest import Database, generate, serving, until_deltas
from tests.generation.test_openai_upstream import DRAFT_MODEL, REFINED, on_fake

API_KEY = "sk-proj-BOLAsecret0123456789abcdef"
FILLERS: dict[str, Any] = {
    "user_input": "남의 이야기를 엿보려 하니",
    "rating": "dislike",
    "comment": "an intruder was here",
    "text": "an intruder's text",
}
"""Values for the other fields of a body, so the request is valid and only its id is wrong."""
CHOICES: dict[str, dict[str, Any]] = {
    "parent_conversation_id": {"mode": "continue"},
    "thread_id": {"user_input": FILLERS["user_input"]},
}
"""What else a body needs, by the id field it carries: a new story takes a prompt and no parent,
a continued one a parent."""


def user(name: str) -> dict[str, str]:
    return {"X-User-Id": name}


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


def intruders_request(
    client: httpx.AsyncClient,
    schema: dict[str, Any],
    operation: tuple[str, str, dict[str, Any], str | None],
    ids: dict[str, str],
    intruder: str,
) -> httpx.Request:
    """The operation called with the owner's ids in its path and query, and in its body id
    field, with valid values elsewhere."""
    method, path, details, field = operation
    query = {}
    for parameter in details.get("parameters", []):
        name = parameter["name"]
        if parameter["in"] == "path":
            path = path.replace(f"{{{name}}}", ids[name])
        elif parameter["in"] == "query" and name in ids:
            query[name] = ids[name]
    body = None
    model = body_schema(schema, details)
    if model:
        assert field is not None
        if field not in ids:
            pytest.fail(f"{method} {path}: add one of the owner's ids for {field!r} to the walk")
        body = {field: ids[field], **CHOICES.get(field, {})}
        for name in model.get("required", []):
            if name not in body:
                if name not in FILLERS:
                    pytest.fail(f"{method} {path}: add a valid value for {name!r} to FILLERS")
                body[name] = FILLERS[name]
    return client.build_request(method, path, params=query, json=body, headers=user(intruder))


def story_ids(events: list[Any]) -> dict[str, str]:
    meta = events[0].data
    return {
        "thread_id": meta["thread_id"],
        "conversation_id": meta["conversation_id"],
        "parent_conversation_id": meta["conversation_id"],
    }


async def owners_view(client: httpx.AsyncClient, owner: str, thread_id: str) -> list[Any]:
    """The finished thread in full, and which threads the owner has (the running story's
    text changes on its own)."""
    detail = await client.get(
        "/api/retrieveChatHistoryDetail", params={"thread_id": thread_id}, headers=user(owner)
    )
    listing = await client.get("/api/retrieveChatHistoryList", headers=user(owner))
    assert detail.status_code == listing.status_code == 200
    return [detail.json(), [thread["id"] for thread in listing.json()["items"]]]


@pytest.mark.parametrize(
    ("owner", "intruder"), [("alice", "bob"), ("dave", "DAVE"), ("dave", "Dave")]
)
async def test_an_intruder_gets_404_for_every_id_of_the_owner_and_changes_nothing(
    settings: Settings, fake_openai: FakeOpenAI, database: Database, owner: str, intruder: str
):
    fake_openai.behaviour.texts = {"gpt-4o": REFINED}
    app_settings = on_fake(
        settings, fake_openai, openai_api_key=SecretStr(API_KEY), auth_mode=AuthMode.HEADER
    )
    answers: list[httpx.Response] = []
    async with serving(app_settings) as client:
        finished = story_ids(
            await generate(client, {"user_input": "여우 이야기", "tags": []}, headers=user(owner))
        )
        rated = await client.post(
            "/api/updateEvaluation",
            json={
                "conversation_id": finished["conversation_id"],
                "rating": "like",
                "comment": "좋다",
            },
            headers=user(owner),
        )
        assert rated.status_code == 200
        # The second story is still being written through the whole walk: a short draft,
        # then a refine at a few words a second.
        fake_openai.behaviour.texts[DRAFT_MODEL] = "화설. 옛적에"
        fake_openai.behaviour.tokens_per_second = 4
        running = story_ids(
            await until_deltas(client, {"user_input": "호랑이 이야기"}, 1, headers=user(owner))
        )
        before = await owners_view(client, owner, finished["thread_id"])
        counts = await database.counts()

        schema = (await client.get("/openapi.json")).json()
        operations = id_operations(schema)
        for ids in (finished, running):
            for spelled in (ids, {name: value.upper() for name, value in ids.items()}):
                for operation in operations:
                    request = intruders_request(client, schema, operation, spelled, intruder)
                    answer = await client.send(request, stream=True)
                    if answer.status_code != 404:
                        await answer.aclose()
                        pytest.fail(f"{operation[:2]} {operation[3]}: {answer.status_code}")
                    await answer.aread()
                    answers.append(answer)
                    assert answer.json()["error"]["code"] == "not_found"

        after = await owners_view(client, owner, finished["thread_id"])
        conversation, _data = await database.conversation(running["conversation_id"])
        assert conversation.status is ConversationStatus.IN_PROGRESS
        stopped = await client.post(
            "/api/cancelGeneration",
            json={"conversation_id": running["conversation_id"]},
            headers=user(owner),
        )
        assert stopped.status_code == 200
        assert stopped.json()["status"] == "cancelled"
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
        ("POST", "/api/selectVariant"),
        ("GET", "/api/threads/{thread_id}/export"),
    } <= walked
    assert after == before
    assert await database.counts() == counts
    for answer in answers:
        assert API_KEY not in answer.text
        assert API_KEY not in str(answer.headers)
