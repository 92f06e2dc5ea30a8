"""List your story threads and export one to Markdown.

    python examples/export_history.py [--thread ID] [--out DIR] [--url http://127.0.0.1:8000]

Prints one line per thread, newest first: "<id>  <status>  <title>" (every page of the
history), then exports the newest thread (or --thread) and prints "exported <path>", the
Markdown file written in --out: by default the current folder, or data/exports/ (ignored by git)
when that folder is this repository, so an export never lands among its files. The base URL comes
from --url, else $STORYTOOL_URL, else http://127.0.0.1:8000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from storytool.client import StorytoolClient

REPOSITORY = Path(__file__).resolve().parents[1]


def default_out() -> Path:
    here = Path.cwd().resolve()
    if here == REPOSITORY or REPOSITORY in here.parents:
        return REPOSITORY / "data" / "exports"
    return Path()


async def main(args: argparse.Namespace) -> int:
    async with StorytoolClient(args.url) as client:
        threads = [summary async for summary in client.history()]
        for summary in threads:
            print(f"{summary.id}  {summary.last_status}  {summary.title or '(untitled)'}")
        if not threads and args.thread is None:
            print("no threads yet: write a story first")
            return 1
        thread_id = args.thread or threads[0].id
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"storytool-{thread_id}.md"
        path.write_text(await client.export_thread(thread_id, "md"), encoding="utf-8")
        print(f"exported {path}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thread", help="thread id to export (default: the newest)")
    parser.add_argument("--out", type=Path, default=default_out())
    parser.add_argument("--url", default=os.environ.get("STORYTOOL_URL", "http://127.0.0.1:8000"))
    sys.exit(asyncio.run(main(parser.parse_args())))
