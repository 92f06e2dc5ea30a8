"""Language-model providers behind one Protocol (:mod:`storytool.llm.base`), chosen by settings."""

from __future__ import annotations

from storytool.config import LLMProvider as ProviderName
from storytool.config import Settings
from storytool.llm.base import LLMProvider
from storytool.llm.offline import OfflineProvider
from storytool.llm.openai import OpenAIProvider


def build_provider(settings: Settings) -> LLMProvider:
    """The provider ``settings.effective_llm_provider`` names; the caller closes it."""
    if settings.effective_llm_provider is ProviderName.OPENAI:
        return OpenAIProvider(settings)
    return OfflineProvider(settings)


__all__ = ["LLMProvider", "build_provider"]
