"""OpenTelemetry setup and W3C trace-context propagation through Kafka headers."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from core.kafka.headers import header_pairs
from core.settings import Settings

KafkaHeaders = Sequence[tuple[str, bytes | None]]

_log = logging.getLogger(__name__)


def configure_tracing(
    settings: Settings, *, processors: Iterable[SpanProcessor] = ()
) -> TracerProvider:
    """Install (once per process) the SDK tracer provider and return it.

    A provider that is already installed (a test's in-memory exporter, or a second
    call) is reused: OpenTelemetry allows one global provider per process.
    """
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        provider = current
    else:
        provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
        trace.set_tracer_provider(provider)
    for processor in processors:
        provider.add_span_processor(processor)
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        _log.info("exporting traces over OTLP/HTTP to %s", endpoint)
    return provider


@contextmanager
def traced_process(settings: Settings) -> Iterator[TracerProvider]:
    """Tracing for a process or command of ours that does work (the worker, ``publish``,
    ``dlq replay``): configured on entry, its queued spans exported on exit (a command
    that exits at once would otherwise lose the batch it just made)."""
    provider = configure_tracing(settings)
    try:
        yield provider
    finally:
        provider.force_flush(timeout_millis=5000)


def configure_logging(settings: Settings) -> None:
    """Plain structured-ish logs on stderr; document text never goes here by default."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("aiokafka", "faust", "mode", "httpx", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.root.level))


def inject_headers() -> list[tuple[str, bytes]]:
    """The current trace context as Kafka headers (``traceparent``, ``tracestate``)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(key, value.encode()) for key, value in carrier.items()]


def extract_context(headers: KafkaHeaders | dict[str, bytes] | None) -> context.Context:
    """The producer's trace context from Kafka headers (an empty context if absent)."""
    carrier = {key: value.decode("latin-1") for key, value in header_pairs(headers)}
    return propagate.extract(carrier)
