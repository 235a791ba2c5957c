"""An OTLP/HTTP trace receiver for tests: what an OpenTelemetry Collector's ``otlp``
receiver reads (protobuf on ``POST /v1/traces``, optionally gzipped), kept in memory.

A small HTTP server on 127.0.0.1 in a thread of the test process; processes under test
export to it through ``HEADWATER_OTLP_ENDPOINT`` (``endpoint``), as they would to the
collector of ``deploy/otel/``.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span with the resource and scope it came with."""

    service: str
    scope: str
    span: Span

    @property
    def name(self) -> str:
        return str(self.span.name)

    @property
    def trace_id(self) -> str:
        return bytes(self.span.trace_id).hex()

    @property
    def span_id(self) -> str:
        return bytes(self.span.span_id).hex()

    @property
    def parent_span_id(self) -> str:
        return bytes(self.span.parent_span_id).hex()

    def links(self) -> list[tuple[str, str, dict[str, str]]]:
        """(trace id, span id, string attributes) of each span link."""
        return [
            (
                bytes(link.trace_id).hex(),
                bytes(link.span_id).hex(),
                {a.key: a.value.string_value for a in link.attributes},
            )
            for link in self.span.links
        ]

    def attributes(self) -> dict[str, object]:
        values: dict[str, object] = {}
        for attribute in self.span.attributes:
            kind = attribute.value.WhichOneof("value")
            values[attribute.key] = getattr(attribute.value, kind) if kind else None
        return values


class OtlpReceiver(ThreadingHTTPServer):
    """Keeps every decoded export request with the content type it came with."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OtlpHandler)
        self.received: list[tuple[str, ExportTraceServiceRequest]] = []

    @property
    def endpoint(self) -> str:
        """The base URL to export to (``HEADWATER_OTLP_ENDPOINT``)."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in arrival order."""
        found: list[ReceivedSpan] = []
        for _, request in list(self.received):
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                service = resource.get("service.name", "")
                for scope_spans in resource_spans.scope_spans:
                    found.extend(
                        ReceivedSpan(service, scope_spans.scope.name, span)
                        for span in scope_spans.spans
                    )
        return found

    def wait_for(
        self, check: Callable[[list[ReceivedSpan]], bool], what: str, timeout_s: float = 30
    ) -> list[ReceivedSpan]:
        """Poll until ``check`` holds for the spans received; fail naming ``what``."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans()
            if check(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({(s.service, s.name) for s in spans})
                raise AssertionError(f"{what}: not received within {timeout_s}s; got {names}")
            time.sleep(0.1)


class _OtlpHandler(BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.received.append((self.headers.get("Content-Type", ""), request))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest shows failures, not access logs."""


@contextmanager
def running_receiver() -> Iterator[OtlpReceiver]:
    """An OTLP receiver serving in a thread until the context exits."""
    server = OtlpReceiver()
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
