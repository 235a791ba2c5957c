"""KafkaProducer.produce when librdkafka's local queue is full or refuses: the retry
after a drain, and the error a caller sees (the librdkafka client is stubbed: no broker)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from core.errors import UpstreamUnavailable
from core.kafka.producer import KafkaProducer


class QueueStub:
    """Stands in for confluent_kafka.Producer: raises the queued failures in turn."""

    def __init__(self, *failures: BaseException):
        self.failures = list(failures)
        self.queued: list[dict[str, Any]] = []
        self.flushes = 0

    def produce(self, topic: str, **kwargs: Any) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.queued.append({"topic": topic, **kwargs})

    def flush(self, _timeout: float = 0) -> int:
        self.flushes += 1
        return 0

    def poll(self, _timeout: float = 0) -> int:
        return 0


@pytest.fixture
def producer() -> Any:
    made = KafkaProducer("127.0.0.1:1")
    real = made._producer
    yield made
    made._producer = real
    made.close()


def _produce(producer: KafkaProducer, partition: int | None = None) -> None:
    producer.produce("t", key=b"k", value=b"v", on_done=lambda *_: None, partition=partition)


def test_a_full_queue_is_drained_then_the_message_queued_once(producer: KafkaProducer) -> None:
    stub = QueueStub(BufferError("queue full"))
    producer._producer = stub  # type: ignore[assignment]
    _produce(producer, partition=2)
    assert stub.flushes == 1
    assert [(q["topic"], q["key"], q["partition"]) for q in stub.queued] == [("t", b"k", 2)]


def test_still_full_after_the_drain_raises(producer: KafkaProducer) -> None:
    producer._producer = QueueStub(BufferError("full"), BufferError("still full"))  # type: ignore[assignment]
    with pytest.raises(BufferError):
        _produce(producer)


@pytest.mark.parametrize("full_first", [False, True])
def test_a_refusal_is_upstream_unavailable(producer: KafkaProducer, full_first: bool) -> None:
    refused = KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC))
    failures = [BufferError("full"), refused] if full_first else [refused]
    producer._producer = QueueStub(*failures)  # type: ignore[assignment]
    with pytest.raises(UpstreamUnavailable, match="Kafka refused"):
        _produce(producer)


def test_no_partition_lets_the_partitioner_pick(producer: KafkaProducer) -> None:
    stub = QueueStub()
    producer._producer = stub  # type: ignore[assignment]
    _produce(producer)
    assert stub.queued[0]["partition"] == -1
