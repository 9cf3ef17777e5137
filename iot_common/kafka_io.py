"""Kafka helpers every service uses: waiting for Kafka, creating our topics, and
reading back what a topic already holds (assign() only: the group commits nothing)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from iot_common.topics import TopicSpec

log = logging.getLogger(__name__)

# A consumer that died leaves its group after this long (Kafka's 45 s default
# held every restart after a crash before its partitions came back).
SESSION_TIMEOUT_MS = 10_000


# librdkafka's own log lines, through Python's logging (so JSON like ours) instead of
# its stderr text; served by the client's poll()/consume() calls.
CLIENT_LOGGER = logging.getLogger("librdkafka")


def offsets_in_the_table(config: Mapping[str, object]) -> dict[str, object]:
    """Consumer settings of a job whose offsets live in the table it commits to:
    nothing auto-committed, the beginning when the table has no offset yet."""
    return {
        "logger": CLIENT_LOGGER,
        **config,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
    }


def records_of(batch: list[Message], topic: str) -> Iterator[Message]:
    """The records of a consume() batch: a fatal error raises (the job restarts
    and resumes from its table); others are logged and skipped (end of a
    partition silently); a message without partition or offset is skipped."""
    for msg in batch:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise KafkaException(err)
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("%s: %s", topic, err)
            continue
        if msg.partition() is None or msg.offset() is None:
            continue
        yield msg


def wait_for_kafka(bootstrap: str, timeout_s: float = 120.0) -> set[str]:
    """Block until Kafka answers (it may still be starting); return its topic names."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return set(admin.list_topics(timeout=5).topics)
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("Kafka at %s not reachable yet (%s); retrying", bootstrap, exc)
            time.sleep(1)


def ensure_topics(bootstrap: str, specs: list[TopicSpec], timeout_s: float = 120.0) -> None:
    """Create the topics that do not exist yet; wait for Kafka up to `timeout_s`."""
    existing = wait_for_kafka(bootstrap, timeout_s)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    missing = [s for s in specs if s.name not in existing]
    if not missing:
        return
    futures = admin.create_topics(
        [NewTopic(s.name, s.partitions, 1, config=s.config) for s in missing]
    )
    for name, fut in futures.items():
        try:
            fut.result()
            log.info("created Kafka topic %s", name)
        except KafkaException as exc:
            # Another process may have created it in the meantime.
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def _read_to_end(bootstrap: str, topic: str, last_n: int | None, group: str) -> Iterator[Message]:
    """The records of a topic up to its current end: all of it, or the last
    `last_n` of each partition (partition by partition, each in offset order).
    `group` names the reader in Kafka's tools; it never commits (assign() only)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        assignment = []
        remaining = set()
        for p in meta.partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, p))
            start = low if last_n is None else max(low, high - last_n)
            if high > start:
                assignment.append(TopicPartition(topic, p, start))
                remaining.add(p)
        if not assignment:
            return
        consumer.assign(assignment)
        while remaining:
            for msg in consumer.consume(num_messages=10_000, timeout=1.0):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(msg.partition())
                        continue
                    raise KafkaException(err)
                yield msg
    finally:
        consumer.close()


def read_partitions(
    bootstrap: str, topic: str, *, group: str, last_n: int | None = None
) -> Iterator[tuple[bytes | None, bytes | None]]:
    """Yield (key, value) of a topic up to its current end: all of it, or the
    last `last_n` records of each partition."""
    for msg in _read_to_end(bootstrap, topic, last_n, group):
        yield msg.key(), msg.value()


@dataclass(frozen=True, slots=True)
class TailRecord:
    timestamp_ms: int
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]


def read_all(bootstrap: str, topic: str, *, group: str) -> list[TailRecord]:
    """Every record of a topic up to its current end, in offset order per partition."""
    return list(_records(bootstrap, topic, None, group))


def _records(bootstrap: str, topic: str, last_n: int | None, group: str) -> Iterator[TailRecord]:
    for msg in _read_to_end(bootstrap, topic, last_n, group):
        partition, offset = msg.partition(), msg.offset()
        if partition is None or offset is None:
            continue
        raw_headers: list[tuple[str, object]] = list(msg.headers() or ())  # type: ignore[arg-type]
        headers = {k: v if isinstance(v, bytes) else None for k, v in raw_headers}
        yield TailRecord(msg.timestamp()[1], partition, offset, msg.key(), msg.value(), headers)


def read_tail(bootstrap: str, topic: str, last_n: int, *, group: str) -> list[TailRecord]:
    """The last `last_n` records of each partition, merged in time order (record
    timestamp, then partition and offset): the order in which one producer wrote
    them, so a bounded memory refilled from it forgets what it forgot before a
    restart, whatever the partitions' lengths."""
    records = list(_records(bootstrap, topic, last_n, group))
    records.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    return records


def _watermarks(consumer: Consumer, tp: TopicPartition, timeout_s: float = 60) -> tuple[int, int]:
    """Low and high offsets; a topic created a moment ago may have no leader yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            return int(low), int(high)
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise
            log.info("waiting for partition leaders of %s: %s", tp.topic, exc)
            time.sleep(0.5)


def consumer_lag(consumer: Consumer, done: Mapping[int, int] | None = None) -> int:
    """Records on the consumer's assigned partitions that are not done yet, from the
    client's own figures (no broker round trip): the high watermark of the last
    fetch minus `done[partition]` (the next offset a job still has to finish, e.g.
    to archive), else minus the consumer's position. -1 when the client cannot say."""
    try:
        positions = consumer.position(consumer.assignment())
        total = 0
        for tp in positions:
            marks = consumer.get_watermark_offsets(tp, cached=True)
            start = (done or {}).get(tp.partition, tp.offset)
            if marks is None or marks[1] < 0 or start < 0:
                continue  # nothing fetched from it yet
            total += max(0, int(marks[1]) - int(start))
        return total
    except KafkaException:
        return -1
