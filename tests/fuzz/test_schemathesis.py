"""Schemathesis against ``/openapi.json`` of a real server, on SQLite and on MariaDB.

Two runs over the schema of :mod:`tests.fuzz.schema` (links; strange strings), with header auth
and two users whose names differ only in case taking turns, each answer judged by
:class:`tests.fuzz.oracle.Oracle` (no 5xx; documented status, content type and body; well-formed
errors and streams; nobody sees another's data):

- every operation on its own, 100 examples each (some valid, some not), event streams read to
  their end;
- scenarios: a story is started (its stream read up to ``meta``, then left, as a closed tab
  does: the story is written on) and the links followed to history, cancel, verdicts, variants,
  analysis, export, resume and delete, by its owner and the other user in turn. Each scenario
  has a pair of users of its own, so it starts from empty histories.

Both runs are seeded. Schemathesis still decides with a random source of its own whether a
step uses a link's ids or draws its own, and what the server answers depends on timing (a cancel
finds its story running or finished, a burst meets the rate limit); every such answer is one the
checks accept. Hypothesis notices when a scenario's steps depend on such answers (a cancel's 200
opens links a 409 does not) and stops the run as flaky (:class:`FlakyStrategyDefinition`), as
Schemathesis' own runner does: the scenarios run so far stand, and the run goes on from the next
seed until enough have run.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.stateful import Bundle, initialize
from schemathesis.generation import GenerationMode
from schemathesis.generation.stateful.state_machine import StepInput, StepOutput

from storytool.config import AuthMode, Settings
from storytool.main import create_app
from tests.fuzz.conftest import RATE_LIMIT, USERS, Target
from tests.fuzz.schema import load, reveal_surrogates

DETERMINISTIC = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
SCENARIOS = 80
SEEDS = 20
"""Runs from a new seed that may be needed to reach :data:`SCENARIOS` scenarios."""

each_operation = load(max_stream_events=100_000)


@each_operation.parametrize()
@settings(DETERMINISTIC, max_examples=100)
def test_every_operation_answers_as_documented(fuzzed: Target, case: schemathesis.Case) -> None:
    fuzzed.ran.add("each operation")
    case.headers["X-User-Id"] = next(fuzzed.users)
    reveal_surrogates(case)
    case.call_and_validate(base_url=fuzzed.url, checks=fuzzed.oracle.checks(), timeout=30)


scenarios = load(max_stream_events=1)


def as_new_story(case: schemathesis.Case) -> schemathesis.Case:
    """The drawn body as a new story (the schema states only in prose that one needs a prompt
    and no parent), so that a scenario has one to work on."""
    body: dict[str, Any] = case.body
    case.body = {
        **body,
        "mode": "new",
        "user_input": body.get("user_input") or "나그네가 고개를 넘으니",
        "parent_conversation_id": None,
        "thread_id": None,
    }
    return case


NEW_STORIES = (
    scenarios["/api/generate"]["POST"]
    .as_strategy(generation_mode=GenerationMode.POSITIVE)
    .map(as_new_story)
)


def test_scenarios_from_a_new_story_answer_as_documented(fuzzed: Target) -> None:
    fuzzed.ran.add("scenarios")
    oracle = fuzzed.oracle
    pairs = itertools.count()
    run: list[int] = []

    class Scenarios(scenarios.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            pair = next(pairs)
            self.users = itertools.cycle(f"{name}-{pair}" for name in USERS)

        @initialize(target=Bundle("POST /api/generate -> 200"), case=NEW_STORIES)
        def start_a_story(self, case: schemathesis.Case) -> StepOutput:
            """Every scenario starts from a new story of its first user: Schemathesis would
            start from history (a request that needs no ids), empty for a new user."""
            self.recorder.record_case(case=case)
            return self.step(StepInput.initial(case))

        def before_call(self, case: schemathesis.Case) -> None:
            case.headers["X-User-Id"] = next(self.users)
            reveal_surrogates(case)

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:  # noqa: ARG002
            return {"base_url": fuzzed.url, "timeout": 30}

        def validate_response(
            self, response: schemathesis.Response, case: schemathesis.Case, **kwargs: object
        ) -> None:
            case.validate_response(
                response, checks=oracle.checks(), transport_kwargs=kwargs, recorder=self.recorder
            )

        def teardown(self) -> None:
            run.append(1)

    for attempt in range(SEEDS):
        if len(run) >= SCENARIOS:
            break
        machine = seed(attempt)(Scenarios)
        scenario_settings = settings(
            DETERMINISTIC,
            derandomize=False,
            max_examples=SCENARIOS - len(run),
            stateful_step_count=10,
            phases=[Phase.generate],
        )
        try:
            machine.run(settings=scenario_settings)
        except FlakyStrategyDefinition:
            continue
    assert len(run) >= SCENARIOS, f"{len(run)} scenarios from {SEEDS} seeds"


def test_the_runs_met_intruders_cancels_limits_and_strange_strings(fuzzed: Target) -> None:
    """What both runs above met on their server, so that no check passed for want of a case."""
    if fuzzed.ran != {"each operation", "scenarios"}:
        pytest.skip(f"only {sorted(fuzzed.ran)} ran on this server")
    seen = fuzzed.oracle.seen
    assert seen["intrusions 404"], "no request used the other user's ids"
    assert seen["strange strings sent"], "no surrogate or NUL was sent"
    assert seen["POST /api/cancelGeneration 200"], "no story was cancelled"
    limit = int(RATE_LIMIT.split("/")[0])
    # Past the limit with a margin for the time between an answer and its count on the server.
    if fuzzed.oracle.busiest_second() > limit * 1.2:
        assert seen["429"], f"{fuzzed.oracle.busiest_second()} answers in a second, no 429"


def test_every_documented_error_is_json() -> None:
    """Errors are JSON whatever a route's success is: the feedback export documented its
    common errors (429 from the rate limit among them) as JSON lines, and answered JSON."""
    schema = create_app(Settings(_env_file=None, auth_mode=AuthMode.HEADER)).openapi()  # type: ignore[call-arg]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if int(status) >= 400 and "content" in answer:
                    assert list(answer["content"]) == ["application/json"], (method, path, status)
