"""Stage `curves`: how the CPU and the memory of each service's state grow with the
number of sensors, N = 5, 100, 1,000, 10,000 and 100,000 (up to `--curves-max-sensors`).

Every (component, N) runs in a fresh Python process (`python -m
tests.bench.stage_curves COMPONENT N`, which prints its figures as JSON), so that
nothing of one size, neither memory nor warm caches, carries into the next. What runs:

* bridge: `Bridge._on_message`, as the MQTT loop calls it, with a producer and an
  MQTT client that only collect: their delivery reports and PUBACKs are served every
  MAX_PACKETS_PER_PASS messages, as a loop pass serves them. So: the contract parser,
  the topic check, the dedup memory (RecentKeys, DEDUP_WINDOW keys), the flood guard
  (FloodGuard), the dead-letter memory and the records waiting for Kafka; not paho's
  packet decoding nor librdkafka (the `bridge` stage measures the whole).
* minutes: the 1-minute job's `MinuteJob.apply` over records as the bridge writes them
  (payload and headers; sensor i in partition i % 3), its checkpoint every
  WINDOW_COMMIT_SECONDS of event time, writing its Parquet files and state files to a
  local folder (no Iceberg commit, no Kafka). At the end a checkpoint at a minute's
  end is measured in two parts: the state file of the open windows (what every
  checkpoint that commits writes) and the emission of the closing minute's windows
  (the partitions' clocks moved on by the wall clock, `MinuteJob.tick`).
* quality: the quality job (`QualityJob.apply` and `checkpoint`, the same local
  folder) in the steady state of N sensors that report every second. Its state starts
  as the job's checkpoint leaves it then (the last KEEP_MINUTES minutes of every
  sensor, each emitted, statuses ok; built directly as the QualityState that the
  job's recovery restores), then `--curves-minutes` minutes run (more at small N: at
  least a 25th of `--curves-readings` records, 20,000 by default), each one 1-minute
  emission per sensor, a checkpoint once they arrived (it scores and emits them,
  prunes, writes the state file) and one WINDOW_COMMIT_SECONDS later with nothing
  new: the job runs one every WINDOW_COMMIT_SECONDS, and 29 of 30 are such.
* registry: a sensors.json of N sensors through the bridge's SensorPublisher into a
  compacted topic of the run's Kafka (the first publish of all N, a re-publish after
  one entry changed, a poll of the unchanged file), then the stream jobs' readers of
  that topic: the SensorDirectory agent's load at start, the 1-minute job's
  SensorRanges and the quality job's SensorList refresh (each every 30 s).

Readings (bridge, minutes): `--curves-readings` in all, at every N, one per sensor
and second (reading i: sensor i % N at second i // N, received 2-9 ms after its dt),
so at 100,000 sensors each has 5 readings in its open window, and at 5 sensors the
1-minute job closes 28 hours of minutes.

CPU: process CPU time (`time.process_time`: every thread of the worker, librdkafka's
included; not wall time) of the calls measured; making the inputs is left out.

Memory, two figures. `state_mb`: the bytes of the objects the component's state holds
after the run, counted by walking them (`deep_size`: sys.getsizeof of every object
reachable from the state, each once, types and functions left out). It is what
tracemalloc counts of the same state within 1.5 % (checked on each kind of state),
without tracemalloc's five- to six-fold slowing of the CPU figures; it leaves out the
allocator's slack and librdkafka's C memory. `rss_mb`: the growth of the worker's resident memory
over the run (VmRSS, after minus before), which includes that slack, freed memory
the allocator kept, and transient peaks (a checkpoint's JSON): an upper bound.
`peak_rss_mb` is the worker's peak (VmHWM), interpreter and imports included.

Figures go to record() one line per (component, N), and the stage draws
curves-cpu.png and curves-memory.png (tests.bench.plots) into docs/ (under --smoke:
the run's work directory; BENCH_PLOTS_DIR overrides both); with BENCH_FIGURES_DIR
set, the figures are also written there as curves.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
import types
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from iot_common.kafka_io import ensure_topics, read_all, read_partitions
from iot_common.topics import sensors_spec
from iot_data_generator.readings import reading_payload
from mqtt_bridge.bridge import MAX_PACKETS_PER_PASS, Bridge, ReceivedAt, producer_config
from mqtt_bridge.sensors import SensorPublisher, sensor_record
from mqtt_bridge.settings import BridgeSettings
from stream_jobs.agents import SensorDirectory
from stream_jobs.checkpoint import Recovered
from stream_jobs.iceberg import IcebergTable
from stream_jobs.lake import Lake
from stream_jobs.quality import KEEP_MINUTES, MINUTE_US, Cell, QualityState
from stream_jobs.resample import KafkaHeaders, MinuteJob, SensorRanges, WindowPolicy
from stream_jobs.scoring import QualityJob, SensorList
from stream_jobs.tables import READINGS_1M_REVISIONS, SENSOR_QUALITY_1M_REVISIONS, TableSpec
from stream_jobs.windows import MinuteWindows
from tests.bench import plots
from tests.bench.common import DEFAULTS, US, BenchEnv, Record, machine, vm_kib

SIZES = (5, 100, 1_000, 10_000, 100_000)
COMPONENTS = ("bridge", "minutes", "quality", "registry")
PARTITIONS = 3  # of iot.readings and iot.readings.1m, as the topics are made
CHUNK = 10_000  # readings made at a time (outside the CPU timing)
QUALITY_SHARE = 25  # the quality job's live minutes hold a 25th of --curves-readings at least
READBACK = "bench-curves-readback"


# -- measuring ---------------------------------------------------------------------------

# Not state: a bound method (MinuteWindows keeps its job's loader) leads to the job.
_NOT_STATE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
)


MANAGED_DICT = 1 << 4  # Py_TPFLAGS_MANAGED_DICT (Python 3.11): attributes kept inline
_inline: dict[type, int] = {}


def inline_values(cls: type) -> int:
    """Bytes of the attribute values an instance of `cls` keeps beside the object:
    Python 3.11 allocates them with every instance of a class without __slots__,
    and sys.getsizeof leaves them out (measured once per class with tracemalloc).
    The instance's attribute dict, once made, replaces them: nothing of our states
    asks for one (no __dict__, no vars())."""
    if cls not in _inline:
        extra = 0
        if cls.__flags__ & MANAGED_DICT:
            tracing = tracemalloc.is_tracing()
            if not tracing:
                tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            made: list[object] = [object.__new__(cls) for _ in range(100)]
            traced = tracemalloc.get_traced_memory()[0] - before - sys.getsizeof(made)
            extra = max(0, round(traced / len(made)) - sys.getsizeof(made[0]))
            del made
            if not tracing:
                tracemalloc.stop()
        _inline[cls] = extra
    return _inline[cls]


def deep_size(*roots: object) -> int:
    """Bytes of every object reachable from `roots` (each counted once), leaving out
    types, modules and functions: what a state holds in Python objects."""
    seen: set[int] = set()
    stack = list(roots)
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _NOT_STATE):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj) + inline_values(type(obj))
        stack.extend(gc.get_referents(obj))
    return total


class CpuClock:
    """Process CPU time of what runs inside `with clock:` blocks, added up."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.process_time()

    def stop(self) -> None:
        self.seconds += time.process_time() - self._t0

    def __enter__(self) -> CpuClock:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def cpu_of(fn: Callable[[], object]) -> tuple[float, float]:
    """(process CPU, wall) seconds of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def rss_mb() -> float:
    return vm_kib("VmRSS") / 1024


def memory(baseline_mb: float, *state: object) -> dict[str, float]:
    gc.collect()
    return {
        "state_mb": deep_size(*state) / 1e6,
        "rss_mb": rss_mb() - baseline_mb,
        "peak_rss_mb": vm_kib("VmHWM") / 1024,
    }


# -- inputs ------------------------------------------------------------------------------


def sensor_entry(i: int) -> dict[str, object]:
    """A sensors.json entry in the generator's format, sensor i (1-based)."""
    return {
        "lat": round(10 + (i * 0.001) % 80, 3),
        "lng": round(10 + (i * 0.007) % 80, 3),
        "unit": "C",
        "type": "temperature",
        "range": [0, 45],
        "description": f"Room {i}",
    }


