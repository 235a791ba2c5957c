"""A trace leaves a process over OTLP/HTTP the way core.telemetry exports it, and arrives
as the collector's OTLP receiver reads it (protobuf on POST /v1/traces).

The receiver (tests/otlp_receiver.py) is a small HTTP server on 127.0.0.1 started by the
test. The test builds its own TracerProvider: the session's global one (tests/conftest.py)
stays untouched.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from core.settings import Settings
from tests.otlp_receiver import OtlpReceiver, running_receiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with running_receiver() as server:
        yield server


def test_spans_reach_an_otlp_http_receiver_with_parentage_and_resource(
    receiver: OtlpReceiver,
) -> None:
    settings = Settings(otlp_endpoint=f"http://127.0.0.1:{receiver.server_address[1]}/")
    # As core.telemetry.configure_tracing builds it from HEADWATER_OTLP_ENDPOINT.
    assert settings.otlp_endpoint is not None
    endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": "headwater-api"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=10))
    )
    tracer = provider.get_tracer("tests.deploy")
    try:
        with (
            tracer.start_as_current_span("POST /v1/search"),
            tracer.start_as_current_span(
                "retrieval headwater_chunks", attributes={"db.system.name": "qdrant"}
            ),
        ):
            pass
    finally:
        provider.shutdown()

    assert receiver.received, "nothing was exported"
    assert {content_type for content_type, _ in receiver.received} == {"application/x-protobuf"}
    spans = {}
    for _, request in receiver.received:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert resource["service.name"] == "headwater-api"
            for scope_spans in resource_spans.scope_spans:
                assert scope_spans.scope.name == "tests.deploy"
                spans.update({span.name: span for span in scope_spans.spans})
    parent, child = spans["POST /v1/search"], spans["retrieval headwater_chunks"]
    assert child.trace_id == parent.trace_id
    assert child.parent_span_id == parent.span_id
    assert not parent.parent_span_id
    attributes = {a.key: a.value.string_value for a in child.attributes}
    assert attributes == {"db.system.name": "qdrant"}
