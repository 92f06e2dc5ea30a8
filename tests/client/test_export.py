"""``GET /api/threads/{thread_id}/export``: a thread as a Markdown or JSON download."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import httpx
import pytest

from storytool.client import MetaEvent, StorytoolClient
from tests.fakes.server_thread import ServerThread


@pytest.fixture
async def thread_id(alice: StorytoolClient) -> str:
    """A thread of alice's with two turns, the second cancelled before it wrote anything."""
    events = [event async for event in alice.generate("호랑이가 산을 내려오니", tags=["해학"])]
    meta = events[0]
    assert isinstance(meta, MetaEvent)
    second = alice.generate("그 뒤의 일을 이르라", thread_id=meta.thread_id, length="long")
    started = await anext(second)
    await alice.cancel(started.conversation_id)
    [event async for event in second]
    return meta.thread_id


async def export(server: ServerThread, thread_id: str, user: str, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, headers={"X-User-Id": user}) as http:
        return await http.get(f"/api/threads/{thread_id}/export", params=params)


async def test_markdown_is_an_attachment_with_every_turn(
    server: ServerThread, alice: StorytoolClient, thread_id: str
):
    detail = await alice.detail(thread_id)
    first, second = detail.conversations

    response = await export(server, thread_id, "alice")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="storytool-{thread_id}.md"; '
        f"filename*=UTF-8''{quote(detail.title or '')}.md"
    )
    markdown = response.text
    assert markdown.startswith(f"# {detail.title}\n")
    assert "> 호랑이가 산을 내려오니\n" in markdown
    assert "태그: 해학\n" in markdown
    assert first.story in markdown
    assert markdown.index(first.story) < markdown.index("> 그 뒤의 일을 이르라")
    assert "*(cancelled)*" in markdown
    assert all(f"- {item}\n" in markdown for item in first.recommendations)
    assert second.status == "cancelled"


async def test_json_is_the_history_detail(
    server: ServerThread, alice: StorytoolClient, thread_id: str
):
    response = await export(server, thread_id, "alice", format="json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"].endswith(".json")
    detail = await alice.detail(thread_id)
    assert json.loads(response.text) == json.loads(detail.model_dump_json())


async def test_another_users_or_a_missing_thread_is_404(server: ServerThread, thread_id: str):
    for user, thread in (("bob", thread_id), ("alice", str(uuid.uuid4()))):
        response = await export(server, thread, user)
        assert response.status_code == 404
        assert response.json()["error"]["field"] == "thread_id"


@pytest.mark.parametrize(
    ("thread", "params", "field"),
    [("not-a-uuid", {}, "thread_id"), (str(uuid.uuid4()), {"format": "pdf"}, "format")],
)
async def test_bad_input_is_422_naming_the_field(
    server: ServerThread, thread: str, params: dict[str, str], field: str
):
    response = await export(server, thread, "alice", **params)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field
