"""What ``/openapi.json`` tells a reader: an example for every request body, accepted as it is by
the server, and the events of the story streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from storytool.config import Settings
from storytool.db.migrations import upgrade
from storytool.generation.schemas import EventPayload
from storytool.main import create_app


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan on a fresh SQLite database; stories written at once."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'storytool.db'}"
    await upgrade(url)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        data_dir=tmp_path,
        index_dir=tmp_path / "indexes",
        offline_chars_per_second=100_000,
    )
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def request_examples(schema: dict[str, Any]) -> dict[tuple[str, str], list[Any]]:
    """Every operation with a request body, and the examples the schema gives for it."""
    components = schema["components"]["schemas"]
    found: dict[tuple[str, str], list[Any]] = {}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if "requestBody" not in operation:
                continue
            media = operation["requestBody"]["content"]["application/json"]
            body = media["schema"]
            if "$ref" in body:
                body = components[body["$ref"].rsplit("/", 1)[-1]]
            examples = [*body.get("examples", [])]
            examples += [example["value"] for example in media.get("examples", {}).values()]
            if "example" in media:
                examples.append(media["example"])
            found[(method.upper(), path)] = examples
    return found


async def test_every_request_body_has_an_example_the_server_accepts(api: httpx.AsyncClient):
    schema = (await api.get("/openapi.json")).json()
    examples = request_examples(schema)
    assert ("POST", "/api/generate") in examples
    assert all(examples.values()), [name for name, found in examples.items() if not found]
    for (method, path), bodies in examples.items():
        for body in bodies:
            answer = await api.request(method, path, json=body)
            # Ids in examples name no story of this database: 404 is the server accepting them.
            assert answer.status_code not in (400, 422), (method, path, body, answer.text)
            assert answer.status_code < 500 or answer.status_code == 503, (path, answer.text)


async def test_the_new_story_example_streams_a_story(api: httpx.AsyncClient):
    schema = (await api.get("/openapi.json")).json()
    new_story = request_examples(schema)[("POST", "/api/generate")][0]
    answer = await api.post("/api/generate", json=new_story)
    assert answer.status_code == 200
    events = [
        line.removeprefix("event: ")
        for line in answer.text.splitlines()
        if line.startswith("event: ")
    ]
    assert events[0] == "meta"
    assert "delta" in events
    assert events[-1] == "done"


async def test_the_story_streams_describe_every_event_the_server_sends(api: httpx.AsyncClient):
    schema = (await api.get("/openapi.json")).json()
    sent = {payload.event for payload in EventPayload.__subclasses__()}
    assert sent >= {"meta", "stage", "delta", "title", "recommendations", "done", "cancelled"}
    streams = {
        path: operation["responses"]["200"]["description"]
        for path, operations in schema["paths"].items()
        for operation in operations.values()
        if "text/event-stream" in operation["responses"].get("200", {}).get("content", {})
    }
    assert set(streams) == {"/api/generate", "/api/generate/{conversation_id}/events"}
    for description in streams.values():
        lines = description.splitlines()
        described = {line.split()[0] for line in lines if line[:1].isalpha() and " " in line}
        assert sent <= described, sent - described
        assert "Last-Event-ID" in description
        # The payload fields as the protocol names them, e.g. the draft and refine deltas.
        assert "{stage: draft|refine, text}" in description


def test_the_schema_is_built_without_serving_it(tmp_path: Path):
    """STORYTOOL_DOCS_ENABLED=false hides /openapi.json; the schema, events included, is still
    there for tooling (README: ``create_app(settings).openapi()``)."""
    settings = Settings(_env_file=None, data_dir=tmp_path, docs_enabled=False)  # type: ignore[call-arg]
    schema = create_app(settings).openapi()
    answer = schema["paths"]["/api/generate"]["post"]["responses"]["200"]
    assert "cancelled" in answer["description"]
