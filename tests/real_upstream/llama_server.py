"""Serves a GGUF model with llama.cpp's own HTTP server (the ``xllamacpp`` wheel) until SIGTERM.

The fixtures in ``conftest.py`` run this file with the Python of whichever venv holds the xllamacpp
version under test (one venv cannot hold two), so it imports nothing but xllamacpp and the
standard library::

    python llama_server.py --model FILE --port N [--n-predict 64]

``--n-predict`` is only the length of an answer whose request names none: a request's own
``max_tokens`` wins (the fixtures cap answers with a relay, ``conftest.py``).

Two wheel generations are handled: 2026.x (``model_alias`` is a set, ``hostnames`` a list) and
0.2.x (``model_alias`` a string, ``hostname`` a string).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import xllamacpp


def params(args: argparse.Namespace) -> xllamacpp.CommonParams:
    common = xllamacpp.CommonParams()
    common.model.path = args.model
    try:
        common.model_alias = {args.alias}
    except TypeError:  # 0.2.x: one alias, a string
        common.model_alias = args.alias
    if hasattr(common, "hostnames"):
        common.hostnames = ["127.0.0.1"]
    else:
        common.hostname = "127.0.0.1"
    common.port = args.port
    common.n_predict = args.n_predict
    common.use_jinja = True
    # Two slots: a capability probe or a title is not queued behind a story being written.
    common.n_parallel = 2
    common.cpuparams.n_threads = args.threads
    common.cpuparams_batch.n_threads = args.threads
    return common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", required=True, help="The GGUF file.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--alias", default="smollm2", help="The model name /v1/models lists.")
    parser.add_argument(
        "--n-predict", type=int, default=64, help="Tokens of an answer whose request names none."
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    # Block the signals before the server starts its threads, so they all inherit the mask and
    # only sigwait below receives them.
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    server = xllamacpp.Server(params(args))
    sys.stderr.write(f"llama.cpp serving on 127.0.0.1:{args.port}\n")
    signal.sigwait(stop)
    # Exit without tearing the server down: its threads need no join, the process is done.
    os._exit(0 if server is not None else 1)


if __name__ == "__main__":
    main()
