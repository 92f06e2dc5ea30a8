"""Storytool: an async backend that writes Korean classical-style stories and streams them."""

__version__ = "0.1.0"
