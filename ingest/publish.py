"""The connector SDK: publish document events to Kafka inside a producer span."""

from __future__ import annotations

from opentelemetry import trace

from core.kafka import Delivered, KafkaProducer
from core.telemetry import inject_headers
from ingest.models import DocumentEvent

_tracer = trace.get_tracer("headwater.ingest")


class DocumentPublisher:
    """Sends document events keyed ``{tenant}/{doc_id}``, carrying ``traceparent``."""

    def __init__(self, producer: KafkaProducer, topic: str):
        self._producer = producer
        self._topic = topic

    def publish(self, event: DocumentEvent) -> Delivered:
        """Publish and wait for the broker's acknowledgement."""
        with _tracer.start_as_current_span(
            f"send {self._topic}", kind=trace.SpanKind.PRODUCER
        ) as span:
            _producer_attributes(span, self._topic, event)
            delivered = self._producer.send(
                self._topic, key=event.key.encode(), value=event.to_json(), headers=inject_headers()
            )
            _delivered_attributes(span, delivered)
            return delivered

    async def publish_async(self, event: DocumentEvent) -> Delivered:
        """As :meth:`publish`, without blocking the event loop."""
        with _tracer.start_as_current_span(
            f"send {self._topic}", kind=trace.SpanKind.PRODUCER
        ) as span:
            _producer_attributes(span, self._topic, event)
            delivered = await self._producer.send_async(
                self._topic, key=event.key.encode(), value=event.to_json(), headers=inject_headers()
            )
            _delivered_attributes(span, delivered)
            return delivered


def _producer_attributes(span: trace.Span, topic: str, event: DocumentEvent) -> None:
    span.set_attribute("messaging.system", "kafka")
    span.set_attribute("messaging.operation.type", "send")
    span.set_attribute("messaging.destination.name", topic)
    span.set_attribute("messaging.kafka.message.key", event.key)
    span.set_attribute("headwater.document.op", event.op)


def _delivered_attributes(span: trace.Span, delivered: Delivered) -> None:
    span.set_attribute("messaging.destination.partition.id", str(delivered.partition))
    span.set_attribute("messaging.kafka.offset", delivered.offset)
