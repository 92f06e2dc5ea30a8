"""Security tests read the server's stored state like the generation tests do."""

from tests.generation.conftest import database

__all__ = ["database"]
