"""Stage `quality`: the quality job alone (stream_jobs.scoring).

Pre-filled inputs as the upstream jobs would have written them: 1-minute emissions
of SENSORS sensors over the minutes before now (iot.readings.1m's shape, 3
partitions) and dead letters, a tenth of them naming a sensor and minute (one
partition). An in-process QualityJob reads both to the Iceberg table
curated.sensor_quality_1m_revisions, with the default commit interval. Measures
input records a second (counted when the checkpoint covering them landed, steady
and overall), quality rows emitted, commit latency, and the table reads of
sensor-minutes that had left the job's state (a replay of history touches them).
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from iot_common.kafka_io import ensure_topics, read_partitions
from iot_common.topics import TopicSpec
from local.services import Stack
from stream_jobs.scoring import QualityJob, SensorList
from stream_jobs.tables import SENSOR_QUALITY_1M_REVISIONS
from tests.bench.common import (
    DEFAULTS,
    SENSORS,
    BenchEnv,
    Record,
    TimedTable,
    latency_ms,
    open_table,
    steady_rate,
)
from tests.integration.harness import SqlServices


def prefill_inputs(stack: Stack, minutes_topic: str, dlq_topic: str, n: int) -> tuple[int, int]:
    """n 1-minute emissions (SENSORS sensors, consecutive minutes up to now) and n/10
    dead letters; returns the count of each."""
    ensure_topics(stack.bootstrap, [TopicSpec(minutes_topic, 3), TopicSpec(dlq_topic, 1)])
    producer = Producer(
        {"bootstrap.servers": stack.bootstrap, "linger.ms": 50, "compression.type": "lz4"}
    )
    now = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    first = now - timedelta(minutes=n // SENSORS + 1)
    for i in range(n):
        start = first + timedelta(minutes=i // SENSORS)
        sid = f"Sensor {i % SENSORS + 1}"
        value = {
            "sensor_id": sid,
            "window_start": start.isoformat(timespec="microseconds"),
            "window_end": (start + timedelta(minutes=1)).isoformat(timespec="microseconds"),
            "mean": 20.0,
            "min": 10.0,
            "max": 30.0,
            "count": 58,
            "out_of_range_count": 1,
            "late_count": 1,
            "sum": 1160.0,
            "revision": 1,
            "emitted_at": now.isoformat(timespec="microseconds"),
        }
        producer.produce(minutes_topic, orjson.dumps(value), key=sid.encode())
        if i % 10 == 0:
            bad = {"id": sid, "dt": (start + timedelta(seconds=7)).isoformat(), "value": "x"}
            producer.produce(
                dlq_topic,
                orjson.dumps(bad) if i % 100 == 0 else b"not json %d" % i,
                headers=[
                    ("reason", b"duplicate: again" if i % 200 == 0 else b"bad_value: x"),
                    ("received_at", (start + timedelta(seconds=8)).isoformat().encode() + b"Z"),
                ],
            )
        if i % 50_000 == 0:
            producer.poll(0)
    producer.flush()
    return n, (n + 9) // 10


def bench_quality(stack: Stack, sql: SqlServices, work: Path, n: int) -> dict[str, Any]:
    uid = f"q{uuid.uuid4().hex[:6]}"
    minutes_topic, dlq_topic = f"bench.{uid}.1m", f"bench.{uid}.dlq"
    n_minutes, n_dead = prefill_inputs(stack, minutes_topic, dlq_topic, n)
    ensure_topics(stack.bootstrap, [TopicSpec("bench.sensors", 1, {"cleanup.policy": "compact"})])
    table: TimedTable = open_table(
        sql, work / "quality-lake", SENSOR_QUALITY_1M_REVISIONS, uid, TimedTable
    )
    _ = table.table  # created before the clock starts
    kafka = {"bootstrap.servers": stack.bootstrap}
    job = QualityJob(
        table,
        consumer_config={**kafka, "group.id": f"bench-{uid}"},
        producer=Producer({**kafka, "enable.idempotence": True, "acks": "all", "linger.ms": 20}),
        sensors=SensorList(
            lambda: read_partitions(stack.bootstrap, "bench.sensors", group="bench-readback"),
            DEFAULTS.expected_interval_ms,
        ),
        minutes_topic=minutes_topic,
        dlq_topic=dlq_topic,
        out_topic=f"bench.{uid}.quality",
        status_topic=f"bench.{uid}.status",
        commit_s=DEFAULTS.window_commit_seconds,
        bounds=DEFAULTS.time_bounds(),
    )
    loads: list[int] = []
    load = job.load

    def counted_load(keys: list[tuple[str, int]]) -> Any:
        loads.append(len(keys))
        return load(keys)

    job.load = counted_load  # type: ignore[method-assign]
    total = n_minutes + n_dead
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,))
    t0 = time.perf_counter()
    thread.start()
    steady = steady_rate(lambda: table.committed(minutes_topic) + table.committed(dlq_topic), total)
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    return {
        "records": total,
        "per_s_steady": steady,
        "per_s_overall": total / elapsed,
        "rows_emitted": job.stats.emitted,
        "read_backs": len(loads),
        "minutes_read_back": sum(loads),
        **latency_ms(table.commit_s),
    }


def run(env: BenchEnv, args: argparse.Namespace, record: Record) -> None:
    record(
        "quality job alone (1m emissions + dead letters -> Iceberg)",
        bench_quality(env.stack, env.sql, env.work, args.quality),
    )
