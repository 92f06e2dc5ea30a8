"""Stream a story to the terminal as it is written.

    python examples/stream_story.py "한 선비가 길을 떠나니" --tag 모험 [--url http://127.0.0.1:8000]

Shows the draft as it is written, dimmed, on stderr; then prints the refined story, which
replaces it, on stdout as it arrives, then its title as 《title》 and the recommended next steps
as "· item" lines. The thread and conversation ids, the stages and how the story
ended ("completed", "cancelled" or "error: ...") go to stderr. The base URL comes from --url,
else $STORYTOOL_URL, else http://127.0.0.1:8000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from storytool.client import (
    CancelledEvent,
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    MetaEvent,
    RecommendationsEvent,
    StageEvent,
    StorytoolClient,
    TitleEvent,
)

DIM, PLAIN = ("\033[2m", "\033[0m") if sys.stderr.isatty() else ("", "")


async def main(args: argparse.Namespace) -> int:
    async with StorytoolClient(args.url) as client:
        async for event in client.generate(args.prompt, tags=args.tag, length=args.length):
            match event:
                case MetaEvent():
                    print(
                        f"thread {event.thread_id} conversation {event.conversation_id}",
                        file=sys.stderr,
                    )
                case StageEvent():
                    print(f"[{event.name} {event.status}]", file=sys.stderr)
                case DeltaEvent(stage="draft"):
                    print(f"{DIM}{event.text}{PLAIN}", end="", flush=True, file=sys.stderr)
                case DeltaEvent():
                    print(event.text, end="", flush=True)
                case TitleEvent():
                    print(f"\n\n《{event.title}》")
                case RecommendationsEvent():
                    print("\n".join(f"· {item}" for item in event.items))
                case DoneEvent():
                    print("completed", file=sys.stderr)
                case CancelledEvent():
                    print("\ncancelled", file=sys.stderr)
                    return 1
                case ErrorEvent():
                    print(f"\nerror: {event.message} ({event.code})", file=sys.stderr)
                    return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt", nargs="?", default="한 선비가 과거 길에 올라 산적을 만나니")
    parser.add_argument("--tag", action="append", default=[], help="repeat for several tags")
    parser.add_argument("--length", choices=["short", "medium", "long"], default="medium")
    parser.add_argument("--url", default=os.environ.get("STORYTOOL_URL", "http://127.0.0.1:8000"))
    sys.exit(asyncio.run(main(parser.parse_args())))
