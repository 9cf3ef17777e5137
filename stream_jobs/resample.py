"""The 1-minute job: iot.readings -> per-sensor 1-minute figures, to Kafka and the lake.

Windowing is stream_jobs.windows (pure); this is its I/O. Each emission goes to
the Kafka topic `iot.readings.1m` (JSON, keyed by sensor id) and to the table
`curated/readings_1m_revisions` (the view curated.readings_1m keeps the newest
revision of each window).

Restart-safe, with the archive's protocol: per Kafka partition a checkpoint in
the lake holds the next input offset *and the open windows*; emissions since
the last checkpoint are written as a file marked pending in the checkpoint,
then the checkpoint moves on. After a crash the pending file is deleted and
the windows are restored as of the checkpoint, then the input is read again
from its offset: every reading is in its window exactly once. Windows that
closed before are durable in the lake and are read back if a late reading
corrects them. Emissions reach Kafka before the checkpoint (at least once): a
consumer that sees one twice sees the same (sensor_id, window_start, revision).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from mqtt_bridge.contract import parse_reading
from mqtt_bridge.errors import InvalidReading
from mqtt_bridge.kafka_io import TopicSpec, ensure_topics, read_partitions
from stream_jobs.archive import (
    checkpoint_name,
    parquet_bytes,
    resume_at_checkpoints,
    split_by_partition,
)
from stream_jobs.lake import Lake
from stream_jobs.tables import READINGS_1M_REVISIONS, TS, TableSpec
from stream_jobs.windows import MINUTE_US, Agg, Emit, Key, MinuteWindows

log = logging.getLogger(__name__)

SPEC = READINGS_1M_REVISIONS


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def emit_json(e: Emit, emitted_at_us: int) -> bytes:
    """The Kafka message of one emission (documented in docs/resampling.md)."""
    a = e.agg
    return orjson.dumps(
        {
            "sensor_id": e.sensor_id,
            "window_start": _iso(e.window_start_us),
            "window_end": _iso(e.window_end_us),
            "mean": a.mean,
            "min": a.min,
            "max": a.max,
            "count": a.count,
            "out_of_range_count": a.out_of_range_count,
            "sum": a.sum,
            "revision": a.revision,
            "emitted_at": _iso(emitted_at_us),
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
            "sum": pa.array([e.agg.sum for e in emits], pa.float64()),
            "revision": pa.array([e.agg.revision for e in emits], pa.int32()),
            "emitted_at": pa.array([emitted_at_us] * len(emits), pa.int64()).cast(TS),
            "window_date": start.cast(TS).cast(pa.date32()),
        }
    )


class SensorRanges:
    """Valid range of each sensor, from the compacted topic iot.sensors."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.ranges: dict[str, tuple[float, float]] = {}
        self.refreshed = 0.0

    def refresh(self) -> None:
        entries: dict[str, bytes | None] = {}
        for key, value in read_partitions(self.bootstrap, self.topic):
            if key is not None:
                entries[key.decode()] = value
        ranges = {}
        for sid, value in entries.items():
            if value is None:
                continue
            try:
                lo, hi = orjson.loads(value)["range"]
                ranges[sid] = (float(lo), float(hi))
            except (KeyError, TypeError, ValueError):  # JSONDecodeError is a ValueError
                continue
        self.ranges = ranges
        self.refreshed = time.monotonic()

    def in_range(self, sensor_id: str, value: float) -> bool:
        bounds = self.ranges.get(sensor_id)
        if bounds is None and time.monotonic() - self.refreshed > 2:
            self.refresh()  # a sensor we do not know yet: the list may have grown
            bounds = self.ranges.get(sensor_id)
        return bounds is None or bounds[0] <= value <= bounds[1]


