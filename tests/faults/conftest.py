"""Fault tests reuse the generation tests' view of what the server stored, and see which clients
the server dropped for not reading."""

from tests.generation.conftest import database
from tests.stalled_client import drops

__all__ = ["database", "drops"]
