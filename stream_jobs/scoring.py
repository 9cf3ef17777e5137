"""The quality job: iot.readings.1m + iot.readings.dlq -> a quality indicator per
sensor and minute (stream_jobs.quality, docs/quality.md), to Kafka
`iot.quality.1m` and the table `curated/sensor_quality_1m_revisions` (the view
curated.sensor_quality_1m keeps the newest revision), and each sensor's status
changes to the compacted topic `iot.quality.status`.

Its inputs are small: one record per sensor-minute from the 1-minute job (the
readings received, out of range and late, with revisions) and the dead letters
(the duplicates and the rejects). Figures come from the 1-minute emissions, so
the indicator and the 1-minute means cannot disagree. The expected count comes
from the sensor list (iot.sensors: `interval_ms` of a sensor's entry, else
EXPECTED_INTERVAL_MS), which also names the sensors whose silence is counted.

Restart-safe with the 1-minute job's protocol (stream_jobs.checkpoint): each
checkpoint writes the job's state (stream_jobs.quality.QualityState) to the lake
and commits the emissions since the last one to the table, together with the
next offset of every partition of both input topics and the state's name, in one
Iceberg commit. After a crash the job resumes from the state and offsets of the
last commit that landed: each 1-minute emission and each dead letter counts
exactly once in the table. Kafka emissions precede the commit (at least once):
a consumer keeps the highest revision per (sensor_id, window_start), and among
equal ones the latest emitted_at (a replay may emit a revision again with other
figures: the table holds the later). Status changes are published before the
commit too; after a restart every status is published again once the job has
caught up (the topic is compacted: the latest status of every sensor stays).
Minutes are closed by the wall clock, and silence judged, only once the job has
caught up with its inputs since it started.

One job for all sensors (its state is one document): with several stream-job
processes, one member runs it, the one the consumer group assigns partition 0 of
the dead-letter topic (its lease; the topic has one partition). That member claims
every partition of the 1-minute topic in the table (stream_jobs.checkpoint), then
restores the state and reads both inputs whole, from the table's offsets; the
others wait. When the lease moves (a member joins or leaves), the holder
checkpoints before the group hands it on; a holder killed leaves the table at its
last commit, and the next one resumes there. A holder whose checkpoint is refused
(Fenced: it stalled and the lease moved) drops its state and rejoins the group.

No record stops the job: one it cannot read is counted (`skipped`) and logged.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from pyiceberg.expressions import And, In

from iot_common.contract import TimeBounds, check_event_time, parse_dt, to_us
from iot_common.crashpoints import crash_point
from iot_common.errors import reason_code
from iot_common.kafka_io import ensure_topics, offsets_in_the_table, records_of
from iot_common.metrics import gauge
from iot_common.stats import Counters
from iot_common.topics import (
    dead_letters_spec,
    quality_1m_spec,
    quality_status_spec,
    readings_1m_spec,
)
from stream_jobs.checkpoint import Checkpoint
from stream_jobs.errors import Fenced
from stream_jobs.iceberg import IcebergTable, committed_offsets
from stream_jobs.quality import (
    CLOSE_AFTER_S,
    DUPLICATE,
    MINUTE_US,
    Cell,
    CellKey,
    Emission,
    QualityState,
    StatusChange,
    attribute,
    expected_per_minute,
)
from stream_jobs.records import received_us_of
from stream_jobs.resample import (
    KafkaHeaders,
    Producer,
    SensorEntries,
    header_dict,
    iso_us,
    latest_entries,
    produce,
)
from stream_jobs.tables import SENSOR_QUALITY_1M_REVISIONS, TS

log = logging.getLogger(__name__)

STATE_PARTITION = 0  # one state document for the whole job, named under this partition
LEASE_PARTITION = 0  # the member the group assigns this dead-letter partition runs the job
IDLE_COMMIT_S = 60.0  # a checkpoint with nothing new commits at most this often
LOGGED_SKIPS = 10  # unreadable records logged in full; then one a minute
LOAD_CHUNK = 500  # minutes a read-back scan names at most


def emission_json(e: Emission, emitted_at_us: int) -> bytes:
    """The Kafka message of one emission (contract iot.quality.1m)."""
    q = e.quality
    return orjson.dumps(
        {
            "sensor_id": e.sensor_id,
            "window_start": iso_us(e.minute_us),
            "window_end": iso_us(e.minute_us + MINUTE_US),
            "expected": q.expected,
            "received": q.received,
            "valid": q.valid,
            "out_of_range": q.out_of_range,
            "duplicates": q.duplicates,
            "late": q.late,
            "rejected": q.rejected,
            "score": q.score,
            "revision": e.revision,
            "emitted_at": iso_us(emitted_at_us),
        }
    )


def status_json(c: StatusChange, changed_at_us: int) -> bytes:
    """The Kafka message of one status change (contract iot.quality.status)."""
    return orjson.dumps(
        {
            "sensor_id": c.sensor_id,
            "status": c.status,
            "previous": c.previous,
            "recent_score": c.recent_score,
            "last_reading_at": None if c.last_reading_us is None else iso_us(c.last_reading_us),
            "changed_at": iso_us(changed_at_us),
        }
    )


def emissions_table(emits: list[Emission], emitted_at_us: int) -> pa.Table:
    start = pa.array([e.minute_us for e in emits], pa.int64())
    qs = [e.quality for e in emits]
    return pa.table(
        {
            "sensor_id": pa.array([e.sensor_id for e in emits], pa.string()),
            "window_start": start.cast(TS),
            "window_end": pc.add(start, MINUTE_US).cast(TS),
            "expected": pa.array([q.expected for q in qs], pa.float64()),
            "received": pa.array([q.received for q in qs], pa.int64()),
            "valid": pa.array([q.valid for q in qs], pa.int64()),
            "out_of_range": pa.array([q.out_of_range for q in qs], pa.int64()),
            "duplicates": pa.array([q.duplicates for q in qs], pa.int64()),
            "late": pa.array([q.late for q in qs], pa.int64()),
            "rejected": pa.array([q.rejected for q in qs], pa.int64()),
            "score": pa.array([q.score for q in qs], pa.float64()),
            "revision": pa.array([e.revision for e in emits], pa.int32()),
            "emitted_at": pa.array([emitted_at_us] * len(emits), pa.int64()).cast(TS),
            "window_date": start.cast(TS).cast(pa.date32()),
        },
        schema=SENSOR_QUALITY_1M_REVISIONS.table_schema,
    )


def interval_of(value: bytes) -> float | None:
    """`interval_ms` of a sensors.json entry (an optional key), or None."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    ms = doc.get("interval_ms") if isinstance(doc, dict) else None
    if isinstance(ms, bool) or not isinstance(ms, int | float):
        return None
    try:
        return float(ms) if math.isfinite(ms) and ms > 0 else None
    except OverflowError:
        return None


