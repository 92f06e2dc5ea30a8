"""The client's calls for what a writer does after a story: pick a variant, judge it with reasons,
export the thread, and export the judged stories as fine-tuning data. Against a live server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from storytool.client import MetaEvent, NotFound, StorytoolClient
from tests.client.test_client import PROMPT, collect, story_of


async def write(client: StorytoolClient, prompt: str = PROMPT) -> tuple[MetaEvent, str]:
    """A short story: its meta event and its text."""
    events = await collect(client.generate(prompt, tags=["모험"], length="short"))
    meta = events[0]
    assert isinstance(meta, MetaEvent)
    return meta, story_of(events)


class TestVariants:
    async def test_the_selected_variant_is_marked_in_the_thread(self, alice: StorytoolClient):
        first, _ = await write(alice)
        second = (await collect(alice.regenerate(first.conversation_id, length="short")))[0]

        selected = await alice.select_variant(second.conversation_id)

        assert selected.conversation_id == second.conversation_id
        assert selected.input_conversation_id == first.conversation_id
        thread = await alice.detail(first.thread_id)
        assert thread.inputs[0].selected == second.conversation_id
        marked = {turn.id: turn.selected for turn in thread.conversations}
        assert marked == {first.conversation_id: False, second.conversation_id: True}

    async def test_another_users_story_cannot_be_selected(
        self, alice: StorytoolClient, bob: StorytoolClient
    ):
        meta, _ = await write(alice)
        with pytest.raises(NotFound):
            await bob.select_variant(meta.conversation_id)


class TestEvaluate:
    async def test_reasons_and_comment_are_stored_and_replaced_by_the_next_verdict(
        self, alice: StorytoolClient
    ):
        meta, _ = await write(alice)

        stored = await alice.evaluate(
            meta.conversation_id, "like", "문체가 좋도다", reasons=["style", "plot"]
        )
        assert (stored.rating, stored.comment, stored.reasons) == (
            "like",
            "문체가 좋도다",
            ["style", "plot"],
        )
        thread = await alice.detail(meta.thread_id)
        evaluation = thread.conversations[0].evaluation
        assert evaluation is not None
        assert evaluation.reasons == ["style", "plot"]

        again = await alice.evaluate(meta.conversation_id, "dislike", reasons=["too_short"])
        assert (again.rating, again.comment, again.reasons) == ("dislike", None, ["too_short"])


class TestExports:
    async def test_a_thread_exports_as_markdown_and_as_json(self, alice: StorytoolClient):
        meta, story = await write(alice)
        title = (await alice.detail(meta.thread_id)).title

        markdown = await alice.export_thread(meta.thread_id)
        as_json = json.loads(await alice.export_thread(meta.thread_id, "json"))

        assert markdown.startswith(f"# {title}")
        assert story in markdown
        assert as_json["id"] == meta.thread_id
        assert as_json["conversations"][0]["story"] == story

    async def test_feedback_export_yields_the_callers_liked_stories_as_chat_examples(
        self, alice: StorytoolClient, bob: StorytoolClient
    ):
        liked, liked_story = await write(alice, f"{PROMPT} 하나")
        disliked, disliked_story = await write(alice, f"{PROMPT} 둘")
        await write(alice, f"{PROMPT} 셋")  # not judged: not exported
        bobs, _ = await write(bob)
        await alice.evaluate(liked.conversation_id, "like", reasons=["style"])
        await alice.evaluate(disliked.conversation_id, "dislike")
        await bob.evaluate(bobs.conversation_id, "like")

        likes = [line async for line in alice.export_feedback()]
        dislikes = [line async for line in alice.export_feedback(rating="dislike")]
        later = datetime.now(UTC) + timedelta(hours=1)
        none_since = [line async for line in alice.export_feedback(since=later)]

        assert [line["messages"][-1]["content"] for line in likes] == [liked_story]
        assert [line["messages"][-1]["content"] for line in dislikes] == [disliked_story]
        assert [message["role"] for message in likes[0]["messages"]] == [
            "system",
            "user",
            "assistant",
        ]
        assert none_since == []
