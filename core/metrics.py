"""Prometheus metrics of every Headwater process, served on ``/metrics``.

The names here are a contract: dashboards and alerts under ``deploy/`` use them, and
``tests/deploy`` checks that they exist. Label values never carry document text.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_REQUEST_DURATION = Histogram(
    "headwater_http_request_duration_seconds",
    "API request latency, from the request to the last byte of the response.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TOKENS = Counter(
    "headwater_tokens_total",
    "Tokens the LLM servers reported, by tenant, department, key (credential id), model and kind.",
    ["tenant", "department", "key", "model", "kind"],
)
ROUTE_DECISIONS = Counter(
    "headwater_route_decisions_total", "Requests routed to each tier, and why.", ["tier", "reason"]
)
INGEST_EVENTS = Counter(
    "headwater_ingest_events_total",
    "Document events handled by the worker, by op and outcome.",
    ["op", "outcome"],
)
INGEST_CHUNKS = Counter("headwater_ingest_chunks_total", "Chunks embedded and written.")
INGEST_DLQ = Counter(
    "headwater_ingest_dlq_total", "Messages sent to the dead-letter topic.", ["error_type"]
)
INGEST_DLQ_SEND_FAILURES = Counter(
    "headwater_ingest_dlq_send_failures_total",
    "Sends to the dead-letter topic that failed (retried until one lands; the event's "
    "offset is not committed meanwhile).",
)
INGEST_CONSUMER_LAG = Gauge(
    "headwater_ingest_consumer_lag",
    "Messages not yet processed, per partition of the documents topic.",
    ["topic", "partition"],
)
INGEST_FRESHNESS = Histogram(
    "headwater_ingest_freshness_seconds",
    "From the publish of an event (Kafka timestamp) to it being searchable.",
    buckets=(0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

LLM_BACKEND_HEALTHY = Gauge(
    "headwater_llm_backend_healthy",
    "1 while a model server is believed healthy (passive failures, active /health checks).",
    ["tier", "backend"],
)
LLM_INFLIGHT = Gauge(
    "headwater_llm_inflight_requests",
    "Requests in flight to each model server.",
    ["tier", "backend"],
)
LLM_QUEUED = Gauge(
    "headwater_llm_queued_requests", "Requests waiting for a free model-server slot.", ["tier"]
)
LLM_QUEUE_REJECTED = Counter(
    "headwater_llm_queue_rejected_total",
    "Requests refused with 503 because a tier's queue was full or the wait timed out.",
    ["tier", "reason"],
)
LLM_ATTEMPTS = Counter(
    "headwater_llm_attempts_total",
    "Upstream attempts by tier and outcome (ok, retried on another replica, fell back, failed).",
    ["tier", "outcome"],
)
RATE_LIMITED = Counter(
    "headwater_rate_limited_total",
    "Requests refused with 429 by the per-key rate limit.",
    ["tenant"],
)
ROUTER_SCORE = Histogram(
    "headwater_router_score",
    "Scores of the model=auto router (large is chosen at or above the calibrated threshold).",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
)
FIREWALL_ACTIONS = Counter(
    "headwater_firewall_actions_total",
    "PII findings acted on by the prompt firewall, by direction, entity type and action.",
    ["direction", "entity", "action"],
)

FOLLOWER_STALENESS = Gauge(
    "headwater_follower_staleness_seconds",
    "Seconds since this process's follower of a topic was last caught up with it "
    "(-1 before it first was).",
    ["topic"],
)
FOLLOWER_ERRORS = Counter(
    "headwater_follower_errors_total",
    "Topic records a follower could not apply (skipped) and follower restarts, by kind.",
    ["topic", "kind"],
)

AUDIT_FAILURES = Counter(
    "headwater_audit_failures_total",
    "Audit records Kafka did not acknowledge (queued mode; logged with the reason).",
)

# Cost controls (api.cost, api.budgets).
COST = Counter(
    "headwater_cost_total",
    "What answers cost at the served model's price (HEADWATER_MODEL_PRICES), in the "
    "configured currency, by tenant, department and model.",
    ["tenant", "department", "model"],
)
COST_PER_REQUEST = Histogram(
    "headwater_cost_per_request",
    "The cost of each answered chat request (currency units).",
    buckets=(1e-6, 1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1),
)
GPU_SECONDS = Counter(
    "headwater_gpu_seconds_total",
    "Each answer's share of its model server's busy time (upstream time divided among the "
    "requests in flight on that replica), by tenant, department and model.",
    ["tenant", "department", "model"],
)
CACHE_REQUESTS = Counter(
    "headwater_cache_requests_total",
    "Answer-cache lookups by tenant and outcome (hit, semantic_hit, miss, bypass).",
    ["tenant", "outcome"],
)
CACHE_SAVED_TOKENS = Counter(
    "headwater_cache_saved_tokens_total",
    "Tokens the answers served from the cache took to make (not spent again), by tenant.",
    ["tenant"],
)
BUDGET_REFUSALS = Counter(
    "headwater_budget_refusals_total",
    "Requests refused with 429 budget_exceeded, by tenant and the scope of the budget.",
    ["tenant", "scope"],
)


# Query drift (retrieval.drift), per tenant; NaN until a tenant has a reference and a
# full window. The alert rule HeadwaterQueryDrift reads these.
DRIFT_QUERIES = Counter(
    "headwater_drift_queries_total", "Questions the drift monitor has seen.", ["tenant"]
)
DRIFT_QUERY_DISTANCE = Gauge(
    "headwater_drift_query_distance",
    "Cosine distance between the mean embedding of recent questions and the reference's.",
    ["tenant"],
)
DRIFT_SCORE_PSI = Gauge(
    "headwater_drift_score_psi",
    "Population stability index of recent top retrieval scores against the reference.",
    ["tenant"],
)
DRIFT_NO_ANSWER_RATE = Gauge(
    "headwater_drift_no_answer_rate",
    "Share of recent questions with nothing readable above the relevance floor.",
    ["tenant"],
)
DRIFT_NO_ANSWER_REFERENCE = Gauge(
    "headwater_drift_no_answer_reference_rate",
    "The same share over the reference questions.",
    ["tenant"],
)
DRIFT_PROBE_MIN_COSINE = Gauge(
    "headwater_drift_probe_min_cosine",
    "Lowest cosine between the embedding engine's vectors of the fixed probe set now and "
    "at start (1 = unchanged).",
)


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
