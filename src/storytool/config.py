"""Storytool's settings, read from the environment (prefix ``STORYTOOL_``) and an optional ``.env``.

Every field is documented where it is declared; ``storytool serve --help`` and the README list them.
A wrong value stops start-up with a message that names the environment variable (see
:func:`describe_settings_error`).
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

from limits import parse_many
from pydantic import AfterValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "STORYTOOL_"


class LLMProvider(StrEnum):
    OPENAI = "openai"
    OFFLINE = "offline"


class ModelApi(StrEnum):
    """Which OpenAI API a model call goes through; ``auto`` learns what the server has."""

    AUTO = "auto"
    RESPONSES = "responses"
    CHAT = "chat"


class UpstreamHttp(StrEnum):
    """The HTTP library under the openai SDK's calls to the model server."""

    AIOHTTP = "aiohttp"
    HTTPX = "httpx"


class AuthMode(StrEnum):
    LOCAL = "local"
    HEADER = "header"
    JWT = "jwt"


class IndexType(StrEnum):
    FLAT = "flat"
    HNSW = "hnsw"


class EmbedderKind(StrEnum):
    HASHING = "hashing"
    E5 = "e5"
    HYBRID = "hybrid"
    OPENAI = "openai"


DEFAULT_SYSTEM_PROMPT = (
    "당신은 조선 시대 고전 소설의 문체로 이야기를 짓는 작가입니다. "
    "'각설', '차설', '화설' 같은 전환어와 '-하더라', '-이로다', '-하노라' 같은 옛 어미를 살려, "
    "사용자가 준 줄거리와 태그를 따라 한 편의 이야기를 한국어로 씁니다."
)


def _rate_limit(value: str) -> str:
    """Refuses a limit the ``limits`` library cannot read, at start-up rather than per request."""
    try:
        parse_many(value)
    except ValueError as exc:
        raise ValueError(f"not a rate limit like '120/minute': {value!r}") from exc
    return value


MIN_SECRET_BYTES = 32
"""Shared secrets (an HS256 key, the gateway's, the cursor signer's) are at least as long as the
SHA-256 output they key: a shorter one can be guessed offline from one signed token."""


