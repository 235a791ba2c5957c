"""Session-wide test setup: one in-memory span exporter for the whole run.

OpenTelemetry allows one global tracer provider per process, so it is installed
here once; ``configure_tracing`` in the code under test reuses it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_EXPORTER = InMemorySpanExporter()
_provider = TracerProvider(resource=Resource.create({"service.name": "headwater-tests"}))
_provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
trace.set_tracer_provider(_provider)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The in-memory exporter, emptied before the test."""
    _EXPORTER.clear()
    yield _EXPORTER
