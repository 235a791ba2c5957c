"""Kafka adapter on confluent-kafka: an idempotent producer and the topic admin.

The only module of ours that imports ``confluent_kafka``. Producers use
``enable.idempotence=true`` and ``acks=all`` (ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from core.errors import UpstreamUnavailable
from core.settings import Settings

_log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class Delivered:
    """Where an acknowledged message landed."""

    topic: str
    partition: int
    offset: int


_DeliveryCallback = Callable[[str | None, Delivered | None], None]


def producer_config(
    bootstrap: str,
    *,
    linger_ms: int = 0,
    errors_only: bool = False,
    message_timeout_ms: int = 30000,
) -> dict[str, str | int | bool]:
    """``linger_ms`` 0 by default: an audit record or an HTTP-ingested document waits for
    its acknowledgement on a request's path (messages still batch while one is in flight).
    ``errors_only``: delivery callbacks run for failed messages alone (fire-and-forget
    producers, whose successes nobody waits for)."""
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": linger_ms,
        "message.timeout.ms": message_timeout_ms,
        "delivery.report.only.error": errors_only,
        "client.id": "headwater",
    }


class KafkaProducer:
    """An idempotent producer. ``send`` (sync) and ``send_async`` return once the broker
    has acknowledged the message, so a caller never reports a send it did not see land.
    With ``errors_only`` it only ``produce``s: no acknowledgement is reported to wait for."""

    def __init__(
        self,
        bootstrap: str,
        *,
        linger_ms: int = 0,
        errors_only: bool = False,
        message_timeout_ms: int = 30000,
    ):
        self._errors_only = errors_only
        self._producer = Producer(
            producer_config(
                bootstrap,
                linger_ms=linger_ms,
                errors_only=errors_only,
                message_timeout_ms=message_timeout_ms,
            )
        )
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-producer-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        # poll() returns as soon as a delivery report arrives; the timeout only bounds how
        # often an idle producer wakes this thread (and takes the GIL from the API's loop).
        while not self._stop.is_set():
            self._producer.poll(0.5)

    def produce(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Headers = (),
        on_done: _DeliveryCallback,
    ) -> None:
        """Queue one message; ``on_done(error, delivered)`` runs on the poll thread."""

        def callback(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                on_done(error.str(), None)
                return
            on_done(None, Delivered(topic, message.partition() or 0, message.offset() or 0))

        try:
            self._producer.produce(
                topic, key=key, value=value, headers=list(headers), on_delivery=callback
            )
        except BufferError:
            self._producer.flush(5)
            self._producer.produce(
                topic, key=key, value=value, headers=list(headers), on_delivery=callback
            )
        except KafkaException as exc:
            raise UpstreamUnavailable(f"Kafka refused the message: {exc}") from exc

    def send(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: Headers = ()
    ) -> Delivered:
        """Produce and block until acknowledged (raises ``UpstreamUnavailable`` if not)."""
        self._check_acknowledged()
        done = threading.Event()
        result: list[Delivered | str] = []

        def on_done(error: str | None, delivered: Delivered | None) -> None:
            result.append(delivered if delivered else error or "unknown error")
            done.set()

        self.produce(topic, key=key, value=value, headers=headers, on_done=on_done)
        done.wait()
        return _delivered_or_raise(result[0])

    async def send_async(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: Headers = ()
    ) -> Delivered:
        """Produce and await the acknowledgement without blocking the event loop."""
        return await self.send_nowait(topic, key=key, value=value, headers=headers)

    def send_nowait(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: Headers = ()
    ) -> asyncio.Future[Delivered]:
        """Queue the message now; the future resolves on its acknowledgement (or raises
        ``UpstreamUnavailable``). Call from the event loop."""
        self._check_acknowledged()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivered] = loop.create_future()

        def on_done(error: str | None, delivered: Delivered | None) -> None:
            outcome: Delivered | str = delivered if delivered else error or "unknown error"
            loop.call_soon_threadsafe(_settle, future, outcome)

        self.produce(topic, key=key, value=value, headers=headers, on_done=on_done)
        return future

    def _check_acknowledged(self) -> None:
        if self._errors_only:
            raise TypeError("an errors_only producer reports no acknowledgement to wait for")

    def reachable(self, timeout_s: float = 2.0) -> bool:
        """True when the cluster answers a metadata request."""
        try:
            self._producer.list_topics(timeout=timeout_s)
        except KafkaException:
            return False
        return True

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for queued messages; returns how many are still undelivered."""
        return int(self._producer.flush(timeout_s))

    def close(self) -> None:
        self.flush()
        self._stop.set()
        self._poller.join(timeout=5)
        # Drop the client so librdkafka's handle (and its reconnect loop) goes now.
        del self._producer


