"""Stories written by language models: the draft by the fine-tuned model (a chat completion), the
refine by the refine model (a streamed response, or a chat where the server has no Responses API),
the title and recommendations by the small model (structured output)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from storytool.config import Settings
from storytool.generation import prompts
from storytool.generation.story import StoryExtras, StoryRequest, StoryWriter
from storytool.llm.base import ModelClient, StreamEvent


class ModelWriter(StoryWriter):
    name = "openai"

    def __init__(self, client: ModelClient, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self.models = {
            "draft": settings.fine_tuned_model,
            "refine": settings.refine_model,
            "mini": settings.mini_model,
            "embedding": settings.embedding_model,
        }

    async def prepare(self) -> None:
        await self._client.prepare()

    def draft(self, request: StoryRequest) -> AsyncIterator[StreamEvent]:
        return self._client.stream_chat(
            model=self._settings.fine_tuned_model,
            messages=prompts.draft_messages(self._settings.system_prompt, request),
            temperature=request.temperature,
            max_tokens=prompts.MAX_TOKENS[request.length],
        )

    def refine(
        self, request: StoryRequest, base_story: str, *, resume: tuple[str, int] | None = None
    ) -> AsyncIterator[StreamEvent]:
        # Context kept upstream: the conversation already holds the earlier turns.
        conversation = (
            request.remote_conversation_id if self._settings.remote_conversations else None
        )
        history = [] if conversation else request.history
        return self._client.stream_response(
            model=self._settings.refine_model,
            instructions=prompts.REFINE_INSTRUCTIONS,
            messages=prompts.refine_messages(request, base_story, history=history),
            temperature=request.temperature,
            max_tokens=prompts.MAX_TOKENS[request.length],
            conversation=conversation,
            resume=resume,
        )

    async def cancel(self, response_id: str) -> None:
        await self._client.cancel(response_id)

    async def extras(self, request: StoryRequest, story: str) -> StoryExtras:
        return await self._client.structured(
            StoryExtras,
            model=self._settings.mini_model,
            instructions=prompts.EXTRAS_INSTRUCTIONS,
            text=prompts.extras_text(request, story),
        )
