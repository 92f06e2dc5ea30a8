"""What ``/metrics`` says after real generations and a search on a real server."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from storytool.config import EmbedderKind, Settings
from tests.generation.conftest import cancel_when, deltas, generate, serving
from tests.search.conftest import build

PROMPT = {"user_input": "한 선비가 길을 떠나니", "tags": []}


async def samples(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = (await client.get("/metrics")).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_generations_streams_and_search_are_measured(settings: Settings):
    app_settings = settings.model_copy(
        update={
            "offline_chars_per_second": 4000.0,
            "embedder": EmbedderKind.HASHING,
            "index_name": "sample",
        }
    )
    await build(app_settings)
    async with serving(app_settings) as client:
        completed = await generate(client, PROMPT)
        slow = app_settings.model_copy(update={"offline_chars_per_second": 100.0})
        async with serving(slow) as slow_client:
            _events, cancel = await cancel_when(slow_client, PROMPT, deltas(2))
            slow_seen = await samples(slow_client)
        searched = await client.post("/api/search", json={"query": "선비", "top_k": 3})
        seen = await samples(client)

    assert completed[-1].event == "done"
    assert cancel.status_code == 200
    assert searched.status_code == 200
    assert (
        seen[
            (
                "storytool_generations_total",
                frozenset({("status", "completed"), ("stop_reason", "none")}),
            )
        ]
        == 1
    )
    assert seen[("storytool_active_streams", frozenset())] == 0
    assert seen[("storytool_time_to_first_delta_seconds_count", frozenset())] == 1
    assert seen[("storytool_characters_per_second_count", frozenset())] == 1
    assert seen[("storytool_search_seconds_count", frozenset())] == 1
    cancelled = (
        "storytool_generations_total",
        frozenset({("status", "cancelled"), ("stop_reason", "cancel")}),
    )
    assert slow_seen[cancelled] == 1