class SensorList:
    """The sensors of the compacted topic iot.sensors (read whole by `read`) and
    how many readings a minute each is expected to send."""

    def __init__(self, read: SensorEntries, default_interval_ms: float) -> None:
        self.read, self.default_interval_ms = read, default_interval_ms
        self.intervals: dict[str, float | None] = {}

    def refresh(self) -> None:
        intervals = {}
        for key, value in latest_entries(self.read).items():
            try:
                sid = key.decode()
            except UnicodeDecodeError:
                continue  # not a sensor a reading can name
            intervals[sid] = interval_of(value)
        self.intervals = intervals

    @property
    def known(self) -> list[str]:
        return sorted(self.intervals)

    def expected(self, sensor_id: str) -> float:
        interval = self.intervals.get(sensor_id) or self.default_interval_ms
        return expected_per_minute(interval)


@dataclass
class QualityStats(Counters):
    minutes_in: int = 0  # 1-minute emissions read
    dead_letters_in: int = 0
    unattributed: int = 0  # dead letters naming no sensor
    emitted: int = 0  # quality emissions (revisions included)
    status_changes: int = 0
    checkpoints: int = 0
    skipped: int = 0  # records that could not be read (logged)
    leading: int = gauge("1 while this process runs the job (one member of the group does)")


