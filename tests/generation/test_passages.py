"""The story generator draws on the corpus passages nearest the prompt."""

from __future__ import annotations

import json

from storytool.config import EmbedderKind, Settings
from tests.generation.conftest import Database, generate, serving
from tests.search.conftest import SAMPLE_CORPUS, build

PROMPT = {"user_input": "과거 보러 떠나는 아들과 눈물로 이별하는 어머니", "tags": []}


def with_sample_index(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "embedder": EmbedderKind.HASHING,
            "index_name": "sample",
            "offline_chars_per_second": 4000.0,
        }
    )


async def test_an_offline_story_weaves_in_the_nearest_passage(
    settings: Settings, database: Database
):
    settings = with_sample_index(settings)
    await build(settings)
    passages = [json.loads(line) for line in SAMPLE_CORPUS.read_text().splitlines()]
    farewell = next(passage for passage in passages if passage["key"] == "cheongun-02")

    async with serving(settings) as client:
        events = await generate(client, PROMPT)

    assert events[-1].event == "done"
    _conversation, data = await database.conversation(events[0].data["conversation_id"])
    woven = " ".join(farewell["text"].split())[:40]
    assert woven in (data.base_story or "")
    assert woven in (data.story or "")


async def test_without_an_index_stories_are_still_written(settings: Settings):
    async with serving(with_sample_index(settings)) as client:
        events = await generate(client, PROMPT)
    assert events[-1].event == "done"
