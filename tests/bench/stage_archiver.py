"""Stage `archiver`: the readings archiver alone, Kafka -> the Iceberg table raw.readings.

A topic of 3 partitions is pre-filled with readings as the bridge produces them; an
in-process TopicArchiver (with raw.rejected beside it, as the stream jobs run it)
archives them with the default rotation. Measures the rate (steady and overall),
rows counted when their commit landed (the Kafka offsets in the table's
properties); the commit latency (median, p95); and the size on disk (bytes a
reading, data files, metadata).
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from local.services import Stack
from stream_jobs.archive import TopicArchiver
from stream_jobs.records import build_readings
from stream_jobs.tables import READINGS, REJECTED
from tests.bench.common import (
    DEFAULTS,
    BenchEnv,
    Record,
    TimedTable,
    latency_ms,
    open_table,
    prefill,
    steady_rate,
    table_figures,
)
from tests.integration.harness import SqlServices


def bench_archiver(stack: Stack, sql: SqlServices, work: Path, n: int) -> dict[str, Any]:
    """The readings archiver alone, as the stream jobs run it (with raw.rejected beside
    it), over a pre-filled topic: rows counted when their commit landed."""
    topic = "bench.archive"
    prefill(stack, topic, n)
    uid = f"arch{uuid.uuid4().hex[:6]}"
    lake_dir = work / "archiver-lake"
    table: TimedTable = open_table(sql, lake_dir, READINGS, uid, TimedTable)
    rejected = open_table(sql, lake_dir, REJECTED, uid)
    _, _ = table.table, rejected.table  # created before the clock starts
    archiver = TopicArchiver(
        table,
        topic,
        build=build_readings,
        consumer_config={"bootstrap.servers": stack.bootstrap, "group.id": "bench"},
        rotate_rows=DEFAULTS.rotate_rows,
        rotate_seconds=DEFAULTS.rotate_seconds,
        rejected=rejected,
        bounds=DEFAULTS.time_bounds(),
        max_payload_bytes=DEFAULTS.max_payload_bytes,
    )
    stop = threading.Event()
    thread = threading.Thread(target=archiver.run, args=(stop,))
    t0 = time.perf_counter()
    thread.start()
    steady = steady_rate(lambda: table.committed(topic), n)
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    fig = table_figures(table.refresh())
    assert fig["rows"] == n == table.committed(topic), (fig["rows"], n)
    return {
        "readings": n,
        "per_s_steady": steady,
        "per_s_overall": n / elapsed,
        **latency_ms(table.commit_s),
        "rows_per_commit": n // max(1, len(table.commit_s)),
        "bytes_per_reading": fig["data_bytes"] / n,
        "files": fig["data_files"],
        "metadata_kb": fig["metadata_bytes"] / 1e3,
    }


def run(env: BenchEnv, args: argparse.Namespace, record: Record) -> None:
    record(
        "archiver alone (Kafka -> Iceberg)",
        bench_archiver(env.stack, env.sql, env.work, args.archiver),
    )
