"""Language-model providers behind one Protocol (:mod:`storytool.llm.base`), chosen by settings."""

from __future__ import annotations

from storytool.config import LLMProvider as ProviderName
from storytool.config import Settings
from storytool.llm.base import LLMProvider


def build_provider(settings: Settings) -> LLMProvider:
    """The provider ``settings.effective_llm_provider`` names; the caller closes it."""
    # Imported here, not at the top: importing this package (for llm.base's types, as the
    # Python client does) should not pay for loading the openai SDK.
    if settings.effective_llm_provider is ProviderName.OPENAI:
        from storytool.llm.openai import OpenAIProvider

        return OpenAIProvider(settings)
    from storytool.llm.offline import OfflineProvider

    return OfflineProvider(settings)


__all__ = ["LLMProvider", "build_provider"]
