"""The import contracts in ``.importlinter`` hold, and a forbidden import breaks them.

``make test`` runs ``lint-imports`` on the tree; this checks the contracts are not vacuous: a copy
of the package with one import that runs against them (the model transport reaching into the
stories it carries, a domain reaching into another's repository) fails the check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(source: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / ".importlinter"), "--no-cache"],
        cwd=source,
        env={"PYTHONPATH": str(source), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_every_contract():
    result = lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "forbidden", "contract"),
    [
        ("llm/base.py", "storytool.generation.prompts", "llm is transport"),
        (
            "analysis/service.py",
            "storytool.threads.repository",
            "No domain reaches into another domain's repository",
        ),
        ("threads/service.py", "fastapi", "never import FastAPI"),
        ("search/router.py", "sqlalchemy", "Routers never touch SQL"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, forbidden: str, contract: str
):
    shutil.copytree(ROOT / "src" / "storytool", tmp_path / "storytool")
    changed = tmp_path / "storytool" / module
    changed.write_text(changed.read_text() + f"\nimport {forbidden}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout
    assert "BROKEN" in result.stdout
