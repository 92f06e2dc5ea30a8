"""All ORM tables, imported here so Alembic and ``Base.metadata`` see every one."""

from storytool.models.conversation import (
    Conversation,
    ConversationStatus,
    GenerationMode,
    StopReason,
    group_first_column,
    group_first_id,
)
from storytool.models.conversation_data import ConversationData, story_text
from storytool.models.evaluation import ContentEvaluation, Rating
from storytool.models.passage import Passage
from storytool.models.thread import Thread

__all__ = [
    "ContentEvaluation",
    "Conversation",
    "ConversationData",
    "ConversationStatus",
    "GenerationMode",
    "Passage",
    "Rating",
    "StopReason",
    "Thread",
    "group_first_column",
    "group_first_id",
    "story_text",
]