class MinuteJob:
    def __init__(
        self,
        lake: Lake,
        bootstrap: str,
        group: str,
        readings_topic: str,
        sensors_topic: str,
        out_topic: str,
        lateness_s: float,
        commit_s: float,
        idle_s: float,
        zstd_level: int,
        on_partition: Callable[[TableSpec, str], None] | None = None,
    ) -> None:
        self.lake, self.bootstrap = lake, bootstrap
        self.readings_topic, self.out_topic = readings_topic, out_topic
        self.lateness_us = int(lateness_s * 1e6)
        self.commit_s, self.idle_s, self.zstd_level = commit_s, idle_s, zstd_level
        self.on_partition = on_partition
        self.ranges = SensorRanges(bootstrap, sensors_topic)
        self._consumer_config = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
            }
        )
        self.windows: dict[int, MinuteWindows] = {}
        self._next: dict[int, int] = {}  # next input offset to apply, per partition
        self._first: dict[int, int] = {}  # first input offset since the last checkpoint
        self._pending: dict[int, list[Emit]] = {}
        self._last_seen: dict[int, float] = {}
        self._durable: dict[int, dict[str, object]] = {}  # last checkpoint written, per partition
        self.recovered = threading.Event()
        self.stats = {"readings": 0, "emitted": 0, "corrections": 0, "checkpoints": 0}

    # closed windows come back from the lake -------------------------------------------

    def load_closed(self, key: Key) -> Agg | None:
        sensor_id, start_us = key
        day = datetime.fromtimestamp(start_us / 1e6, UTC).date()
        folder = self.lake.path(SPEC.folder, f"{SPEC.partition_column}={day}")
        files = [f for f in self.lake.list_files(folder) if f.endswith(".parquet")]
        if not files:
            return None
        table = ds.dataset(files, filesystem=self.lake.fs, format="parquet").to_table(
            filter=(ds.field("sensor_id") == sensor_id)
            & (ds.field("window_start") == pa.scalar(start_us, pa.int64()).cast(TS))
        )
        if table.num_rows == 0:
            return None
        row = table.sort_by([("revision", "descending")]).slice(0, 1).to_pylist()[0]
        return Agg(
            count=row["count"],
            sum=row["sum"],
            min=row["min"],
            max=row["max"],
            out_of_range_count=row["out_of_range_count"],
            revision=row["revision"],
        )

    # checkpoints -------------------------------------------------------------------

    def _checkpoint_path(self, partition: int) -> str:
        return self.lake.path(
            "_checkpoints", SPEC.name, checkpoint_name(self.readings_topic, partition)
        )

    def recover(self, partition: int) -> int | None:
        windows = MinuteWindows(self.lateness_us, load_closed=self.load_closed)
        self.windows[partition] = windows
        doc = self.lake.read_json(self._checkpoint_path(partition))
        if doc is None:
            return None
        if doc.get("pending"):
            for rel in doc["pending"]["files"]:
                self.lake.delete(self.lake.path(rel))
            doc["pending"] = None
            self.lake.write_json(self._checkpoint_path(partition), doc)
        self._durable[partition] = doc
        windows.restore(doc["windows"])
        return int(doc["next_offset"])

    def checkpoint(self, partition: int) -> None:
        if partition not in self._first:
            return  # nothing read since the last one
        emits = self._pending.pop(partition, [])
        first, last = self._first.pop(partition), self._next[partition] - 1
        now_us = time.time_ns() // 1000
        for e in emits:
            self._producer.produce(
                self.out_topic, key=e.sensor_id.encode(), value=emit_json(e, now_us)
            )
        if self._producer.flush(30):
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "1m emissions not confirmed"))
        doc = {
            "topic": self.readings_topic,
            "partition": partition,
            "next_offset": last + 1,
            "windows": self.windows[partition].snapshot(),
            "pending": None,
        }
        path = self._checkpoint_path(partition)
        parts = (
            split_by_partition(emits_table(emits, now_us), SPEC.partition_column) if emits else []
        )
        # Unique, not derived from offsets: idle closes can emit with no new input.
        name = f"{self.readings_topic}+{partition}+{first:019d}+{uuid.uuid4().hex[:12]}.parquet"
        rel_paths = [f"{SPEC.folder}/{folder}/{name}" for folder, _ in parts]
        if rel_paths:
            # The previous state (before the first checkpoint: nothing applied yet),
            # naming the files about to be written as pending.
            old = self._durable.get(partition) or {
                **doc,
                "next_offset": first,
                "windows": MinuteWindows(self.lateness_us).snapshot(),
            }
            self.lake.write_json(path, {**old, "pending": {"files": rel_paths}})
            for rel, (_folder, table) in zip(rel_paths, parts, strict=True):
                self.lake.write_atomic(
                    self.lake.path(rel), parquet_bytes(table, SPEC.sort_by, self.zstd_level)
                )
        self.lake.write_json(path, doc)
        self._durable[partition] = doc
        self.stats["checkpoints"] += 1
        if self.on_partition is not None:
            for folder, _ in parts:
                self.on_partition(SPEC, folder)

    # the loop ----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        resume_at_checkpoints(partitions, self.recover, self._next)
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
            self.windows.pop(tp.partition, None)
            self._next.pop(tp.partition, None)
            self._last_seen.pop(tp.partition, None)
            self._durable.pop(tp.partition, None)
        consumer.unassign()

    def apply(self, partition: int, offset: int, value: bytes | None) -> None:
        expected = self._next.get(partition)
        if expected is not None and offset < expected:
            return  # applied before the last checkpoint
        self._first.setdefault(partition, offset)
        self._next[partition] = offset + 1
        self._last_seen[partition] = time.monotonic()
        try:
            r = parse_reading(value or b"", max_bytes=len(value or b"") + 1)
        except InvalidReading:
            return  # the bridge never forwards these
        emits = self.windows[partition].add(
            r.sensor_id, r.ts_us, r.value, self.ranges.in_range(r.sensor_id, r.value)
        )
        self.stats["readings"] += 1
        self._queue(partition, emits)

    def _queue(self, partition: int, emits: list[Emit]) -> None:
        self._pending.setdefault(partition, []).extend(emits)
        self.stats["emitted"] += len(emits)
        self.stats["corrections"] += sum(1 for e in emits if e.agg.revision > 1)

    def tick(self) -> None:
        """Partitions silent for idle_s: their event clock follows the wall clock."""
        now = time.monotonic()
        wall_us = time.time_ns() // 1000
        for partition, windows in self.windows.items():
            if now - self._last_seen.get(partition, 0.0) >= self.idle_s and windows.open:
                emits = windows.advance(wall_us)
                if emits:
                    self._first.setdefault(partition, self._next.get(partition, 0))
                    self._queue(partition, emits)

    def run(self, stop: threading.Event) -> None:
        ensure_topics(self.bootstrap, [TopicSpec(self.out_topic, 3)])
        self.ranges.refresh()
        consumer = Consumer(self._consumer_config)
        consumer.subscribe(
            [self.readings_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        last_commit = last_ranges = time.monotonic()
        try:
            while not stop.is_set():
                for msg in consumer.consume(num_messages=10_000, timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        if err.fatal():
                            raise KafkaException(err)
                        continue
                    partition, offset = msg.partition(), msg.offset()
                    if partition is not None and offset is not None:
                        self.apply(partition, offset, msg.value())
                self.tick()
                now = time.monotonic()
                if now - last_commit >= self.commit_s:
                    for partition in list(self.windows):
                        self.checkpoint(partition)
                    last_commit = now
                if now - last_ranges >= 30:
                    self.ranges.refresh()
                    last_ranges = now
            for partition in list(self.windows):
                self.checkpoint(partition)
        finally:
            consumer.close()
