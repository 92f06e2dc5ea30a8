"""Story analysis: local metrics throughput, and ``POST /api/analyze`` end to end on long texts.

    .venv/bin/python -m bench.analysis                   # from the repository root
    .venv/bin/python -m bench.analysis --model-delay 0.5 --repeat 3

1. ``measure`` + ``sentence_spans`` (what the service runs off the event loop) on classical-style
   texts of 1,000 / 10,000 / 50,000 characters: median milliseconds over ``--repeat`` runs.
2. The whole route through the app (in process, SQLite in a temporary folder) with the openai
   provider pointed at the fake OpenAI server on 127.0.0.1, which answers each structured call
   after ``--model-delay`` seconds, for the 50,000-character text (the default limit): the text is
   read in chunks of ``analysis_chunk_chars`` and merged by one more call, with the chunk calls
   one at a time and four at a time.

Loopback only, nothing downloaded; bounded by ``--repeat``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager
from pydantic import SecretStr
from tests.fakes.openai_server import DEFAULT_STORY, FakeOpenAI

from storytool.analysis.metrics import measure, sentence_spans
from storytool.config import LLMProvider, Settings
from storytool.db.migrations import upgrade
from storytool.main import create_app

SIZES = (1_000, 10_000, 50_000)


def story_of(size: int) -> str:
    """The fake's classical story repeated, one paragraph per copy, cut to ``size`` characters."""
    copies = size // len(DEFAULT_STORY) + 1
    return "\n".join([DEFAULT_STORY] * copies)[:size]


def bench_metrics(repeat: int) -> None:
    print("metrics (measure + sentence_spans), median of", repeat)
    for size in SIZES:
        text = story_of(size)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            measure(text)
            sentence_spans(text)
            times.append(time.perf_counter() - started)
        print(f"  {size:>6} chars: {statistics.median(times) * 1000:7.1f} ms")


async def bench_route(repeat: int, model_delay: float) -> None:
    text = story_of(SIZES[-1])
    with tempfile.TemporaryDirectory() as folder, FakeOpenAI() as fake:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        await upgrade(url)
        print(f"POST /api/analyze, {len(text)} chars, model answers after {model_delay} s")
        for concurrency in (1, 4):
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                database_url=url,
                data_dir=Path(folder),
                llm_provider=LLMProvider.OPENAI,
                openai_base_url=fake.base_url,
                openai_api_key=SecretStr("bench"),
                analysis_concurrency=concurrency,
            )
            app = create_app(settings)
            times = []
            async with LifespanManager(app) as manager:
                transport = httpx.ASGITransport(app=manager.app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://bench", timeout=120
                ) as client:
                    for _ in range(repeat):
                        fake.reset()
                        fake.behaviour.first_token_delay = model_delay
                        started = time.perf_counter()
                        response = await client.post("/api/analyze", json={"text": text})
                        times.append(time.perf_counter() - started)
                        response.raise_for_status()
            analysis = response.json()["analysis"]
            calls = len(fake.received("/v1/responses"))
            print(
                f"  concurrency {concurrency}: {statistics.median(times):6.2f} s "
                f"({analysis['chunks']} chunks + merge = {calls} model calls)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--model-delay", type=float, default=0.3)
    args = parser.parse_args()
    bench_metrics(args.repeat)
    asyncio.run(bench_route(args.repeat, args.model_delay))


if __name__ == "__main__":
    main()
