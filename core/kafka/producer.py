"""The idempotent producer: ``enable.idempotence=true`` and ``acks=all`` (ARCHITECTURE.md)."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from core.errors import UpstreamUnavailable

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class Delivered:
    """Where an acknowledged message landed."""

    topic: str
    partition: int
    offset: int


_DeliveryCallback = Callable[[str | None, Delivered | None], None]


def key_partition(key: bytes, partitions: int) -> int:
    """The partition librdkafka's default partitioner (``consistent_random``: CRC-32 of
    the key) gives ``key``: where every librdkafka producer (ours, kcat) sends it."""
    return zlib.crc32(key) % partitions


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
        self._partition_counts: dict[str, tuple[int, float]] = {}
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
        partition: int | None = None,
    ) -> None:
        """Queue one message; ``on_done(error, delivered)`` runs on the poll thread.
        ``partition`` None: the partitioner's choice (:func:`key_partition`)."""

        def callback(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                on_done(error.str(), None)
                return
            on_done(None, Delivered(topic, message.partition() or 0, message.offset() or 0))

        queue = functools.partial(
            self._producer.produce,
            topic,
            key=key,
            value=value,
            headers=list(headers),
            on_delivery=callback,
            # librdkafka's "unassigned": its partitioner picks.
            partition=-1 if partition is None else partition,
        )
        try:
            try:
                queue()
            except BufferError:  # the local queue is full: let deliveries drain, once
                self._producer.flush(5)
                queue()
        except KafkaException as exc:
            raise UpstreamUnavailable(f"Kafka refused the message: {exc}") from exc

    def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Headers = (),
        partition: int | None = None,
    ) -> Delivered:
        """Produce and block until acknowledged (raises ``UpstreamUnavailable`` if not)."""
        self._check_acknowledged()
        done = threading.Event()
        result: list[Delivered | str] = []

        def on_done(error: str | None, delivered: Delivered | None) -> None:
            result.append(delivered if delivered else error or "unknown error")
            done.set()

        self.produce(
            topic, key=key, value=value, headers=headers, on_done=on_done, partition=partition
        )
        done.wait()
        return _delivered_or_raise(result[0])

    async def send_async(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Headers = (),
        partition: int | None = None,
    ) -> Delivered:
        """Produce and await the acknowledgement without blocking the event loop."""
        return await self.send_nowait(
            topic, key=key, value=value, headers=headers, partition=partition
        )

    def send_nowait(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Headers = (),
        partition: int | None = None,
    ) -> asyncio.Future[Delivered]:
        """Queue the message now; the future resolves on its acknowledgement (or raises
        ``UpstreamUnavailable``). Call from the event loop."""
        self._check_acknowledged()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivered] = loop.create_future()

        def on_done(error: str | None, delivered: Delivered | None) -> None:
            outcome: Delivered | str = delivered if delivered else error or "unknown error"
            loop.call_soon_threadsafe(_settle, future, outcome)

        self.produce(
            topic, key=key, value=value, headers=headers, on_done=on_done, partition=partition
        )
        return future

    def _check_acknowledged(self) -> None:
        if self._errors_only:
            raise TypeError("an errors_only producer reports no acknowledgement to wait for")

    def partitions(self, topic: str, *, max_age_s: float = 60.0, timeout_s: float = 10.0) -> int:
        """How many partitions ``topic`` has (cached ``max_age_s``: partitions only grow,
        and a grown topic is seen within that). Blocks on the first call for a topic."""
        cached = self._partition_counts.get(topic)
        if cached is not None and time.monotonic() - cached[1] < max_age_s:
            return cached[0]
        try:
            metadata = self._producer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        except KafkaException as exc:
            raise UpstreamUnavailable(f"cannot read the partitions of {topic}: {exc}") from exc
        if metadata is None or metadata.error is not None or not metadata.partitions:
            problem = metadata.error if metadata is not None else "no metadata"
            raise UpstreamUnavailable(f"cannot read the partitions of {topic}: {problem}")
        count = len(metadata.partitions)
        self._partition_counts[topic] = (count, time.monotonic())
        return count

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
