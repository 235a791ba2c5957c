"""Kafka adapter of the usage ledger: follows a topic from its beginning and knows how far
it has read, so a report can wait until it has seen every acknowledged record.

``ingest.kafka.follow_topic`` hands over keys and values only; a report that must
include the caller's own last request needs positions and the topic's end offsets too.
The only module of ``api`` that imports ``confluent_kafka``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from core.errors import UpstreamUnavailable

_log = logging.getLogger(__name__)

OnRecord = Callable[[bytes | None, bytes | None], object]


def _consumer(bootstrap: str) -> Consumer:
    # Assigned partitions, no consumer group: every process keeps its own full view.
    # Each fetch waits for 64 KiB or 100 ms, whichever first: every API process reads
    # every record, and with a fetch per few records following the topic cost ~0.09 ms
    # of CPU per answered request at concurrency 32, mostly fetches and thread wake-ups
    # (parsing a record takes ~4 us). A usage report waits for the follower, so it may
    # take up to 100 ms longer.
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "fetch.min.bytes": 65536,
            "fetch.wait.max.ms": 100,
        }
    )


def _as_bytes(raw: object) -> bytes | None:
    return raw.encode() if isinstance(raw, str) else raw  # type: ignore[return-value]


class TopicFollower:
    """Reads every partition of ``topic`` from the beginning in a background thread, then
    follows it; after a failure it starts over from the beginning (``on_record`` must be
    idempotent). ``positions`` are recorded only after ``on_record`` returned."""

    def __init__(
        self,
        bootstrap: str,
        *,
        topic: str,
        on_record: OnRecord,
        retry_s: float = 2.0,
        timeout_s: float = 10.0,
    ):
        self._bootstrap = bootstrap
        self._topic = topic
        self._on_record = on_record
        self._retry_s = retry_s
        self._timeout_s = timeout_s
        self._positions: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"follow-{topic}", daemon=True)
        self._probe: Consumer | None = None
        self._probe_lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._probe_lock:
            if self._probe is not None:
                self._probe.close()
                self._probe = None

    def positions(self) -> dict[int, int]:
        """Per partition, the offset after the last record handed to ``on_record``."""
        with self._lock:
            return dict(self._positions)

    def end_offsets(self, timeout_s: float) -> dict[int, tuple[int, int]]:
        """Per partition, the (low, high) watermarks now: every acknowledged record of the
        topic lies below ``high``. Blocking; raises ``UpstreamUnavailable``."""
        with self._probe_lock:
            if self._stop.is_set():
                raise UpstreamUnavailable(f"no longer following {self._topic}")
            if self._probe is None:
                self._probe = _consumer(self._bootstrap)
            try:
                partitions = self._partitions(self._probe, timeout_s)
                return {
                    p: self._probe.get_watermark_offsets(
                        TopicPartition(self._topic, p), timeout=timeout_s, cached=False
                    )
                    for p in partitions
                }
            except KafkaException as exc:
                raise UpstreamUnavailable(f"cannot read the end of {self._topic}: {exc}") from exc

    def _partitions(self, consumer: Consumer, timeout_s: float) -> list[int]:
        metadata = consumer.list_topics(self._topic, timeout=timeout_s).topics.get(self._topic)
        if metadata is None or metadata.error is not None:
            raise UpstreamUnavailable(f"topic {self._topic} is not available")
        return sorted(metadata.partitions)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception:  # noqa: BLE001 - logged; start over after a pause
                _log.exception("stopped following %s; starting over", self._topic)
                self._stop.wait(self._retry_s)

    def _follow(self) -> None:
        consumer = _consumer(self._bootstrap)
        try:
            partitions = self._partitions(consumer, self._timeout_s)
            consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in partitions])
            while not self._stop.is_set():
                for message in consumer.consume(num_messages=500, timeout=0.2):
                    if message.error():
                        continue
                    self._on_record(_as_bytes(message.key()), _as_bytes(message.value()))
                    partition, offset = message.partition() or 0, message.offset() or 0
                    with self._lock:
                        if offset + 1 > self._positions.get(partition, 0):
                            self._positions[partition] = offset + 1
        finally:
            consumer.close()
