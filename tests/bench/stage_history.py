"""Stage `history`: query latency through Trino as the history grows from a day to a year.

`--history-sensors` sensors (100), one reading each every `--history-interval` seconds
(60: 144,000 readings a day, 52.6 million in 365 days, which a 2-core machine
backfills in minutes; the generator's one a second would be 3.2 billion), grown in
steps of 1, 7, 30, 90 and 365 days (up to `--history-days`). Each step adds only the
days it lacks, older ones: the newest day (yesterday, UTC) stays the same, so "the
last day" and "the last month" ask for the same rows at every step while the table
grows under them.

* raw.readings: `python -m stream_jobs.backfill` in its own process, as the stage
  `queries` runs it (one Parquet file and one Iceberg commit a day).
* curated.readings_1m_revisions, which the backfill does not write: the 1-minute
  figures of the same readings (backfill.day_of_readings, same seeds), computed here
  as the 1-minute job emits them (revision 1, nothing late or out of range), written
  by our table writer (one file a day), one commit per 30 days; the view
  curated.readings_1m over it is made as the stream jobs make it
  (stream_jobs.catalog.view_sqls).

Then the queries, each run once untimed (the first run after the table grew plans
cold) and `--history-runs` times timed, through Trino as the admin (a new connection
a query, as the stage `queries`), median wall time: one sensor's last day
(raw.readings, by `ts`); one sensor's last 30 days of 1-minute means
(curated.readings_1m, by `window_start`); the daily means of all sensors over all
the history; the daily means of the last 30 days by `event_date` (as
docs/queries.sql's daily_stats) and the same by `ts`; the latest value of every
sensor over the last two days by `event_date` (max_by, as docs/queries.sql's
latest_value_per_sensor without its join to the sensor list, which a backfill does
not fill) and the same by `ts`. `event_date` is a plain column, pruned by the
files' statistics; `ts` is the partition source, pruned by partition first.

Draws curves-queries.png (tests.bench.plots) into docs/ (under --smoke the run's work
directory; BENCH_PLOTS_DIR overrides both); with BENCH_FIGURES_DIR set the figures
are also written there as history.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from stream_jobs import backfill
from stream_jobs.catalog import view_sqls
from stream_jobs.iceberg import IcebergTable
from stream_jobs.tables import READINGS_1M_REVISIONS, TS
from tests.bench import plots
from tests.bench.common import (
    BenchEnv,
    CommittedRows,
    Record,
    machine,
    open_table,
    percentile,
    table_figures,
)
from tests.integration.harness import Pipeline

STEPS = (1, 7, 30, 90, 365)
MINUTE_US = 60_000_000
COMMIT_DAYS = 30  # days of 1-minute figures a commit adds


def minute_figures(day: date, sensors: int, interval_s: int) -> pa.Table:
    """The 1-minute figures of the day's backfilled readings (same seed as the
    backfill's), as the 1-minute job emits them: one revision, emitted at the end of
    the minute plus its lateness."""
    rows = backfill.day_of_readings(day, sensors, interval_s, seed=day.toordinal())
    ts_us = pc.cast(rows["ts"], pa.int64())
    start_us = pc.multiply(pc.divide(ts_us, MINUTE_US), MINUTE_US)  # integer division
    windows = (
        pa.table({"sensor_id": rows["sensor_id"], "start_us": start_us, "value": rows["value"]})
        .group_by(["sensor_id", "start_us"])
        .aggregate(
            [
                ("value", "mean"),
                ("value", "min"),
                ("value", "max"),
                ("value", "count"),
                ("value", "sum"),
            ]
        )
    )
    n = windows.num_rows
    start = windows["start_us"]
    end = pc.add(start, MINUTE_US)
    table = pa.table(
        {
            "sensor_id": windows["sensor_id"],
            "window_start": pc.cast(start, TS),
            "window_end": pc.cast(end, TS),
            "mean": windows["value_mean"],
            "min": windows["value_min"],
            "max": windows["value_max"],
            "count": windows["value_count"],
            "out_of_range_count": pa.array([0] * n, pa.int64()),
            "late_count": pa.array([0] * n, pa.int64()),
            "sum": windows["value_sum"],
            "revision": pa.array([1] * n, pa.int32()),
            "emitted_at": pc.cast(pc.add(end, 5_000_000), TS),
            "window_date": pc.cast(pc.cast(start, TS), pa.date32()),
        }
    )
    schema = READINGS_1M_REVISIONS.table_schema
    return table.select(schema.names).cast(schema)


def add_minutes(table: IcebergTable, days: list[date], sensors: int, interval_s: int) -> None:
    """The 1-minute figures of `days` into the table, a commit per COMMIT_DAYS days."""
    for i in range(0, len(days), COMMIT_DAYS):
        files: list[str] = []
        for day in days[i : i + COMMIT_DAYS]:
            files += table.write(minute_figures(day, sensors, interval_s))
        with table.table.transaction() as tx:
            tx.add_files(files, check_duplicate_files=False)


def queries(last: date) -> dict[str, str]:
    """The queries timed, for a history whose newest day is `last`."""
    day = f"TIMESTAMP '{last} 00:00:00'"
    month = f"TIMESTAMP '{last - timedelta(days=29)} 00:00:00'"
    return {
        "one_sensor_day": "SELECT ts, value FROM iceberg.raw.readings "
        f"WHERE sensor_id = 'Sensor 42' AND ts >= {day} AND ts < {day} + INTERVAL '1' DAY",
        "sensor_month_1m": "SELECT window_start, mean, min, max, count "
        "FROM iceberg.curated.readings_1m WHERE sensor_id = 'Sensor 42' "
        f"AND window_start >= {month} AND window_start < {day} + INTERVAL '1' DAY "
        "ORDER BY window_start",
        "daily_means_all": "SELECT sensor_id, event_date, avg(value) "
        "FROM iceberg.raw.readings GROUP BY sensor_id, event_date",
        "daily_means_month": "SELECT sensor_id, event_date, avg(value) "
        f"FROM iceberg.raw.readings WHERE event_date > DATE '{last}' - INTERVAL '30' DAY "
        "GROUP BY sensor_id, event_date",
        "daily_means_month_ts": "SELECT sensor_id, event_date, avg(value) "
        f"FROM iceberg.raw.readings WHERE ts >= {month} GROUP BY sensor_id, event_date",
        "latest_values": "SELECT sensor_id, max(ts), max_by(value, ts) "
        f"FROM iceberg.raw.readings WHERE event_date >= DATE '{last}' - INTERVAL '1' DAY "
        "GROUP BY sensor_id",
        "latest_values_ts": "SELECT sensor_id, max(ts), max_by(value, ts) "
        f"FROM iceberg.raw.readings WHERE ts >= {day} - INTERVAL '1' DAY GROUP BY sensor_id",
    }


def run(env: BenchEnv, args: argparse.Namespace, record: Record) -> None:
    sensors, interval = args.history_sensors, args.history_interval
    pipe = Pipeline(env.stack, env.work / "history", sql_services=env.sql)
    pipe.work.mkdir(parents=True)
    proc_env = {**os.environ, **pipe.env}
    minutes: IcebergTable = open_table(env.sql, pipe.lake, READINGS_1M_REVISIONS, pipe.uid)
    _ = minutes.table  # created before the view over it
    uid = pipe.uid
    (view,) = [
        sql
        for sql in view_sqls("iceberg", f"raw_{uid}", f"curated_{uid}")
        if f".curated_{uid}.readings_1m\n" in sql
    ]
    pipe.sql(view)
    last = datetime.now(UTC).date() - timedelta(days=1)
    rows: list[dict[str, Any]] = []
    have = 0
    for days in [d for d in STEPS if d <= args.history_days]:
        new = [last - timedelta(days=d) for d in range(days - 1, have - 1, -1)]  # oldest first
        t0 = time.perf_counter()
        subprocess.run(
            [
                *(sys.executable, "-m", "stream_jobs.backfill"),
                *("--sensors", str(sensors), "--days", str(len(new))),
                *("--interval", str(interval), "--end", new[-1].isoformat()),
            ],
            env=proc_env,
            check=True,
        )
        backfill_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        add_minutes(minutes, new, sensors, interval)
        minutes_s = time.perf_counter() - t0
        have = days
        readings = pipe.sql("SELECT count(*) FROM iceberg.raw.readings")[0][0]
        fig = table_figures(CommittedRows(env.sql, pipe.lake, pipe.uid, "").table())
        result: dict[str, Any] = {
            "days": days,
            "readings": readings,
            "added_days": len(new),
            "backfill_s": backfill_s,
            "minutes_fill_s": minutes_s,
            "data_mb": fig["data_bytes"] / 1e6,
            "files": fig["data_files"],
        }
        for name, query in queries(last).items():
            pipe.sql(query)  # left out: the first run after the table grew plans it cold
            timings = []
            for _ in range(args.history_runs):
                t = time.perf_counter()
                out = pipe.sql(query)
                timings.append(time.perf_counter() - t)
            assert out, name
            result[f"{name}_s"] = percentile(timings, 0.5)
            result[f"{name}_rows"] = len(out)
        record(f"history: {days} days, {sensors} sensors", result)
        rows.append(result)
    written = plots.write_history(rows, machine(), plots.out_dir(args.smoke, env.work))
    plots.keep_figures("history", rows)
    print("history: " + ", ".join(str(p) for p in written), flush=True)
