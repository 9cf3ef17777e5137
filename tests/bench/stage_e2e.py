"""Stage `e2e`: end to end, MQTT -> bridge -> Kafka -> stream jobs -> Iceberg.

Parallel `mosquitto_pub -l` (C, QoS 1; Debian package mosquitto-clients) publish
readings to the whole pipeline (bridge and stream jobs as real processes,
ROTATE_SECONDS at its default). Measures the rate (steady and overall), rows
counted from the committed offsets in raw.readings's properties in the metastore;
bytes a reading on disk and data files; the bridge's and the stream jobs' peak
RSS. Then checks the table: every reading once, none lost, none doubled.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from local.services import Stack
from tests.bench.common import (
    DEFAULTS,
    BenchEnv,
    CommittedRows,
    Publishers,
    Record,
    rss_peak_mb,
    steady_rate,
    table_figures,
)
from tests.integration.harness import Pipeline, SqlServices


def bench_end_to_end(stack: Stack, sql: SqlServices, work: Path, n: int) -> dict[str, Any]:
    pipe = Pipeline(
        stack,
        work / "e2e",
        sql_services=sql,
        env_extra={"ROTATE_SECONDS": str(DEFAULTS.rotate_seconds)},
    )
    pipe.work.mkdir(parents=True)
    pipe.start()
    committed = CommittedRows(sql, pipe.lake, pipe.uid, pipe.env["KAFKA_TOPIC_READINGS"])
    t0 = time.perf_counter()
    pub = Publishers(stack, pipe.mqtt_topic, n, pipe.work)
    steady = steady_rate(committed, n, poll_s=0.25)
    elapsed = time.perf_counter() - t0
    pub.wait()
    table = pipe.table("readings")
    distinct = len(set(table["payload"].to_pylist()))
    fig = table_figures(committed.table())
    result = {
        "readings": n,
        "per_s_steady": steady,
        "per_s_overall": n / elapsed,
        "archived_rows": table.num_rows,
        "distinct_payloads": distinct,
        "bytes_per_reading": fig["data_bytes"] / n,
        "files": fig["data_files"],
        "bridge_rss_mb": rss_peak_mb(pipe.bridge.p.pid),  # type: ignore[union-attr]
        "jobs_rss_mb": rss_peak_mb(pipe.jobs.p.pid),  # type: ignore[union-attr]
    }
    pipe.stop()
    assert table.num_rows == n == distinct, result  # nothing lost, nothing doubled
    return result


def run(env: BenchEnv, args: argparse.Namespace, record: Record) -> None:
    record(
        "end to end (MQTT -> Iceberg)",
        bench_end_to_end(env.stack, env.sql, env.work, args.e2e),
    )
