"""Stage `queries`: BI queries in Trino over a backfilled history.

`stream_jobs.backfill` writes 100 sensors x `--days` days at one reading per 10 s
into raw.readings (its rate, the data's size, bytes a reading, files); then three
queries run 5 times each through Trino: one sensor over the last day filtered on
`event_date`, the same filtered on `ts` (pruned by the hidden partitioning,
day(ts)), and the daily means of all sensors over the history. Measures the median
time of each and the rows it returned.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from local.services import Stack
from tests.bench.common import BenchEnv, CommittedRows, Record, percentile, table_figures
from tests.integration.harness import Pipeline, SqlServices


def bench_queries(stack: Stack, sql: SqlServices, work: Path, days: int) -> dict[str, Any]:
    """Backfill 100 sensors x `days` days at one reading per 10 s, then time BI queries."""
    pipe = Pipeline(stack, work / "history", sql_services=sql)
    pipe.work.mkdir(parents=True)
    env = {**os.environ, **pipe.env}
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "stream_jobs.backfill",
            "--sensors",
            "100",
            "--days",
            str(days),
            "--interval",
            "10",
        ],
        env=env,
        check=True,
    )
    backfill_s = time.perf_counter() - t0
    rows = pipe.sql("SELECT count(*) FROM iceberg.raw.readings")[0][0]
    last = pipe.sql("SELECT max(event_date) FROM iceberg.raw.readings")[0][0]
    queries = {
        "one_sensor_one_day": "SELECT ts, value FROM iceberg.raw.readings "
        f"WHERE sensor_id = 'Sensor 42' AND event_date = DATE '{last}'",
        # the same on ts: pruned by the hidden partitioning (day(ts)) before the statistics
        "one_sensor_one_day_by_ts": "SELECT ts, value FROM iceberg.raw.readings "
        f"WHERE sensor_id = 'Sensor 42' AND ts >= TIMESTAMP '{last} 00:00:00' "
        f"AND ts < TIMESTAMP '{last} 00:00:00' + INTERVAL '1' DAY",
        "daily_means_all_sensors_month": "SELECT sensor_id, event_date, avg(value) "
        "FROM iceberg.raw.readings "
        f"WHERE event_date > DATE '{last}' - INTERVAL '{days}' DAY GROUP BY 1, 2",
    }
    fig = table_figures(CommittedRows(sql, pipe.lake, pipe.uid, "").table())
    result: dict[str, Any] = {
        "readings": rows,
        "backfill_s": backfill_s,
        "backfill_per_s": rows / backfill_s,
        "data_mb": fig["data_bytes"] / 1e6,
        "bytes_per_reading": fig["data_bytes"] / rows,
        "files": fig["data_files"],
    }
    for name, query in queries.items():
        timings = []
        for _ in range(5):
            t = time.perf_counter()
            out = pipe.sql(query)
            timings.append(time.perf_counter() - t)
        assert out, name
        result[f"{name}_median_s"] = percentile(timings, 0.5)
        result[f"{name}_rows"] = len(out)
    return result


def run(env: BenchEnv, args: argparse.Namespace, record: Record) -> None:
    record(
        "queries (Trino, backfilled history)",
        bench_queries(env.stack, env.sql, env.work, args.days),
    )
