"""Search the corpus for passages like a query.

    python examples/search_corpus.py "달밤에 이별하며 눈물을 흘리다" [--top-k 5] [--work 월선회과록]

Prints one block per passage found, closest first: "<score>  <work> <chapter>" and the
passage's text, then "다음 이야기:" with the recommended directions for a story on the query.
--work keeps the passages of one work, named as the corpus names it (the demo corpus has
충노만석전, 월선회과록, 용왕강우기, ...); when nothing is found it says so on stderr.
The server needs a built index (`make run` builds the demo one). The base URL comes from
--url, else $STORYTOOL_URL, else http://127.0.0.1:8000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from storytool.client import InvalidInput, StorytoolClient


async def main(args: argparse.Namespace) -> int:
    async with StorytoolClient(args.url) as client:
        try:
            answer = await client.search(args.query, top_k=args.top_k, work=args.work)
        except InvalidInput as exc:  # e.g. a work the corpus does not hold: the answer names those
            print(exc.message, file=sys.stderr)
            return 2
    if not answer.passages:
        print("no passages found", file=sys.stderr)
    for hit in answer.passages:
        print(f"{hit.score:.3f}  {hit.work} {hit.chapter or ''}\n    {hit.text}\n")
    print("다음 이야기:")
    for item in answer.recommendations:
        print(f"· {item}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("query", nargs="?", default="달밤에 이별하며 눈물을 흘리다")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--work", help="only passages of this work")
    parser.add_argument("--url", default=os.environ.get("STORYTOOL_URL", "http://127.0.0.1:8000"))
    sys.exit(asyncio.run(main(parser.parse_args())))
