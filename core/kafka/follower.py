"""Reading topics: the follower every long-lived reader uses, and bounded reads.

``TopicFollower`` reads every partition of a topic from the beginning in a background
thread, then follows it, and knows how far it has read: the group directory, the key
store and the usage ledger keep their own full view of a compacted or audit topic this
way (no consumer group: every process reads everything). ``read_to_end`` is the same
reading, bounded (the DLQ listing); ``read_records`` reads from a consumer group's
committed position, for tools that must remember how far they got (DLQ replay).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from core.errors import UpstreamUnavailable
from core.kafka.headers import header_pairs
from core.metrics import FOLLOWER_ERRORS, FOLLOWER_STALENESS

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One message read back from a topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    @classmethod
    def of(cls, message: Message) -> Record:
        return cls(
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            key=_as_bytes(message.key()),
            value=_as_bytes(message.value()),
            headers=dict(header_pairs(message.headers())),
        )


OnRecord = Callable[[bytes | None, bytes | None], object]


def _as_bytes(raw: object) -> bytes | None:
    return raw.encode() if isinstance(raw, str) else raw  # type: ignore[return-value]


def _unassigned_consumer(bootstrap: str) -> Consumer:
    # Assigned partitions, no consumer group: every process keeps its own full view.
    # Each fetch waits for 64 KiB or 100 ms, whichever first: every API process reads
    # every audit record, and with a fetch per few records following the topic cost
    # ~0.09 ms of CPU per answered request at concurrency 32, mostly fetches and thread
    # wake-ups (parsing a record takes ~4 us). A reader that waits for the follower
    # (a usage report, a revocation) may wait up to 100 ms longer.
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "fetch.min.bytes": 65536,
            "fetch.wait.max.ms": 100,
        }
    )


def _partitions(consumer: Consumer, topic: str, timeout_s: float) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise UpstreamUnavailable(f"topic {topic} is not available")
    return sorted(metadata.partitions)


class TopicFollower:
    """Reads every partition of ``topic`` from the beginning in a background thread, then
    follows it; after a failure of the consumer it starts over from the beginning
    (``on_record`` must be idempotent). ``positions`` are recorded only after
    ``on_record`` returned. A record that ``on_record`` raises on is counted
    (``headwater_follower_errors_total``) and skipped: one bad record never stops it.

    ``staleness_s`` says how long ago the follower last knew it had read everything the
    broker holds (``None`` before it first did): readers whose answers must not be stale
    (the group directory) refuse to serve past a bound."""

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
        self._caught_up_at: float | None = None
        FOLLOWER_STALENESS.labels(topic).set_function(self._staleness_metric)

    @property
    def topic(self) -> str:
        return self._topic

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._probe_lock:
            if self._probe is not None:
                self._probe.close()
                self._probe = None

    @property
    def alive(self) -> bool:
        """Whether the follower's thread runs."""
        return self._thread.is_alive()

    def staleness_s(self) -> float | None:
        """Seconds since the follower was last caught up: ``None`` before it first was,
        infinite once it has stopped (it will not catch up again)."""
        caught_up_at = self._caught_up_at
        if caught_up_at is None:
            return None
        if not self.alive:
            return math.inf
        return max(0.0, time.monotonic() - caught_up_at)

    def _staleness_metric(self) -> float:
        staleness = self.staleness_s()
        return -1.0 if staleness is None else staleness

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
                self._probe = _unassigned_consumer(self._bootstrap)
            try:
                return {
                    p: self._probe.get_watermark_offsets(
                        TopicPartition(self._topic, p), timeout=timeout_s, cached=False
                    )
                    for p in _partitions(self._probe, self._topic, timeout_s)
                }
            except KafkaException as exc:
                raise UpstreamUnavailable(f"cannot read the end of {self._topic}: {exc}") from exc

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception:  # noqa: BLE001 - logged; start over after a pause
                _log.exception("stopped following %s; starting over", self._topic)
                FOLLOWER_ERRORS.labels(self._topic, "restart").inc()
                self._stop.wait(self._retry_s)

    def _follow(self) -> None:
        consumer = _unassigned_consumer(self._bootstrap)
        try:
            partitions = _partitions(consumer, self._topic, self._timeout_s)
            consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in partitions])
            while not self._stop.is_set():
                # A batch ``consume`` waits out its whole timeout unless the batch fills:
                # every record waited up to 0.2 s more (revocation p50 0.15 s, max 0.8 s
                # across replicas). ``poll`` returns on the first record; what is already
                # fetched is drained without waiting (p50 0.05 s, max 0.15 s). Idle, it
                # still wakes up every 0.2 s.
                first = consumer.poll(0.2)
                messages = (
                    [first, *consumer.consume(num_messages=500, timeout=0)]
                    if first is not None  # not ``if first``: a tombstone's len() is 0
                    else []
                )
                for message in messages:
                    if not message.error():
                        self._apply(message)
                if not messages and self._at_end(consumer, partitions):
                    self._caught_up_at = time.monotonic()
        finally:
            consumer.close()

    def _apply(self, message: Message) -> None:
        partition, offset = message.partition() or 0, message.offset() or 0
        try:
            self._on_record(_as_bytes(message.key()), _as_bytes(message.value()))
        except Exception:  # noqa: BLE001 - one bad record never stops the follower
            # The record's content stays out of the log (it may hold personal data).
            _log.error(
                "skipped %s record at %s/%s: it could not be applied",
                self._topic,
                partition,
                offset,
            )
            FOLLOWER_ERRORS.labels(self._topic, "record").inc()
        with self._lock:
            if offset + 1 > self._positions.get(partition, 0):
                self._positions[partition] = offset + 1

    def _at_end(self, consumer: Consumer, partitions: list[int]) -> bool:
        """Whether every partition is read up to the high watermark of the last fetch
        (cached by the client: no request to the broker)."""
        positions = self.positions()
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(self._topic, p), cached=True)
            if high < 0 or (high > low and positions.get(p, 0) < high):
                return False
        return True


def read_to_end(bootstrap: str, *, topic: str, timeout_s: float = 10.0) -> Iterator[Record]:
    """Every record of ``topic`` from its beginning to its end as of the call (no group,
    nothing committed)."""
    consumer = _unassigned_consumer(bootstrap)
    try:
        ends = _ends(consumer, topic, timeout_s)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        while ends:
            message = consumer.poll(timeout_s)
            if message is None:
                raise UpstreamUnavailable(f"reading {topic} stalled before its end")
            if message.error():
                continue
            record = Record.of(message)
            if record.offset + 1 >= ends.get(record.partition, 0):
                ends.pop(record.partition, None)
            yield record
    finally:
        consumer.close()


def _ends(consumer: Consumer, topic: str, timeout_s: float) -> dict[int, int]:
    """The high watermark of each non-empty partition. A topic created a moment ago may
    not have its partition leaders yet: retried until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ends: dict[int, int] = {}
            for p in _partitions(consumer, topic, timeout_s):
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=timeout_s, cached=False
                )
                if high > low:
                    ends[p] = high
            return ends
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise UpstreamUnavailable(f"cannot read the end of {topic}: {exc}") from exc
            time.sleep(0.2)


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

            def commit_past(message: Message = message) -> None:
                if commit:
                    consumer.commit(message=message, asynchronous=False)

            yield Record.of(message), commit_past
    finally:
        consumer.close()
