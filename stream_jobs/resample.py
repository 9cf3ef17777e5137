"""The 1-minute job: iot.readings -> per-sensor 1-minute figures, to Kafka and the lake.

Windowing is stream_jobs.windows (pure); this is its I/O. Each emission goes to
the Kafka topic `iot.readings.1m` (JSON, keyed by sensor id) and to the table
`curated/readings_1m_revisions` (the view curated.readings_1m keeps the newest
revision of each window).

Restart-safe, with the archive's protocol (stream_jobs.iceberg): the table is
the checkpoint. Per Kafka partition, a checkpoint writes the open windows to a
state file in the lake (`_state/readings_1m_revisions/<topic>+<p>/`), then commits
the emissions since the last one to the table together with the next input
offset and the name of that state file (table properties). After a crash the
windows are restored from the state file the table names and the input is read
again from its offset: every reading is in its window exactly once. State files
and emission files of a commit that did not land are never read (the state files
are deleted at recovery, the data files by maintenance). Windows that closed before
are read back from the table if a late reading corrects them. Emissions reach Kafka
before the commit (at least once): a consumer that sees one twice sees the same
(sensor_id, window_start, revision). A checkpoint with nothing to emit commits
only once a minute: until then a restart replays a little more input instead.

Several processes may run the job in one consumer group, each the partitions the
group assigns it. The windows of a sensor live in one partition's state: the
bridge keys readings by sensor id, so all of a sensor's readings are in one
partition (the same partitioner for every producer of the topic: librdkafka's
default). On assignment the job claims its partitions in the table before it
restores their windows (stream_jobs.checkpoint); on revocation it checkpoints them
before the group hands them on. A member whose checkpoint is refused (Fenced: it
stalled and lost its partitions) drops its windows and rejoins the group; the new
owner resumes from the table, so the table counts every reading once. Its
emissions of that checkpoint were sent to Kafka already: the new owner may send
them again (at least once, as after a crash).

The windows' clock is event time capped by ingestion time (docs/resampling.md,
"Watermark policy"): each reading moves it no further than its dt and its receive
time (the bridge's `received_at` header, else the Kafka record time), both capped
at the job's wall clock plus the contract's max-ahead.
Late readings are applied at once but emitted at the next checkpoint, one
revision per corrected window (MinuteWindows.take_corrections); a replay after a
crash applies them again onto the last durable revision read from the table.

No record stops the job: an invalid one is counted (`skipped_invalid`; the
archive job dead-letters it) and any other failure on one record is logged and
counted (`errors`). Failures of the lake or Kafka themselves still stop it, so
that the restart replays from the checkpoint instead of losing a reading.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from pyiceberg.expressions import And

from iot_common.contract import TimeBounds, parse_reading
from iot_common.crashpoints import crash_point
from iot_common.errors import InvalidReading
from iot_common.kafka_io import consumer_lag, ensure_topics, offsets_in_the_table, records_of
from iot_common.metrics import gauge
from iot_common.stats import Counters
from iot_common.topics import readings_1m_spec
from stream_jobs.checkpoint import Checkpoint
from stream_jobs.errors import Fenced
from stream_jobs.iceberg import IcebergTable, equal
from stream_jobs.quality import LATE_AFTER_S
from stream_jobs.records import received_us_of
from stream_jobs.tables import READINGS_1M_REVISIONS, TS
from stream_jobs.windows import MINUTE_US, Agg, Emit, Key, MinuteWindows

log = logging.getLogger(__name__)

LATE_AFTER_US = int(LATE_AFTER_S * 1_000_000)  # received this long after dt: late (quality)

SPEC = READINGS_1M_REVISIONS
# As confluent-kafka returns them: a list of (name, value) pairs, or None.
HeaderValue = str | bytes | None
KafkaHeaders = list[tuple[str, HeaderValue]] | dict[str, HeaderValue] | None
LOGGED_ERRORS = 10  # record failures logged in full; then one a minute
IDLE_COMMIT_S = 60.0  # a checkpoint with nothing to emit commits at most this often


def header_dict(headers: KafkaHeaders) -> dict[str, bytes]:
    """A record's headers as Kafka gives them, by name, as bytes: of a repeated name
    the last wins (as in the archive's dict()); a header without a value is absent."""
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    return {
        name: raw.encode() if isinstance(raw, str) else raw
        for name, raw in pairs
        if raw is not None
    }


def record_received_us(headers: KafkaHeaders, timestamp_ms: int) -> int:
    """When the platform received a record (stream_jobs.tables.received_us_of)."""
    return received_us_of(header_dict(headers), timestamp_ms)


SensorEntries = Callable[[], Iterable[tuple[bytes | None, bytes | None]]]


def latest_entries(read: SensorEntries) -> dict[bytes, bytes]:
    """The entries of a compacted topic that `read` yields whole: the last value of
    each key; a key whose last value is a tombstone (removed) is absent."""
    entries: dict[bytes, bytes | None] = {}
    for key, value in read():
        if key is not None:
            entries[key] = value
    return {key: value for key, value in entries.items() if value is not None}


def iso_us(us: int) -> str:
    """µs since the epoch as naive UTC ISO-8601 with microseconds (our messages' times)."""
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def emit_json(e: Emit, emitted_at_us: int) -> bytes:
    """The Kafka message of one emission (documented in docs/resampling.md)."""
    a = e.agg
    return orjson.dumps(
        {
            "sensor_id": e.sensor_id,
            "window_start": iso_us(e.window_start_us),
            "window_end": iso_us(e.window_end_us),
            "mean": a.mean,
            "min": a.min,
            "max": a.max,
            "count": a.count,
            "out_of_range_count": a.out_of_range_count,
            "late_count": a.late_count,
            "sum": a.sum,
            "revision": a.revision,
            "emitted_at": iso_us(emitted_at_us),
        }
    )


def emits_table(emits: list[Emit], emitted_at_us: int) -> pa.Table:
    start = pa.array([e.window_start_us for e in emits], pa.int64())
    return pa.table(
        {
            "sensor_id": pa.array([e.sensor_id for e in emits], pa.string()),
            "window_start": start.cast(TS),
            "window_end": pc.add(start, MINUTE_US).cast(TS),
            "mean": pa.array([e.agg.mean for e in emits], pa.float64()),
            "min": pa.array([e.agg.min for e in emits], pa.float64()),
            "max": pa.array([e.agg.max for e in emits], pa.float64()),
            "count": pa.array([e.agg.count for e in emits], pa.int64()),
            "out_of_range_count": pa.array([e.agg.out_of_range_count for e in emits], pa.int64()),
            "late_count": pa.array([e.agg.late_count for e in emits], pa.int64()),
            "sum": pa.array([e.agg.sum for e in emits], pa.float64()),
            "revision": pa.array([e.agg.revision for e in emits], pa.int32()),
            "emitted_at": pa.array([emitted_at_us] * len(emits), pa.int64()).cast(TS),
            "window_date": start.cast(TS).cast(pa.date32()),
        }
    )


def range_of(value: bytes) -> tuple[float, float] | None:
    """The [min, max] range of a sensors.json entry, or None if it has none usable."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    bounds = doc.get("range") if isinstance(doc, dict) else None
    if not isinstance(bounds, list) or len(bounds) != 2:
        return None
    if not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds):
        return None
    try:
        lo, hi = float(bounds[0]), float(bounds[1])
    except OverflowError:  # an integer beyond float
        return None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        return None
    return lo, hi


class SensorRanges:
    """Valid range of each sensor, from the compacted topic iot.sensors, which
    `read` yields whole as (key, value) pairs (stream_jobs.app: read_partitions)."""

    def __init__(self, read: SensorEntries, topic: str) -> None:
        self.read, self.topic = read, topic
        self.ranges: dict[str, tuple[float, float]] = {}
        self.refreshed = 0.0
        self._warned: set[bytes] = set()  # keys already logged as unusable

    def refresh(self) -> None:
        """Read the topic again. An entry that is not usable (a key that is not
        UTF-8, a value that is not a JSON object with a [min, max] range of two
        numbers) is skipped, logged once per key: its sensor has no known range.
        Only Kafka failing raises."""
        ranges = {}
        for key, value in latest_entries(self.read).items():
            try:
                sid = key.decode()
            except UnicodeDecodeError:
                self._skip(key, "its key is not UTF-8")
                continue
            bounds = range_of(value)
            if bounds is None:
                self._skip(key, "no JSON object with a range [min, max] of two numbers")
                continue
            ranges[sid] = bounds
        self.ranges = ranges
        self.refreshed = time.monotonic()

    def _skip(self, key: bytes, why: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("1m: %s entry %r skipped (%s): no range for it", self.topic, key, why)

    def in_range(self, sensor_id: str, value: float) -> bool:
        bounds = self.ranges.get(sensor_id)
        if bounds is None and time.monotonic() - self.refreshed > 2:
            self.refresh()  # a sensor we do not know yet: the list may have grown
            bounds = self.ranges.get(sensor_id)
        return bounds is None or bounds[0] <= value <= bounds[1]


@dataclass
class MinuteStats(Counters):
    readings: int = 0
    late: int = 0  # readings whose window had closed: corrections to come
    emitted: int = 0
    corrections: int = 0
    checkpoints: int = 0
    skipped_invalid: int = 0  # break the contract: the archive dead-letters them
    errors: int = 0  # records that failed otherwise (logged), skipped
    lag: int = gauge("readings in Kafka not read into a window yet (-1: unknown)")


class Producer(Protocol):
    """What the job needs of a Kafka producer (confluent_kafka.Producer)."""

    def produce(self, topic: str, *, key: bytes, value: bytes) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...


def produce(producer: Producer, topic: str, *, key: bytes, value: bytes) -> None:
    """Hand one record to the producer; when its queue is full (a checkpoint with
    more emissions than the queue holds, as after a replay), wait for deliveries
    to make room instead of failing."""
    while True:
        try:
            producer.produce(topic, key=key, value=value)
            return
        except BufferError:
            producer.poll(0.1)


@dataclass(frozen=True)
class WindowPolicy:
    """When windows close and how often the job checkpoints (docs/resampling.md)."""

    lateness_s: float  # a window closes this long after its end, in event time
    commit_s: float  # emissions and checkpoints every this often
    idle_s: float  # a partition silent this long follows the wall clock


class MinuteJob:
    """The job: receives its table, its Kafka clients' configuration and producer,
    and the sensor ranges, so that it runs without Kafka in the unit tests."""

    def __init__(
        self,
        table: IcebergTable,
        *,
        consumer_config: Mapping[str, object],
        make_consumer: Callable[[dict[str, object]], Consumer] = Consumer,
        producer: Producer,
        ranges: SensorRanges,
        readings_topic: str,
        out_topic: str,
        policy: WindowPolicy,
        bounds: TimeBounds,
        max_payload_bytes: int,
    ) -> None:
        self.table, self.lake = table, table.lake
        self.readings_topic, self.out_topic = readings_topic, out_topic
        self.lateness_us = int(policy.lateness_s * 1e6)
        self.commit_s, self.idle_s = policy.commit_s, policy.idle_s
        self.bounds = bounds  # the contract's event-time bounds (settings.time_bounds())
        self.max_payload_bytes = max_payload_bytes  # the contract's size limit, as the bridge's
        self.ranges = ranges
        # Offsets live in the table (its commits), never in the consumer group.
        self._consumer_config = offsets_in_the_table(consumer_config)
        self._make_consumer = make_consumer  # Kafka's Consumer; a fake in the unit tests
        self._producer = producer
        self.windows: dict[int, MinuteWindows] = {}
        self._next: dict[int, int] = {}  # next input offset to apply, per partition
        self._first: dict[int, int] = {}  # first input offset since the last checkpoint
        self._pending: dict[int, list[Emit]] = {}
        self._last_seen: dict[int, float] = {}
        self.checkpoints = Checkpoint(table, readings_topic)  # offsets and state, in the table
        self._last_commit: dict[int, float] = {}
        self.recovered = threading.Event()
        self.stats = MinuteStats()
        self._last_error_log = 0.0

    # closed windows come back from the lake -------------------------------------------

    def load_closed(self, key: Key) -> Agg | None:
        sensor_id, start_us = key
        start = datetime.fromtimestamp(start_us / 1e6, UTC).replace(tzinfo=None)
        row_filter = And(
            equal("sensor_id", sensor_id),
            equal("window_start", start.isoformat(timespec="microseconds")),
        )
        try:
            table = self.table.table.scan(row_filter=row_filter).to_arrow()
        except OSError:  # files of an expired snapshot: read the table's current one
            table = self.table.refresh().scan(row_filter=row_filter).to_arrow()
        if table.num_rows == 0:
            return None
        row = table.sort_by([("revision", "descending")]).slice(0, 1).to_pylist()[0]
        return Agg(
            count=row["count"],
            sum=row["sum"],
            min=row["min"],
            max=row["max"],
            out_of_range_count=row["out_of_range_count"],
            late_count=row.get("late_count") or 0,  # null in rows from before the column
            revision=row["revision"],
        )

    # checkpoints -------------------------------------------------------------------

    def recover(self, partition: int, properties: Mapping[str, str]) -> int | None:
        """Windows and next offset as the table's last commit left them (state files
        of commits that did not land are deleted by the checkpoint)."""
        windows = MinuteWindows(self.lateness_us, load_closed=self.load_closed)
        self.windows[partition] = windows
        self._last_seen[partition] = time.monotonic()  # not idle before reading anything
        self._last_commit[partition] = time.monotonic()
        recovered = self.checkpoints.recover(partition, properties)
        if recovered.state is not None:
            # A checkpoint of the former event-time clock: capped like a receive time.
            windows.restore(recovered.state["windows"], clock_cap_us=self._max_clock_us())
        return recovered.next_offset

    def _max_clock_us(self) -> int:
        """No receive time counts beyond this: a forged one cannot drag the clock."""
        return time.time_ns() // 1000 + self.bounds.max_ahead_us

    def checkpoint(self, partition: int) -> None:
        # Corrections first: the state written below must have none left over.
        windows = self.windows.get(partition)
        corrections = windows.take_corrections() if windows is not None else []
        if corrections:
            self._first.setdefault(partition, self._next.get(partition, 0))
            self._queue(partition, corrections)
        if partition not in self._first:
            return  # nothing read since the last one
        emits = self._pending.pop(partition, [])
        first, last = self._first.pop(partition), self._next[partition] - 1
        now_us = time.time_ns() // 1000
        for e in emits:
            produce(
                self._producer, self.out_topic, key=e.sensor_id.encode(), value=emit_json(e, now_us)
            )
        if self._producer.flush(30):
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "1m emissions not confirmed"))
        if emits:
            crash_point("minute.emitted")
        if not emits and time.monotonic() - self._last_commit.get(partition, 0.0) < IDLE_COMMIT_S:
            # Nothing to emit: the table keeps its older checkpoint; a restart
            # replays from there, which ends in the same windows.
            self._first.setdefault(partition, first)
            return
        doc = {
            "topic": self.readings_topic,
            "partition": partition,
            "next_offset": last + 1,
            "windows": self.windows[partition].snapshot(),
        }
        files = self.table.write(emits_table(emits, now_us)) if emits else []
        self.checkpoints.commit(files, {partition: last + 1}, states={partition: doc})
        self._last_commit[partition] = time.monotonic()
        self.stats.checkpoints += 1

    # the loop ----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Claimed first: what is read after the claim no former owner changes.
        properties = self.checkpoints.claim([tp.partition for tp in partitions])
        for tp in partitions:
            next_offset = self.recover(tp.partition, properties)
            tp.offset = OFFSET_BEGINNING if next_offset is None else next_offset
            if next_offset is not None:
                self._next[tp.partition] = next_offset
        consumer.assign(partitions)
        self.recovered.set()
        log.info(
            "1m: reading %s partitions %s",
            self.readings_topic,
            [(tp.partition, tp.offset) for tp in partitions],
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.checkpoint(tp.partition)
            # Whatever the checkpoint left uncommitted (it may keep the table's older
            # one) is read again from there by whoever gets the partition: forget it
            # all, or a stale `_first` outlives `_next` (a KeyError after a rebalance).
            for progress in (self.windows, self._next, self._first, self._pending):
                progress.pop(tp.partition, None)
            self._last_seen.pop(tp.partition, None)
            self._last_commit.pop(tp.partition, None)
            self.checkpoints.forget(tp.partition)
        consumer.unassign()

    def _drop(self) -> None:
        """Forget every partition (windows, progress, pending emissions): after a
        Fenced checkpoint another member owns them and resumes from the table."""
        for progress in (
            self.windows,
            self._next,
            self._first,
            self._pending,
            self._last_seen,
            self._last_commit,
        ):
            progress.clear()
        self.checkpoints.forget_all()

    def apply(
        self,
        partition: int,
        offset: int,
        value: bytes | None,
        headers: KafkaHeaders,
        timestamp_ms: int,
    ) -> None:
        """One record of iot.readings (`headers` and `timestamp_ms` as Kafka gives
        them: they carry its receive time). Raises only if the lake or Kafka fail."""
        expected = self._next.get(partition)
        if expected is not None and offset < expected:
            return  # applied before the last checkpoint
        self._first.setdefault(partition, offset)
        self._next[partition] = offset + 1
        self._last_seen[partition] = time.monotonic()
        try:
            received_us = record_received_us(headers, timestamp_ms)
            payload = value or b""
            # The bridge's verdict, reached again: same contract, same receive time.
            r = parse_reading(
                payload, self.max_payload_bytes, received_us=received_us, bounds=self.bounds
            )
            windows = self.windows[partition]
            late = windows.late
            emits = windows.add(
                r.sensor_id,
                r.ts_us,
                r.value,
                self.ranges.in_range(r.sensor_id, r.value),
                # A reading moves the clock no further than its event time and its
                # receive time (docs/resampling.md, watermark policy).
                min(r.ts_us, received_us, self._max_clock_us()),
                late=received_us - r.ts_us > LATE_AFTER_US,
            )
        except InvalidReading:
            self.stats.skipped_invalid += 1
            return
        except (OSError, KafkaException):
            raise  # the lake or Kafka, not the record: restart, replay from the checkpoint
        except Exception:
            self.stats.errors += 1
            now = time.monotonic()
            if self.stats.errors <= LOGGED_ERRORS or now - self._last_error_log >= 60:
                self._last_error_log = now
                log.exception(
                    "1m: %s[%d]@%d skipped (%d records failed so far)",
                    self.readings_topic,
                    partition,
                    offset,
                    self.stats.errors,
                )
            return
        self.stats.readings += 1
        self.stats.late += windows.late - late
        self._queue(partition, emits)

    def _queue(self, partition: int, emits: list[Emit]) -> None:
        self._pending.setdefault(partition, []).extend(emits)
        self.stats.emitted += len(emits)
        self.stats.corrections += sum(1 for e in emits if e.agg.revision > 1)

    def tick(self) -> None:
        """Partitions silent for idle_s: their clock follows the wall clock (the
        time base of receive times)."""
        now = time.monotonic()
        wall_us = time.time_ns() // 1000
        for partition, windows in self.windows.items():
            if now - self._last_seen.get(partition, 0.0) >= self.idle_s and windows.open:
                emits = windows.advance(wall_us)
                if emits:
                    self._first.setdefault(partition, self._next.get(partition, 0))
                    self._queue(partition, emits)

    def run(self, stop: threading.Event) -> None:
        if not self.table.wait_ready(stop):
            return
        bootstrap = str(self._consumer_config["bootstrap.servers"])
        ensure_topics(bootstrap, [readings_1m_spec(self.out_topic)])
        self.ranges.refresh()
        while not stop.is_set():
            consumer = self._make_consumer(self._consumer_config)
            consumer.subscribe(
                [self.readings_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
            )
            try:
                self._consume(consumer, stop)
            except Fenced as exc:
                # Its partitions are another member's (it stalled past the group's
                # session timeout): rejoin with a new consumer, from the table.
                log.warning("1m: %s; rejoining the group", exc)
                self._drop()
            finally:
                consumer.close()

    def _consume(self, consumer: Consumer, stop: threading.Event) -> None:
        last_commit = last_ranges = time.monotonic()
        lag_at = 0.0
        while not stop.is_set():
            batch = consumer.consume(num_messages=10_000, timeout=0.2)
            for msg in records_of(batch, self.readings_topic):
                self.apply(
                    msg.partition(),  # type: ignore[arg-type]  # records_of: never None
                    msg.offset(),  # type: ignore[arg-type]
                    msg.value(),
                    msg.headers(),
                    msg.timestamp()[1],
                )
            self.tick()
            now = time.monotonic()
            if now - lag_at >= 1.0:
                self.stats.lag = consumer_lag(consumer)
                lag_at = now
            if now - last_commit >= self.commit_s:
                for partition in list(self.windows):
                    self.checkpoint(partition)
                last_commit = now
            if now - last_ranges >= 30:
                self.ranges.refresh()
                last_ranges = now
        for partition in list(self.windows):
            self.checkpoint(partition)