def exact(data: bytes) -> bytes:
    """A copy of exactly its size. orjson makes its output in a 4 KB buffer it then
    shrinks, and glibc's malloc keeps the rest of the block behind it: made inputs
    kept as orjson gave them would hold 4 KB each (400 MB at 100,000 sensors)."""
    return bytes(memoryview(data))


def sensor_entries(n: int) -> list[tuple[bytes | None, bytes | None]]:
    """iot.sensors as the bridge publishes it: one record a sensor."""
    return [
        (f"Sensor {i}".encode(), exact(sensor_record(sensor_entry(i)))) for i in range(1, n + 1)
    ]


def headers(received_at: bytes) -> KafkaHeaders:
    """A record's headers as the bridge writes them (and Kafka hands them back)."""
    return [("mqtt_topic", b"sensors"), ("received_at", received_at)]


def timeline_start(seconds: int) -> datetime:
    """A minute's start far enough in the past that `seconds` of readings from it end
    before now (the contract refuses a dt ahead of its receive time)."""
    now = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    return now - timedelta(seconds=seconds + 300)


def readings(n: int, total: int, start: datetime) -> Iterator[list[tuple[int, bytes, bytes]]]:
    """`total` readings of n sensors, one per sensor and second, in chunks of
    (sensor index, payload, received_at header)."""
    stamp = ReceivedAt()
    start_us = int(start.replace(tzinfo=UTC).timestamp()) * US
    for first in range(0, total, CHUNK):
        chunk = []
        for i in range(first, min(total, first + CHUNK)):
            sensor = i % n
            offset_us = (i // n) * US + (i * 7919) % 1_000_000
            dt = start + timedelta(microseconds=offset_us)
            received = start_us + offset_us + 2_000 + (i * 104_729) % 7_000
            payload = reading_payload(f"Sensor {sensor + 1}", dt, (i * 31) % 46)
            chunk.append((sensor, payload, stamp.header(received)))
        yield chunk


# -- stand-ins for Kafka and the table's commit -----------------------------------------


class CollectingProducer:
    """A producer that keeps delivery callbacks and serves them at poll()."""

    def __init__(self) -> None:
        self.sent = 0
        self._reports: list[Callable[[Any, Any], None]] = []

    def produce(self, topic: str, *args: Any, on_delivery: Any = None, **kwargs: Any) -> None:
        self.sent += 1
        if on_delivery is not None:
            self._reports.append(on_delivery)

    def poll(self, timeout: float = 0) -> int:
        reports, self._reports = self._reports, []
        for report in reports:
            report(None, None)
        return len(reports)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0


class CountingClient:
    """The MQTT client's side of the bridge's acks: counted, never written."""

    def __init__(self) -> None:
        self.acks = 0

    def queue_ack(self, mid: int) -> None:
        self.acks += 1

    def ack(self, mid: int, qos: int) -> None:
        self.acks += 1


class LocalCheckpoint:
    """The jobs' Checkpoint without the table: state files and data files are written
    to the lake folder as a checkpoint writes them (the state file replacing the last
    one, data files deleted at once); no Iceberg commit."""

    def __init__(self, table: IcebergTable) -> None:
        self.lake = table.lake
        self.state_bytes: dict[int, int] = {}

    def recover(self, partition: int, properties: object) -> Recovered:
        return Recovered(None)

    def commit(
        self,
        files: list[str],
        next_offsets: object,
        *,
        states: dict[int, dict[str, Any]] | None = None,
        other_offsets: object = None,
        stop: object = None,
    ) -> None:
        for uri in files:
            self.lake.delete(uri.removeprefix("file://"))
        for partition, doc in (states or {}).items():
            path = self.lake.path(f"_state/{partition}.json")
            self.lake.write_json(path, doc)
            self.state_bytes[partition] = Path(path).stat().st_size

    def forget(self, partition: int) -> None:
        pass

    def forget_all(self) -> None:
        pass


def local_table(spec: TableSpec, work: Path) -> IcebergTable:
    """A table handle that writes Parquet files to a local folder and has no catalog
    (nothing here commits or reads it)."""
    return IcebergTable(
        spec,
        catalog=None,  # type: ignore[arg-type]
        lake=Lake(str(work / f"lake-{spec.name}-{uuid.uuid4().hex[:6]}")),
        namespaces={"raw": "raw", "curated": "curated"},
        zstd_level=DEFAULTS.zstd_level,
    )


# -- the components ----------------------------------------------------------------------


def bench_bridge(n: int, total: int, bootstrap: str) -> dict[str, Any]:
    settings = BridgeSettings(_env_file=None, kafka_bootstrap_servers=bootstrap)
    bridge = Bridge(settings)
    real = bridge._producer
    producer = CollectingProducer()
    bridge._producer = producer  # type: ignore[assignment]
    bridge._client = CountingClient()  # type: ignore[assignment]
    real.flush(1)
    del real  # its librdkafka threads end here, not during the timing
    gc.collect()
    # One message object, refilled: the bridge's client makes one a PUBLISH too.
    msg = mqtt.MQTTMessage.__new__(mqtt.MQTTMessage)
    msg._topic, msg.qos, msg.dup, msg.retain = b"sensors", 1, False, False
    baseline = rss_mb()
    clock = CpuClock()
    mid = 0
    for chunk in readings(n, total, timeline_start(total // n)):
        with clock:
            for _, payload, _ in chunk:
                mid = mid % 65_535 + 1
                msg.payload, msg.mid = payload, mid
                bridge._on_message(None, None, msg)  # type: ignore[arg-type]
                if mid % MAX_PACKETS_PER_PASS == 0:
                    producer.poll(0)
            producer.poll(0)
    stats = bridge.stats
    assert stats.forwarded == total and stats.dead_lettered == 0, stats.as_dict()
    return {
        "cpu_us_per_record": clock.seconds / total * 1e6,
        "dedup_keys": len(bridge._recent),
        "flood_keys": len(bridge._flood),
        **memory(baseline, bridge._recent, bridge._flood, bridge._dead, bridge._pending),
    }


def bench_minutes(n: int, total: int, work: Path) -> dict[str, Any]:
    table = local_table(READINGS_1M_REVISIONS, work)
    entries = sensor_entries(n)
    job = MinuteJob(
        table,
        consumer_config={"bootstrap.servers": "unused"},
        producer=CollectingProducer(),
        ranges=SensorRanges(lambda: entries, "bench.sensors"),
        readings_topic="bench.readings",
        out_topic="bench.readings.1m",
        policy=WindowPolicy(
            lateness_s=DEFAULTS.window_lateness_seconds,
            commit_s=DEFAULTS.window_commit_seconds,
            idle_s=DEFAULTS.window_idle_seconds,
        ),
        bounds=DEFAULTS.time_bounds(),
        max_payload_bytes=DEFAULTS.max_payload_bytes,
    )
    checkpoints = LocalCheckpoint(table)
    job.checkpoints = checkpoints  # type: ignore[assignment]
    for p in range(PARTITIONS):
        job.recover(p, {})
    job.ranges.refresh()
    gc.collect()
    baseline = rss_mb()
    apply, periodic = CpuClock(), CpuClock()
    every = max(1, int(DEFAULTS.window_commit_seconds * n))  # readings between checkpoints
    offsets = [0] * PARTITIONS
    done = 0
    for chunk in readings(n, total, timeline_start(total // n)):
        records = [(s % PARTITIONS, payload, headers(received)) for s, payload, received in chunk]
        apply.start()  # stopped for the checkpoints, timed apart
        for p, payload, kafka_headers in records:
            job.apply(p, offsets[p], payload, kafka_headers, 0)
            offsets[p] += 1
            done += 1
            if done % every == 0:
                apply.stop()
                with periodic:
                    for q in range(PARTITIONS):
                        job.checkpoint(q)
                apply.start()
        apply.stop()
    open_windows = sum(len(w.open) for w in job.windows.values())
    closed_kept = sum(len(w._closed) for w in job.windows.values())
    figures = memory(baseline, job.windows, job._pending)
    # A checkpoint at a minute's end: the state file of the open windows ...
    state_cpu = 0.0
    state_bytes = 0
    for w in job.windows.values():
        state: list[bytes] = []

        def write(w: MinuteWindows = w, state: list[bytes] = state) -> None:
            state.append(orjson.dumps(w.snapshot(), option=orjson.OPT_INDENT_2))

        state_cpu += cpu_of(write)[0]
        state_bytes += len(state[0])
    # ... and the closing minute's windows emitted: the clocks follow the wall clock.
    emitted = job.stats.emitted
    for p in range(PARTITIONS):
        job._last_seen[p] = 0.0  # silent: tick() moves the clock by the wall clock

    def close() -> None:
        job.tick()
        for p in range(PARTITIONS):
            job.checkpoint(p)

    close_cpu, _ = cpu_of(close)
    assert job.stats.readings == total, job.stats.as_dict()
    return {
        "cpu_us_per_record": apply.seconds / total * 1e6,
        "open_windows": open_windows,
        "closed_kept": closed_kept,
        "checkpoint_state_ms": state_cpu * 1e3,
        "checkpoint_emit_ms": close_cpu * 1e3,
        "checkpoint_ms": (state_cpu + close_cpu) * 1e3,
        "closed_at_end": job.stats.emitted - emitted,
        "state_doc_kb": state_bytes / 1e3,
        "periodic_checkpoints_s": periodic.seconds,
        **figures,
    }


def steady_quality_state(sensors: list[str], next_us: int) -> QualityState:
    """The state of the quality job after every sensor sent 60 readings a minute for
    a while, as its checkpoint just after the minute before `next_us` (a minute's
    start) leaves it: the last KEEP_MINUTES minutes of each sensor, each emitted
    once, statuses ok (what QualityState.restore makes of that checkpoint's file)."""
    minutes = range(next_us - KEEP_MINUTES * MINUTE_US, next_us, MINUTE_US)
    # Each key its own id string, as the job's parsing (or its restore) makes them.
    cells = {
        (sid.encode().decode(), m): Cell(count=60, minute_revision=1, revision=1)
        for sid in sensors
        for m in minutes
    }
    return QualityState(
        cells=cells,
        filled_until_us=next_us - 2 * MINUTE_US,  # closed by the wall clock so far
        forgotten_before_us=minutes[0],
        last_reading_us=dict.fromkeys(sensors, next_us),
        first_reading_us=dict.fromkeys(sensors, minutes[0]),
        statuses=dict.fromkeys(sensors, "ok"),
    )


def bench_quality(n: int, live_minutes: int, min_records: int, work: Path) -> dict[str, Any]:
    table = local_table(SENSOR_QUALITY_1M_REVISIONS, work)
    entries = sensor_entries(n)
    sensor_list = SensorList(lambda: entries, DEFAULTS.expected_interval_ms)
    sensor_list.refresh()
    job = QualityJob(
        table,
        consumer_config={"bootstrap.servers": "unused"},
        producer=CollectingProducer(),
        sensors=sensor_list,
        minutes_topic="bench.1m",
        dlq_topic="bench.dlq",
        out_topic="bench.quality",
        status_topic="bench.status",
        commit_s=DEFAULTS.window_commit_seconds,
        bounds=DEFAULTS.time_bounds(),
    )
    checkpoints = LocalCheckpoint(table)
    job.checkpoints = checkpoints  # type: ignore[assignment]
    minutes = max(live_minutes, -(-min_records // n))
    first = timeline_start(minutes * 60)
    first_us = int(first.replace(tzinfo=UTC).timestamp()) * US
    sensors = sensor_list.known
    gc.collect()
    baseline = rss_mb()
    # As the job's recovery leaves it, caught up (minutes close by the wall clock).
    job.state = steady_quality_state(sensors, first_us)
    job._caught_up, job._started = True, time.monotonic() - 3600
    apply = CpuClock()
    busy: list[float] = []
    idle: list[float] = []
    offset = 0
    lateness_us = int(DEFAULTS.window_lateness_seconds * US)
    commit_us = int(DEFAULTS.window_commit_seconds * US)
    for m in range(minutes):
        start_us = first_us + m * MINUTE_US
        values = [minute_emission(sid, start_us, first_us) for sid in sensors]
        with apply:
            for i, value in enumerate(values):
                job.apply("bench.1m", i % PARTITIONS, offset + i // PARTITIONS, value, None, 0)
        offset += len(values) // PARTITIONS + 1
        del values
        # As they arrive: the 1-minute job emits a minute once its lateness passed.
        arrived = start_us + MINUTE_US + lateness_us + commit_us
        busy.append(cpu_of(partial(job.checkpoint, arrived))[0])
        idle.append(cpu_of(partial(job.checkpoint, arrived + commit_us))[0])
    records = minutes * n
    assert job.stats.minutes_in == records and job.stats.skipped == 0, job.stats.as_dict()
    checkpoint_ms = statistics.median(busy[-3:]) * 1e3
    idle_ms = statistics.median(idle[-3:]) * 1e3
    per_minute = 60 / DEFAULTS.window_commit_seconds  # checkpoints a minute
    minute_s = apply.seconds / minutes + (checkpoint_ms + (per_minute - 1) * idle_ms) / 1e3
    return {
        "cpu_us_per_record": apply.seconds / records * 1e6,
        "live_minutes": minutes,
        "cells": len(job.state.cells),
        "checkpoint_ms": checkpoint_ms,
        "idle_checkpoint_ms": idle_ms,
        "cpu_s_per_minute": minute_s,
        "state_doc_kb": checkpoints.state_bytes.get(0, 0) / 1e3,
        **memory(baseline, job.state),
    }


def minute_emission(sensor_id: str, start_us: int, emitted_us: int) -> bytes:
    """A 1-minute emission as the 1-minute job writes it: 60 readings, all in range."""
    start = datetime.fromtimestamp(start_us / US, UTC).replace(tzinfo=None)
    return exact(
        orjson.dumps(
            {
                "sensor_id": sensor_id,
                "window_start": start.isoformat(timespec="microseconds"),
                "window_end": (start + timedelta(minutes=1)).isoformat(timespec="microseconds"),
                "mean": 22.5,
                "min": 0.0,
                "max": 45.0,
                "count": 60,
                "out_of_range_count": 0,
                "late_count": 0,
                "sum": 1350.0,
                "revision": 1,
                "emitted_at": datetime.fromtimestamp(emitted_us / US, UTC)
                .replace(tzinfo=None)
                .isoformat(timespec="microseconds"),
            }
        )
    )


def bench_registry(n: int, bootstrap: str, work: Path) -> dict[str, Any]:
    path = work / f"sensors-{n}-{uuid.uuid4().hex[:6]}.json"
    doc = {f"Sensor {i}": sensor_entry(i) for i in range(1, n + 1)}
    path.write_bytes(orjson.dumps(doc))
    topic = f"bench.curves.sensors.{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [sensors_spec(topic)])
    config = producer_config(BridgeSettings(_env_file=None, kafka_bootstrap_servers=bootstrap))
    gc.collect()
    baseline = rss_mb()
    publisher = SensorPublisher(path, config, topic)
    sent: list[int] = []
    publish_cpu, publish_wall = cpu_of(lambda: sent.append(publisher.poll()))
    unchanged_cpu, _ = cpu_of(publisher.poll)
    doc["Sensor 1"]["description"] = "Room 1, moved"
    path.write_bytes(orjson.dumps(doc))
    republish_cpu, _ = cpu_of(lambda: sent.append(publisher.poll()))
    assert sent == [n, 1], sent
    del doc
    directory = SensorDirectory()

    def load() -> None:
        records = read_all(bootstrap, topic, group=READBACK)
        directory.load((r.partition, r.offset, r.key, r.value) for r in records)

    directory_cpu, directory_wall = cpu_of(load)
    assert len(directory.sensors) == n, directory.summary()

    def topic_entries() -> Iterable[tuple[bytes | None, bytes | None]]:
        return read_partitions(bootstrap, topic, group=READBACK)

    ranges = SensorRanges(topic_entries, topic)
    ranges_cpu, ranges_wall = cpu_of(ranges.refresh)
    sensor_list = SensorList(topic_entries, DEFAULTS.expected_interval_ms)
    list_cpu, _ = cpu_of(sensor_list.refresh)
    assert len(ranges.ranges) == len(sensor_list.intervals) == n
    return {
        "publish_ms": publish_cpu * 1e3,
        "publish_wall_ms": publish_wall * 1e3,
        "republish_ms": republish_cpu * 1e3,
        "unchanged_poll_ms": unchanged_cpu * 1e3,
        "directory_load_ms": directory_cpu * 1e3,
        "directory_load_wall_ms": directory_wall * 1e3,
        "ranges_refresh_ms": ranges_cpu * 1e3,
        "ranges_refresh_wall_ms": ranges_wall * 1e3,
        "list_refresh_ms": list_cpu * 1e3,
        "file_kb": path.stat().st_size / 1e3,
        "publisher_mb": deep_size(publisher._state) / 1e6,
        "directory_mb": deep_size(directory.sensors) / 1e6,
        "ranges_mb": deep_size(ranges.ranges) / 1e6,
        "list_mb": deep_size(sensor_list.intervals) / 1e6,
        **memory(
            baseline, publisher._state, directory.sensors, ranges.ranges, sensor_list.intervals
        ),
    }


# -- the stage ---------------------------------------------------------------------------


def worker(argv: list[str] | None = None) -> dict[str, Any]:
    """One component at one N, in this process (the stage starts one per pair)."""
    p = argparse.ArgumentParser(prog="python -m tests.bench.stage_curves")
    p.add_argument("component", choices=COMPONENTS)
    p.add_argument("sensors", type=int)
    p.add_argument("--readings", type=int, required=True)
    p.add_argument("--minutes", type=int, required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--work", type=Path, required=True)
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    n = args.sensors
    if args.component == "bridge":
        return bench_bridge(n, args.readings, args.bootstrap)
    if args.component == "minutes":
        return bench_minutes(n, args.readings, args.work)
    if args.component == "quality":
        return bench_quality(n, args.minutes, args.readings // QUALITY_SHARE, args.work)
    return bench_registry(n, args.bootstrap, args.work)


def measure(
    component: str, n: int, args: argparse.Namespace, bootstrap: str, work: Path
) -> dict[str, Any]:
    argv = [
        *(component, str(n)),
        *("--readings", str(args.curves_readings), "--minutes", str(args.curves_minutes)),
        *("--bootstrap", bootstrap, "--work", str(work / f"{component}-{n}")),
    ]
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.stage_curves", *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"curves worker {component} {n} failed:\n{done.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {**figures, "wall_s": time.perf_counter() - t0}


def run(env: BenchEnv, args: argparse.Namespace, record: Record) -> None:
    sizes = [n for n in SIZES if n <= args.curves_max_sensors]
    rows: list[dict[str, Any]] = []
    for component in COMPONENTS:
        for n in sizes:
            figures = measure(component, n, args, env.stack.bootstrap, env.work / "curves")
            record(f"curves: {component}, {n:,} sensors", figures)
            rows.append({"component": component, "sensors": n, **figures})
    written = plots.write_curves(rows, machine(), plots.out_dir(args.smoke, env.work))
    plots.keep_figures("curves", rows)
    print("curves: " + ", ".join(str(p) for p in written), flush=True)


if __name__ == "__main__":
    print(json.dumps(worker()), flush=True)
