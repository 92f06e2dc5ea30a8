"""The ``POST /api/search`` request and answer."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from storytool.schemas import RequestModel

MAX_TOP_K = 50


class SearchFilters(RequestModel):
    work: str | None = Field(default=None, min_length=1, description="Only this source work.")


class SearchRequest(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"query": "종이 주인의 원수를 갚으러 길을 떠나다", "top_k": 5},
                {"query": "간신의 모함", "top_k": 3, "filters": {"work": "충노만석전"}},
            ]
        }
    )

    query: str = Field(
        description="What to look for; a sentence or a scene in any wording. Must not be blank.",
    )
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K, description="Passages to return.")
    filters: SearchFilters = Field(default_factory=SearchFilters)


class PassageHit(BaseModel):
    id: int
    key: str | None = Field(description="The passage's key in its corpus file.")
    score: float = Field(description="Cosine similarity to the query, higher is closer.")
    work: str
    chapter: str | None
    scene: str | None
    text: str


class SearchResponse(BaseModel):
    query: str
    passages: list[PassageHit]
    recommendations: list[str] = Field(
        description="Where a story on this query could go next, drawn from the passages found."
    )


class SearchSuggestions(BaseModel):
    """The mini model's structured answer."""

    recommendations: list[str] = Field(min_length=1, max_length=5)
