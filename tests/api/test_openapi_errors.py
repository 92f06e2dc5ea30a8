"""The OpenAPI document's error answers: every one with the error body's schema (the shared
ones and each route's own, from one helper), and only errors an operation can give."""

from __future__ import annotations

from typing import Any

import pytest

from storytool.config import Settings
from storytool.main import create_app

ERROR_BODY = "#/components/schemas/ErrorResponse"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in spec["paths"].items()
        if path.startswith("/api/")
        for method, operation in methods.items()
    ]


def test_every_error_answer_of_the_api_is_documented_with_the_error_body(spec: dict[str, Any]):
    undocumented = [
        f"{method} {path} {status}"
        for method, path, operation in operations(spec)
        for status, answer in operation["responses"].items()
        if int(status) >= 400
        if answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
        != ERROR_BODY
    ]
    assert undocumented == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/retrieveChatHistoryList", "404"),  # lists the caller's threads: none missing
        ("POST", "/api/search", "404"),
        ("POST", "/api/search", "409"),
        ("GET", "/api/evaluations/export", "404"),
    ],
)
def test_an_operation_lists_no_error_it_cannot_give(
    spec: dict[str, Any], method: str, path: str, status: str
):
    assert status not in spec["paths"][path][method.lower()]["responses"]


def test_the_errors_routes_give_are_listed(spec: dict[str, Any]):
    paths = spec["paths"]
    assert {"404", "409"} <= set(paths["/api/cancelGeneration"]["post"]["responses"])
    assert {"404", "409", "429", "503"} <= set(paths["/api/generate"]["post"]["responses"])
    assert "404" in paths["/api/retrieveChatHistoryDetail"]["get"]["responses"]
    for method, path, operation in operations(spec):
        assert {"401", "422", "429"} <= set(operation["responses"]), f"{method} {path}"
