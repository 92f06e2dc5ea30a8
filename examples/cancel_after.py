"""Start a story and cancel it after N seconds.

    python examples/cancel_after.py 1.5 [--url http://127.0.0.1:8000]

Prints the text received before the cancel, then the server's confirmation, e.g.
"status: cancelled, saved 312 characters" (the saved partial story is what the stream had sent
and what the history now holds). A story that ended before the cancel reached the server prints
"already ended: ..." instead. The base URL comes from --url, else $STORYTOOL_URL, else
http://127.0.0.1:8000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator

from storytool.client import Conflict, DeltaEvent, MetaEvent, StoryEvent, StorytoolClient


async def print_story(events: AsyncIterator[StoryEvent]) -> None:
    stage = None
    async for event in events:
        if isinstance(event, DeltaEvent):
            if event.stage != stage:  # the draft first, then the refined story that replaces it
                stage = event.stage
                print("[초고] " if stage == "draft" else "\n[다듬은 이야기] ", end="")
            print(event.text, end="", flush=True)


async def main(args: argparse.Namespace) -> int:
    async with StorytoolClient(args.url) as client:
        stream = client.generate(args.prompt, length="long")
        meta = await anext(stream)
        assert isinstance(meta, MetaEvent)
        printer = asyncio.create_task(print_story(stream))
        await asyncio.sleep(args.seconds)
        try:
            answer = await client.cancel(meta.conversation_id)
        except Conflict as exc:
            await printer
            print(f"\nalready ended: {exc.message}")
            return 1
        await printer  # the stream ends with its cancelled event
        print(
            f"\nstatus: {answer.status}, saved {len(answer.partial_story)} characters of story"
            f" and {len(answer.partial_draft)} of draft"
        )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seconds", nargs="?", type=float, default=1.5)
    parser.add_argument("--prompt", default="한 선비가 과거 길에 올라 산적을 만나니")
    parser.add_argument("--url", default=os.environ.get("STORYTOOL_URL", "http://127.0.0.1:8000"))
    sys.exit(asyncio.run(main(parser.parse_args())))