def _long_secret(value: SecretStr | None) -> SecretStr | None:
    if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
        raise ValueError(
            f"must be at least {MIN_SECRET_BYTES} bytes; make one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return value


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Secret = Annotated[SecretStr, AfterValidator(_long_secret)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        # An empty variable is an unset one: compose passes ``${VAR:-}`` for what .env may omit.
        env_ignore_empty=True,
        extra="ignore",
    )

    # --- storage -------------------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("data"),
        description="Folder for the embedded SQLite database and other local state.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy async URL: sqlite+aiosqlite:///path.db or "
            "mysql+asyncmy://user:pass@host:3306/db?charset=utf8mb4. "
            "Unset: a SQLite file under data_dir."
        ),
    )
    db_pool_size: PositiveInt = Field(default=10, description="Connections kept per process.")
    db_max_overflow: Annotated[int, Field(ge=0)] = Field(
        default=10, description="Connections opened past the pool under load."
    )
    db_echo: bool = Field(default=False, description="Log every SQL statement (debugging only).")
    db_busy_timeout_s: PositiveFloat = Field(
        default=30.0,
        description="SQLite: seconds a writer waits for the write lock before failing (503).",
    )

    # --- language models -----------------------------------------------------------------------
    llm_provider: LLMProvider | None = Field(
        default=None,
        description="openai or offline. Unset: openai when an API key is set, offline otherwise.",
    )
    openai_api_key: SecretStr | None = Field(default=None, description="Key for the OpenAI API.")
    openai_base_url: str | None = Field(
        default=None,
        description="Base URL of any OpenAI-compatible server (vLLM, Ollama, LiteLLM).",
    )
    openai_timeout_s: PositiveFloat = Field(
        default=60.0, description="Seconds an upstream call may wait for its next byte."
    )
    openai_connect_timeout_s: PositiveFloat = Field(
        default=10.0, description="Seconds to open a connection upstream."
    )
    openai_http_client: UpstreamHttp = Field(
        default=UpstreamHttp.AIOHTTP,
        description=(
            "HTTP library under the SDK's upstream calls: aiohttp (the SDK's aiohttp "
            "transport, less CPU per call) or httpx (the SDK's default)."
        ),
    )
    upstream_retry_budget: Annotated[int, Field(ge=0)] = Field(
        default=2, description="Retries of an upstream call that failed before its first token."
    )
    upstream_retry_backoff_s: PositiveFloat = Field(
        default=0.5,
        description="First wait before such a retry; doubled each time (a Retry-After wins).",
    )
    fine_tuned_model: str = Field(
        default="gpt-4o-mini", description="Fine-tuned model that drafts the base story."
    )
    refine_model: str = Field(default="gpt-4o", description="Model that refines and extends.")
    mini_model: str = Field(
        default="gpt-4o-mini", description="Small model for titles and recommendations."
    )
    embedding_model: str = Field(
        default="text-embedding-3-small", description="Model for passage embeddings."
    )
    refine_background: bool = Field(
        default=True,
        description="Run refine with background=True so responses.cancel stops it upstream.",
    )
    refine_api: ModelApi = Field(
        default=ModelApi.AUTO,
        description=(
            "responses, chat, or auto: the Responses API where the server has it, else a "
            "streamed chat completion (llama.cpp before Responses, some proxies)."
        ),
    )
    structured_api: ModelApi = Field(
        default=ModelApi.AUTO,
        description=(
            "responses (text.format json_schema), chat (response_format json_schema, then "
            "json_object), or auto: what the server honours, learned on first use."
        ),
    )
    remote_conversations: bool = Field(
        default=False,
        description="Keep each thread's context in an OpenAI Conversation instead of our database.",
    )
    system_prompt: str = Field(
        default=DEFAULT_SYSTEM_PROMPT, min_length=1, description="System prompt for drafting."
    )
    offline_chars_per_second: PositiveFloat = Field(
        default=200.0, description="Pace at which the offline provider streams its text."
    )

    # --- search --------------------------------------------------------------------------------
    index_dir: Path = Field(default=Path("indexes"), description="Folder of built FAISS indexes.")
    index_name: str = Field(
        default="demo", pattern=r"^[A-Za-z0-9_-]+$", description="Index to load at start-up."
    )
    index_type: IndexType = Field(
        default=IndexType.FLAT, description="flat (exact, small corpora) or hnsw (large)."
    )
    search_threads: PositiveInt = Field(
        default=2, description="Worker threads that run FAISS searches off the event loop."
    )
    embedder: EmbedderKind = Field(
        default=EmbedderKind.HYBRID,
        description="hashing, e5 (bundled multilingual-e5-small), hybrid (both) or openai.",
    )
    hybrid_semantic_weight: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.7, description="Share of e5 in the hybrid embedder's score (the rest: hashing)."
    )
    embedding_dimensions: PositiveInt | None = Field(
        default=None, description="Vector size for the openai embedder; unset: the model's own."
    )
    embed_batch_size: PositiveInt = Field(
        default=64, description="Passages embedded per batch when building an index."
    )
    hnsw_m: PositiveInt = Field(default=32, description="HNSW links per vector.")
    hnsw_ef_construction: PositiveInt = Field(default=80, description="HNSW build breadth.")
    hnsw_ef_search: PositiveInt = Field(
        default=128, description="HNSW search breadth: higher finds more, slower (bench/README.md)."
    )
    max_query_chars: PositiveInt = Field(default=1000, description="Longest search query.")
    index_reload_interval_s: PositiveFloat = Field(
        default=5.0, description="How often the index files are checked for a rebuild to swap in."
    )

    # --- auth ----------------------------------------------------------------------------------
    auth_mode: AuthMode = Field(default=AuthMode.LOCAL, description="local, header or jwt.")
    local_user_id: str = Field(
        default="local", min_length=1, description="The one user of auth_mode=local."
    )
    gateway_secret: Secret | None = Field(
        default=None,
        description=(
            "auth_mode=header: the secret the gateway sends in gateway_secret_header. When set, "
            "a request without it is 401, so only the gateway can name a user."
        ),
    )
    gateway_secret_header: str = Field(
        default="X-Gateway-Secret",
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="The header that carries gateway_secret.",
    )
    jwt_secret: Secret | None = Field(
        default=None, description="HS256 secret, at least 32 bytes (auth_mode=jwt)."
    )
    jwt_public_key: str | None = Field(
        default=None, description="RS256 public key in PEM (auth_mode=jwt)."
    )
    jwt_jwks_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="URL of the identity provider's JWKS: RS256 keys looked up by the token's kid.",
    )
    jwt_issuer: str | None = Field(
        default=None, description="When set, a token's iss must equal it (and be present)."
    )
    jwt_audience: str | None = Field(
        default=None,
        description="When set, a token's aud must hold it; unset, aud is not checked.",
    )
    jwt_leeway_s: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Clock skew allowed when checking exp, nbf and iat."
    )
    jwt_admin_role: str = Field(
        default="admin",
        min_length=1,
        description="A token whose `roles` (list) or `role` claim holds this is an admin's: "
        "the feedback export then covers every user.",
    )

    cors_origins: list[str] = Field(
        default_factory=list,
        description='Browser origins allowed to call the API, as JSON: ["https://app.example"].',
    )
    cors_allow_credentials: bool = Field(
        default=False, description="Let browsers send cookies/authorization cross-origin."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, GET /metrics needs 'Authorization: Bearer <this>' (401 without).",
    )
    docs_enabled: bool = Field(
        default=True, description="Serve /docs, /redoc and /openapi.json (false: 404)."
    )

    # --- limits --------------------------------------------------------------------------------
    max_input_chars: PositiveInt = Field(default=4000, description="Longest user_input accepted.")
    max_comment_chars: PositiveInt = Field(
        default=2000, description="Longest comment accepted with an evaluation."
    )
    history_cursor_secret: Secret = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
        description=(
            "Key that signs history-list cursors, so a forged one is refused. Set the same value "
            "on every replica; unset, each process draws its own and cursors die with it."
        ),
    )
    max_body_bytes: PositiveInt = Field(default=256 * 1024, description="Largest request body.")
    body_read_timeout_s: PositiveFloat = Field(
        default=10.0,
        description="Seconds a request's body may take to arrive in full (408 past it).",
    )
    max_generation_seconds: PositiveFloat = Field(
        default=600.0, description="A generation is stopped (timeout) after this long."
    )
    max_output_chars: PositiveInt = Field(
        default=20000, description="A generation is stopped after writing this many characters."
    )
    max_running_per_user: PositiveInt = Field(
        default=3, description="Generations one user may run at once (429 past it)."
    )
    max_running_total: PositiveInt = Field(
        default=200, description="Generations one process runs at once (503 past it)."
    )
    cancel_on_disconnect: bool = Field(
        default=False, description="Cancel a generation when its client disconnects."
    )
    event_retention_s: PositiveFloat = Field(
        default=300.0,
        description="Seconds a finished generation's events stay replayable for a late resume.",
    )
    max_resume_streams_per_user: PositiveInt = Field(
        default=10,
        description="Resumed event streams one user may hold open on one process (429 past it).",
    )
    send_timeout_s: PositiveFloat = Field(
        default=30.0,
        description=(
            "Seconds a streamed answer (event streams, the feedback export) waits for its "
            "client to take more once the socket's buffers are full; then the client is "
            "dropped (a story goes on being written)."
        ),
    )
    max_analysis_chars: PositiveInt = Field(
        default=50_000, description="Longest text POST /api/analyze accepts (422 past it)."
    )
    analysis_chunk_chars: Annotated[int, Field(ge=500)] = Field(
        default=12_000,
        description=(
            "Characters of story the model reads per analysis call; longer texts are read in "
            "chunks of about this size and the partial analyses merged by one more call."
        ),
    )
    analysis_concurrency: PositiveInt = Field(
        default=4, description="Chunk analysis calls one request runs at once."
    )
    rate_limit: Annotated[str, AfterValidator(_rate_limit)] = Field(
        default="120/minute",
        description=(
            "Requests one user may make, as a moving window: '120/minute', '10/second;500/hour'. "
            "Past it: 429 with Retry-After. Counted in memory, or on redis_url when set."
        ),
    )

    # --- several replicas ----------------------------------------------------------------------
    redis_url: str | None = Field(
        default=None, description="Redis for cancels and replayable streams across replicas."
    )
    shutdown_timeout_s: PositiveFloat = Field(
        default=10.0, description="Seconds running streams get to finish on SIGTERM."
    )
    gc_freeze: bool = Field(
        default=True,
        description=(
            "After start-up, keep the objects built so far out of the garbage collector's "
            "scans (gc.freeze): with many streams open it otherwise rescans them all."
        ),
    )
    redis_prefix: str = Field(
        default="storytool",
        description="Prefix of every Redis key and channel, so deployments can share a Redis.",
    )
    instance_id: str | None = Field(
        default=None,
        max_length=64,
        description="This replica's id in conversations.owner_instance; random when unset.",
    )
    instance_lease_s: PositiveFloat = Field(
        default=15.0,
        description=(
            "A replica silent this long is taken for dead: its in-progress conversations "
            "become interrupted."
        ),
    )
    instance_heartbeat_s: PositiveFloat = Field(
        default=3.0,
        description="How often a replica renews its lease and looks for dead replicas' stories.",
    )
    cancel_wait_s: PositiveFloat = Field(
        default=10.0,
        description="How long a cancel waits for the owning task to save its text, at most.",
    )
    cancel_ack_timeout_s: PositiveFloat = Field(
        default=0.5,
        description="A cancel sent to another replica and not acknowledged in this time is resent.",
    )
    event_stream_maxlen: PositiveInt = Field(
        default=100_000, description="Events a conversation's Redis Stream keeps (about)."
    )

    @model_validator(mode="after")
    def _check_combinations(self) -> Self:
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ValueError(
                f"{ENV_PREFIX}CORS_ORIGINS may not hold '*' while "
                f"{ENV_PREFIX}CORS_ALLOW_CREDENTIALS is true: name the origins"
            )
        keys = [self.jwt_secret, self.jwt_public_key, self.jwt_jwks_url]
        if self.auth_mode is AuthMode.JWT and sum(bool(key) for key in keys) != 1:
            raise ValueError(
                f"{ENV_PREFIX}AUTH_MODE=jwt needs exactly one of {ENV_PREFIX}JWT_SECRET, "
                f"{ENV_PREFIX}JWT_PUBLIC_KEY or {ENV_PREFIX}JWT_JWKS_URL"
            )
        if self.llm_provider is LLMProvider.OPENAI and self.openai_api_key is None:
            if self.openai_base_url is None:
                raise ValueError(
                    f"{ENV_PREFIX}LLM_PROVIDER=openai needs {ENV_PREFIX}OPENAI_API_KEY "
                    f"or {ENV_PREFIX}OPENAI_BASE_URL"
                )
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'storytool.db').resolve()}"

    @property
    def effective_llm_provider(self) -> LLMProvider:
        if self.llm_provider is not None:
            return self.llm_provider
        return LLMProvider.OPENAI if self.openai_api_key else LLMProvider.OFFLINE

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


def describe_settings_error(error: ValidationError) -> str:
    """One line per wrong value, each naming the environment variable to fix."""
    lines = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"]).upper()
        where = f"{ENV_PREFIX}{name}" if name else "settings"
        lines.append(f"{where}: {item['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
