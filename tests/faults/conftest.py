"""Fault tests reuse the generation tests' view of what the server stored."""

from tests.generation.conftest import database

__all__ = ["database"]
