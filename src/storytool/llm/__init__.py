"""Transport to language-model servers (:mod:`storytool.llm.base`), chosen by settings."""

from __future__ import annotations

from storytool.config import LLMProvider as ProviderName
from storytool.config import Settings
from storytool.llm.base import ModelClient


def build_client(settings: Settings) -> ModelClient | None:
    """The model server's client, or None with the offline provider (no model at all); the
    caller closes it."""
    # Imported here, not at the top: importing this package (for llm.base's types, as the
    # Python client does) should not pay for loading the openai SDK.
    if settings.effective_llm_provider is ProviderName.OPENAI:
        from storytool.llm.openai import OpenAIClient

        return OpenAIClient(settings)
    return None


__all__ = ["ModelClient", "build_client"]
