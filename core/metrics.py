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
    "Tokens the LLM servers reported, by tenant, department, model and kind.",
    ["tenant", "department", "model", "kind"],
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


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
