"""Stage `minutes`: the 1-minute job, alone and through the whole pipeline.

Alone: a pre-filled topic (3 partitions) through an in-process MinuteJob's windows
to the Iceberg table curated.readings_1m_revisions, with the default lateness,
checkpoint and idle settings. Measures the rate (steady and overall), readings
counted when the checkpoint that covers them landed; the windows emitted; the
commit latency (median, p95); and bytes a window row and a reading on disk.

Through the pipeline: one reading a second over MQTT (bridge, stream jobs, default
settings) and, for each of `--minute-latency` minutes, the time from the end of the
minute until its row is in curated.readings_1m in Trino (p50, max).
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from iot_common.kafka_io import ensure_topics, read_partitions
from iot_common.topics import TopicSpec
from iot_data_generator.readings import reading_payload
from local.services import Stack
from stream_jobs.resample import MinuteJob, SensorRanges, WindowPolicy
from stream_jobs.tables import READINGS_1M_REVISIONS
from tests.bench.common import (
    DEFAULTS,
    BenchEnv,
    Record,
    TimedTable,
    latency_ms,
    open_table,
    percentile,
    prefill,
    sql_pipeline_with_client,
    steady_rate,
    table_figures,
)
from tests.integration.harness import SqlServices


def bench_minutes(stack: Stack, sql: SqlServices, work: Path, n: int) -> dict[str, Any]:
    """The 1-minute job alone: a pre-filled topic through the windows to its Iceberg
    table; readings counted when the checkpoint that covers them landed."""
    topic = "bench.minutes"
    prefill(stack, topic, n)
    ensure_topics(stack.bootstrap, [TopicSpec("bench.sensors", 1, {"cleanup.policy": "compact"})])
    uid = f"min{uuid.uuid4().hex[:6]}"
    table: TimedTable = open_table(
        sql, work / "minutes-lake", READINGS_1M_REVISIONS, uid, TimedTable
    )
    _ = table.table  # created before the clock starts
    kafka = {"bootstrap.servers": stack.bootstrap}
    job = MinuteJob(
        table,
        consumer_config={**kafka, "group.id": "bench-minutes"},
        producer=Producer({**kafka, "enable.idempotence": True, "acks": "all", "linger.ms": 20}),
        ranges=SensorRanges(
            lambda: read_partitions(stack.bootstrap, "bench.sensors", group="bench-readback"),
            "bench.sensors",
        ),
        readings_topic=topic,
        out_topic="bench.readings.1m",
        policy=WindowPolicy(
            lateness_s=DEFAULTS.window_lateness_seconds,
            commit_s=DEFAULTS.window_commit_seconds,
            idle_s=DEFAULTS.window_idle_seconds,
        ),
        bounds=DEFAULTS.time_bounds(),
        max_payload_bytes=DEFAULTS.max_payload_bytes,
    )
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,))
    t0 = time.perf_counter()
    thread.start()
    steady = steady_rate(lambda: table.committed(topic), n)
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    fig = table_figures(table.refresh())
    return {
        "readings": n,
        "per_s_steady": steady,
        "per_s_overall": n / elapsed,
        "windows_emitted": job.stats.emitted,
        **latency_ms(table.commit_s),
        "bytes_per_window": fig["data_bytes"] / max(1, fig["rows"]),
        "bytes_per_reading": fig["data_bytes"] / n,
        "files": fig["data_files"],
    }


def bench_minute_latency(
    stack: Stack, sql: SqlServices, work: Path, minutes: int
) -> dict[str, Any]:
    """From the end of a minute until its row is in curated.readings_1m (defaults)."""
    pipe, client = sql_pipeline_with_client(
        stack,
        sql,
        work / "minute-latency",
        {
            "ROTATE_SECONDS": str(DEFAULTS.rotate_seconds),
            "WINDOW_LATENESS_SECONDS": str(DEFAULTS.window_lateness_seconds),
            "WINDOW_COMMIT_SECONDS": str(DEFAULTS.window_commit_seconds),
            "WINDOW_IDLE_SECONDS": str(DEFAULTS.window_idle_seconds),
        },
    )
    query = "SELECT window_start FROM iceberg.curated.readings_1m WHERE sensor_id = 'Sensor 1'"
    seen: dict[datetime, float] = {}
    started = datetime.utcnow()
    first_end = started.replace(second=0, microsecond=0) + timedelta(minutes=1)
    ends = [first_end + timedelta(minutes=i) for i in range(minutes)]
    next_publish = time.monotonic()
    while len([e for e in ends if e in seen]) < len(ends):
        if time.monotonic() >= next_publish:  # one reading a second, as the generator does
            payload = reading_payload("Sensor 1", datetime.utcnow(), 20)
            client.publish(pipe.mqtt_topic, payload, qos=1)
            next_publish += 1.0
        for (start,) in pipe.sql(query):
            end = start + timedelta(minutes=1)
            if end not in seen:
                # wall time when the row was seen, as an offset from the minute's end
                seen[end] = (datetime.utcnow() - end).total_seconds()
        time.sleep(0.2)
        if datetime.utcnow() > ends[-1] + timedelta(minutes=2):
            raise TimeoutError("minutes did not appear")
    client.loop_stop()
    pipe.stop()
    lags = [seen[e] for e in ends]
    return {
        "minutes": len(lags),
        "p50_s": percentile(lags, 0.5),
        "max_s": max(lags),
        "lateness_s": DEFAULTS.window_lateness_seconds,
    }


def run(env: BenchEnv, args: argparse.Namespace, record: Record) -> None:
    record(
        "1-minute job alone (Kafka -> Iceberg)",
        bench_minutes(env.stack, env.sql, env.work, args.minutes),
    )
    record(
        "1-minute rows (end of minute -> Trino)",
        bench_minute_latency(env.stack, env.sql, env.work, args.minute_latency),
    )