class QualityJob:
    """Receives its table, its Kafka clients and the sensor list, so that it runs
    without Kafka in the unit tests."""

    def __init__(
        self,
        table: IcebergTable,
        *,
        consumer_config: Mapping[str, object],
        make_consumer: Callable[[dict[str, object]], Consumer] = Consumer,
        producer: Producer,
        sensors: SensorList,
        minutes_topic: str,
        dlq_topic: str,
        out_topic: str,
        status_topic: str,
        commit_s: float,
        bounds: TimeBounds,
    ) -> None:
        self.table = table
        self.minutes_topic, self.dlq_topic = minutes_topic, dlq_topic
        self.out_topic, self.status_topic = out_topic, status_topic
        self.commit_s, self.bounds = commit_s, bounds
        self.sensors = sensors
        self._consumer_config = offsets_in_the_table(consumer_config)
        self._make_consumer = make_consumer
        self._producer = producer
        self.checkpoints = Checkpoint(table, minutes_topic)
        self.state = QualityState()
        self._next: dict[str, dict[int, int]] = {minutes_topic: {}, dlq_topic: {}}
        self._changed = False  # records applied since the last commit
        self._started = time.monotonic()
        self._caught_up = False  # a consume since the start found nothing new
        self._restate = False  # publish every status at the next closing checkpoint
        self._last_commit = 0.0
        self._last_skip_log = 0.0
        self._leading = False  # this member holds the lease: it reads, scores and commits
        self.recovered = threading.Event()  # set once the group answered (lease or not)
        self.stats = QualityStats()

    # read back a sensor-minute that left the state -----------------------------------

    def load(self, keys: list[CellKey]) -> dict[CellKey, Cell]:
        """The newest revision the table holds of each sensor-minute, in one scan
        (sensor-minutes touched again after they left the job's state)."""
        # The exact minutes (not the span between the oldest and the newest: one
        # dead letter dated long ago would widen it to all history), in chunks.
        among: Any = In  # pyiceberg's pydantic signatures confuse mypy (as iceberg.equal)
        sensors = sorted({k[0] for k in keys})
        minutes = sorted({iso_us(k[1]) for k in keys})
        parts = []
        for i in range(0, len(minutes), LOAD_CHUNK):
            row_filter = And(
                among("sensor_id", sensors), among("window_start", minutes[i : i + LOAD_CHUNK])
            )
            try:
                parts.append(self.table.table.scan(row_filter=row_filter).to_arrow())
            except OSError:  # files of an expired snapshot: read the current one
                parts.append(self.table.refresh().scan(row_filter=row_filter).to_arrow())
        rows = pa.concat_tables(parts)
        wanted, found = set(keys), {}
        for row in rows.sort_by([("revision", "ascending")]).to_pylist():
            start = row["window_start"]
            key = (row["sensor_id"], to_us(start))
            if key in wanted:
                # Its 1-minute revision is not kept: the next 1-minute emission
                # replaces the reading counts (they are whole figures, not increments).
                found[key] = Cell(
                    count=row["valid"],
                    out_of_range=row["out_of_range"],
                    late=row["late"],
                    duplicates=row["duplicates"],
                    rejected=row["rejected"],
                    revision=row["revision"],
                )
        return found

    # records ----------------------------------------------------------------------

    def apply(
        self,
        topic: str,
        partition: int,
        offset: int,
        value: bytes | None,
        headers: KafkaHeaders,
        timestamp_ms: int,
    ) -> None:
        """One record of either input. Raises only if the lake fails."""
        done = self._next[topic]
        if offset < done.get(partition, 0):
            return  # applied before the last checkpoint
        done[partition] = offset + 1
        self._changed = True
        try:
            if topic == self.minutes_topic:
                self._apply_minute(value or b"")
            else:
                self._apply_dead_letter(value or b"", headers, timestamp_ms)
        except OSError:
            raise  # the lake, not the record: restart, replay from the checkpoint
        except Exception:  # one record never stops the job
            self.stats.skipped += 1
            now = time.monotonic()
            if self.stats.skipped <= LOGGED_SKIPS or now - self._last_skip_log >= 60:
                self._last_skip_log = now
                log.exception(
                    "quality: %s[%d]@%d skipped (%d so far)",
                    topic,
                    partition,
                    offset,
                    self.stats.skipped,
                )

    def _apply_minute(self, value: bytes) -> None:
        doc = orjson.loads(value)
        sensor_id = doc["sensor_id"]
        if not isinstance(sensor_id, str):
            raise ValueError(f"sensor_id is {type(sensor_id).__name__}")
        figures = {k: doc[k] for k in ("count", "out_of_range_count", "revision")}
        # absent in emissions from before it existed (a topic's older records)
        figures["late_count"] = doc.get("late_count", 0)
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**31
            for v in figures.values()
        ):
            raise ValueError(f"figures are not counts: {figures}")
        start = parse_dt(doc["window_start"])
        # A time the tables and the topics can hold (a record of another producer
        # could say year 9999): checked here, skipped, not failing the checkpoint.
        check_event_time(start, time.time_ns() // 1000, self.bounds)
        self.state.apply_minute(
            sensor_id,
            start,
            count=figures["count"],
            out_of_range=figures["out_of_range_count"],
            late=figures["late_count"],
            revision=figures["revision"],
        )
        self.stats.minutes_in += 1

    def _apply_dead_letter(self, value: bytes, headers: KafkaHeaders, timestamp_ms: int) -> None:
        found = header_dict(headers)
        self.stats.dead_letters_in += 1
        received_us = received_us_of(found, timestamp_ms)
        target = attribute(value, received_us, self.bounds)
        if target is None:
            self.stats.unattributed += 1
            return
        reason = found.get("reason", b"").decode("utf-8", "replace")
        self.state.apply_dead_letter(*target, duplicate=reason_code(reason) == DUPLICATE)

    # checkpoints -----------------------------------------------------------------

    def checkpoint(self, now_us: int | None = None) -> None:
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        known = self.sensors.known
        # The wall clock closes minutes and judges silence only once the job has
        # caught up with its inputs since it started (and the 1-minute job had as
        # long as a minute's closing takes to rejoin): a restart does not report
        # every sensor silent for the minutes it was away.
        close = self._caught_up and time.monotonic() - self._started >= CLOSE_AFTER_S
        emits = self.state.take(now_us, known, self.sensors.expected, self.load, close=close)
        changes = []
        if close:
            changes = self.state.status_changes(now_us, known, self.sensors.expected)
            if self._restate:
                # After a restart, every status again: one published before a crash
                # may have been undone by the recovered state (the topic is compacted).
                changed = {c.sensor_id for c in changes}
                changes += [
                    StatusChange(sid, st, st, None, self.state.last_reading_us.get(sid))
                    for sid, st in sorted(self.state.statuses.items())
                    if sid not in changed
                ]
                self._restate = False
        for e in emits:
            produce(
                self._producer,
                self.out_topic,
                key=e.sensor_id.encode(),
                value=emission_json(e, now_us),
            )
        for c in changes:
            produce(
                self._producer,
                self.status_topic,
                key=c.sensor_id.encode(),
                value=status_json(c, now_us),
            )
            log.info("quality: %s is %s (was %s)", c.sensor_id, c.status, c.previous)
        if self._producer.flush(30):
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "quality not confirmed"))
        if emits or changes:
            crash_point("quality.emitted")
        self.stats.emitted += len(emits)
        self.stats.status_changes += len(changes)
        idle = time.monotonic() - self._last_commit < IDLE_COMMIT_S
        if not (emits or changes or self._changed) and idle:
            return
        self.state.prune(now_us, known)
        files = self.table.write(emissions_table(emits, now_us)) if emits else []
        self.checkpoints.commit(
            files,
            self._next[self.minutes_topic],
            states={STATE_PARTITION: self.state.snapshot()},
            other_offsets={self.dlq_topic: self._next[self.dlq_topic]},
        )
        self._changed = False
        self._last_commit = time.monotonic()
        self.stats.checkpoints += 1

    def recover(self, consumer: Consumer) -> None:
        """Claims the table, restores the state and assigns every partition of both
        inputs at the table's offsets."""
        partitions = {
            topic: sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
            for topic in (self.minutes_topic, self.dlq_topic)
        }
        # Every partition of the 1-minute topic: a checkpoint commits the offsets of
        # them all (those of the dead letters with them, in the same commit).
        properties = self.checkpoints.claim({STATE_PARTITION, *partitions[self.minutes_topic]})
        recovered = self.checkpoints.recover(STATE_PARTITION, properties)
        self.state = QualityState.restore(recovered.state) if recovered.state else QualityState()
        assignment = []
        for topic in (self.minutes_topic, self.dlq_topic):
            committed = committed_offsets(properties, topic)
            self._next[topic] = dict(committed)
            for p in partitions[topic]:
                assignment.append(TopicPartition(topic, p, committed.get(p, OFFSET_BEGINNING)))
        # In the group's rebalance callback, an assignment of more than the group gave
        # (the lease): the group's revocation unassigns it all (unassign()).
        consumer.assign(assignment)
        self._last_commit = self._started = time.monotonic()
        self._caught_up, self._restate = False, True
        self.recovered.set()
        log.info("quality: reading %s", [(tp.topic, tp.partition, tp.offset) for tp in assignment])

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if any(tp.partition == LEASE_PARTITION for tp in partitions):
            self.recover(consumer)
            self._leading = True
        else:  # another member runs the job: this one reads nothing
            consumer.assign([])
            self.recovered.set()
        self.stats.leading = int(self._leading)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._leading:
            self.checkpoint()  # before the group hands the lease on
        self._drop()
        consumer.unassign()

    def _drop(self) -> None:
        """Not the job's member any more: its state and claims are forgotten (the next
        one restores them from the table)."""
        self._leading = False
        self.stats.leading = 0
        self.state = QualityState()
        self._next = {self.minutes_topic: {}, self.dlq_topic: {}}
        self._changed = False
        self.checkpoints.forget_all()

    def run(self, stop: threading.Event) -> None:
        if not self.table.wait_ready(stop):
            return
        bootstrap = str(self._consumer_config["bootstrap.servers"])
        ensure_topics(
            bootstrap,
            [
                readings_1m_spec(self.minutes_topic),
                dead_letters_spec(self.dlq_topic),
                quality_1m_spec(self.out_topic),
                quality_status_spec(self.status_topic),
            ],
        )
        self.sensors.refresh()
        while not stop.is_set():
            consumer = self._make_consumer(self._consumer_config)
            # The lease: the member assigned its partition runs the job (_on_assign).
            consumer.subscribe(
                [self.dlq_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
            )
            try:
                self._consume(consumer, stop)
            except Fenced as exc:
                log.warning("quality: %s; rejoining the group", exc)
                self._drop()
            finally:
                consumer.close()

    def _consume(self, consumer: Consumer, stop: threading.Event) -> None:
        last_commit = last_sensors = time.monotonic()
        while not stop.is_set():
            batch = consumer.consume(num_messages=10_000, timeout=0.2)
            self._caught_up = self._caught_up or not batch
            for msg in records_of(batch, "quality inputs"):
                self.apply(
                    msg.topic(),  # type: ignore[arg-type]
                    msg.partition(),  # type: ignore[arg-type]  # records_of: never None
                    msg.offset(),  # type: ignore[arg-type]
                    msg.value(),
                    msg.headers(),
                    msg.timestamp()[1],
                )
            now = time.monotonic()
            if now - last_sensors >= 30:
                self.sensors.refresh()
                last_sensors = now
            if now - last_commit >= self.commit_s and self._leading:
                self.checkpoint()
                last_commit = now
        if self._leading:
            self.checkpoint()
