"""Schemathesis against ``/openapi.json`` of a real server: every operation, bounded examples.

No answer may be a 500, and every answer must be one the schema documents, with its documented
content type and body schema. The server runs on a temporary SQLite database with the offline
provider at a fast pace, local auth, and a small search index (the hashing embedder builds it in
well under a second), so ``POST /api/search`` answers from an index rather than a 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from storytool.config import EmbedderKind, Settings
from storytool.db.migrations import upgrade
from storytool.main import create_app
from tests.fakes.server_thread import ServerThread
from tests.search.conftest import build

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="session")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite+aiosqlite:///{folder / 'storytool.db'}"
    asyncio.run(upgrade(url))
    app_settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        data_dir=folder / "data",
        index_dir=folder / "indexes",
        embedder=EmbedderKind.HASHING,
        index_name="sample",
        offline_chars_per_second=100_000.0,
        # Fuzzing sends far more requests than a person; the rate limit is tested on its own.
        rate_limit="100000/second",
    )
    asyncio.run(build(app_settings))
    with ServerThread(create_app(app_settings)) as server:
        yield server.url


# The schema is the app's own (building an app runs nothing); the calls go to the real server.
schema = schemathesis.openapi.from_dict(create_app(Settings(_env_file=None)).openapi())  # type: ignore[call-arg]


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_answer_is_documented_and_none_is_a_500(
    fuzzed_server: str, case: schemathesis.Case
) -> None:
    case.call_and_validate(base_url=fuzzed_server, checks=CHECKS, timeout=30)