def _settle(future: asyncio.Future[Delivered], outcome: Delivered | str) -> None:
    if future.done():
        return
    if isinstance(outcome, str):
        future.set_exception(
            UpstreamUnavailable(f"Kafka did not acknowledge the message: {outcome}")
        )
    else:
        future.set_result(outcome)


def _delivered_or_raise(outcome: Delivered | str) -> Delivered:
    if isinstance(outcome, str):
        raise UpstreamUnavailable(f"Kafka did not acknowledge the message: {outcome}")
    return outcome


@dataclass(frozen=True)
class Record:
    """One message read back from a topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def read_records(
    bootstrap: str,
    *,
    topic: str,
    group: str,
    commit: bool,
    idle_timeout_s: float = 3.0,
) -> Iterator[tuple[Record, Callable[[], None]]]:
    """Read ``topic`` from ``group``'s committed position (the start if none) until no
    message arrives for ``idle_timeout_s``. Each record comes with a function that
    commits past it (a no-op unless ``commit``)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    try:
        while True:
            message = consumer.poll(idle_timeout_s)
            if message is None:
                return
            if message.error():
                raise UpstreamUnavailable(f"reading {topic} failed: {message.error()}")
            record = Record(
                partition=message.partition() or 0,
                offset=message.offset() or 0,
                key=message.key(),
                value=message.value(),
                headers=_header_dict(message.headers()),
            )

            def commit_past(message: Message = message) -> None:
                if commit:
                    consumer.commit(message=message, asynchronous=False)

            yield record, commit_past
    finally:
        consumer.close()


def follow_topic(
    bootstrap: str,
    *,
    topic: str,
    on_record: Callable[[bytes | None, bytes | None], None],
    stop: threading.Event,
    timeout_s: float = 10.0,
) -> None:
    """Read every partition of ``topic`` from the beginning, then follow it until ``stop``
    is set; no consumer group (every process keeps its own full view)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise UpstreamUnavailable(f"topic {topic} is not available")
        consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(metadata.partitions)]
        )
        while not stop.is_set():
            message = consumer.poll(0.5)  # returns at once when a record arrives
            if message is None or message.error():
                continue
            value = message.value()
            key = message.key()
            on_record(
                key.encode() if isinstance(key, str) else key,
                value.encode() if isinstance(value, str) else value,
            )
    finally:
        consumer.close()


def _header_dict(raw: object) -> dict[str, bytes]:
    pairs = raw.items() if isinstance(raw, dict) else (raw or [])
    return {
        str(key): value.encode() if isinstance(value, str) else bytes(value or b"")
        for key, value in pairs  # type: ignore[attr-defined]
    }


class ConsumerLag:
    """Reads ``group``'s lag on ``topic`` through one long-lived consumer that never joins
    the group (a reporter that polls every few seconds keeps one connection, not one per
    reading). Not for concurrent use."""

    def __init__(self, bootstrap: str, *, group: str, topic: str):
        self._topic = topic
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )

    def read(self, timeout_s: float = 5.0) -> dict[int, int]:
        """Messages not yet committed by the group, per partition."""
        topic = self._topic
        try:
            metadata = self._consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
            if metadata is None or metadata.error is not None:
                return {}
            partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
            lag: dict[int, int] = {}
            for position in self._consumer.committed(partitions, timeout=timeout_s):
                low, high = self._consumer.get_watermark_offsets(position, timeout=timeout_s)
                start = position.offset if position.offset >= 0 else low
                lag[position.partition] = max(0, high - start)
            return lag
        except KafkaException as exc:
            raise UpstreamUnavailable(f"cannot read consumer lag: {exc}") from exc

    def close(self) -> None:
        self._consumer.close()


def consumer_lag(
    bootstrap: str, *, group: str, topic: str, timeout_s: float = 5.0
) -> dict[int, int]:
    """Messages not yet committed by ``group``, per partition of ``topic`` (one reading)."""
    probe = ConsumerLag(bootstrap, group=group, topic=topic)
    try:
        return probe.read(timeout_s)
    finally:
        probe.close()


def ensure_topics(settings: Settings, *, timeout_s: float = 30.0) -> list[str]:
    """Create the topics of ARCHITECTURE.md that do not exist yet; returns those created."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    wanted = {
        settings.documents_topic: {"retention.ms": str(settings.documents_retention_ms)},
        settings.dlq_topic: {"retention.ms": str(settings.dlq_retention_ms)},
        settings.principals_topic: {"cleanup.policy": "compact"},
        settings.audit_topic: {"retention.ms": str(settings.audit_retention_ms)},
    }
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise UpstreamUnavailable(
            f"Kafka at {settings.kafka_bootstrap} is not reachable: {exc}"
        ) from exc
    missing = [
        NewTopic(
            name,
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication,
            config=config,
        )
        for name, config in wanted.items()
        if name not in existing
    ]
    created: list[str] = []
    for name, future in (admin.create_topics(missing) if missing else {}).items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    if created:
        _log.info("created topics %s", created)
    return created
