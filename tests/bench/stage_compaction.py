"""Stage `compaction`: one compaction pass over a large day.

A day of `--compact-files` x `--compact-rows` readings (1,000 sensors) as small
files of our layout, written with IcebergTable.write and committed with add_files
50 files a commit, then one Maintenance.compact pass with the defaults
(COMPACT_TARGET_ROWS, COMPACT_MIN_FILES). Measures the time to write and commit;
the pass's wall time and rate, its groups and their median time; the files before
and after; the process's RSS before and its peak after the first group and at the
end (the peak reset before the pass); bytes a reading before and after. The rows
are checked exact in Trino.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stream_jobs.iceberg import IcebergTable
from stream_jobs.maintenance import MaintenancePolicy
from stream_jobs.tables import READINGS
from tests.bench.common import (
    DEFAULTS,
    US,
    BenchEnv,
    GroupTimedMaintenance,
    Record,
    open_table,
    percentile,
    readings_slice,
    reset_peak_rss,
    table_figures,
    vm_kib,
)
from tests.integration.harness import SqlServices


def bench_compaction(
    sql: SqlServices,
    work: Path,
    files: int,
    rows_per_file: int,
    sensors: int = 1000,
    batch: int = 50,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """A day of files x rows_per_file readings as small files of our layout (committed
    with add_files, `batch` files a commit), then one compaction pass (defaults:
    COMPACT_TARGET_ROWS, COMPACT_MIN_FILES): its wall time and the process's peak RSS."""
    uid = f"cmp{uuid.uuid4().hex[:6]}"
    t: IcebergTable = open_table(sql, work / "compact-lake", READINGS, uid)
    total = files * rows_per_file
    tick_us = 86_400 * US * sensors // total  # the day's readings spread over the day
    day = datetime.now(UTC).date() - timedelta(days=2)
    t0 = time.perf_counter()
    pending: list[str] = []
    for i in range(files):
        pending += t.write(
            readings_slice(day, i * rows_per_file, rows_per_file, sensors, tick_us, i)
        )
        if len(pending) >= batch or i + 1 == files:
            t.commit(pending, {"iot.bench.files": str(i + 1)})
            pending = []
            if (i + 1) % (batch * 2) == 0:
                report(f"  compaction: {i + 1}/{files} files written and committed")
    write_s = time.perf_counter() - t0
    before = table_figures(t.refresh())
    assert before["rows"] == total, (before["rows"], total)
    maintenance = GroupTimedMaintenance(
        [t],
        sql=None,
        policy=MaintenancePolicy(
            target_rows=DEFAULTS.compact_target_rows, min_files=DEFAULTS.compact_min_files
        ),
    )
    rss_before = vm_kib("VmRSS")
    reset = reset_peak_rss()
    t1 = time.perf_counter()
    groups = maintenance.compact(t)
    compact_s = time.perf_counter() - t1
    peak = vm_kib("VmHWM")
    after = table_figures(t.refresh())
    counted = sql.query(f"SELECT count(*) FROM iceberg.{t.ident}")[0][0]
    assert after["rows"] == counted == total, (after["rows"], counted, total)
    group_s = [g[0] for g in maintenance.groups]
    first_peak = maintenance.groups[0][2] if maintenance.groups else 0
    return {
        "readings": total,
        "files_before": before["data_files"],
        "rows_per_file_before": rows_per_file,
        "write_and_commit_s": write_s,
        "compact_wall_s": compact_s,
        "compact_rows_per_s": total / compact_s if compact_s else float("nan"),
        "groups": groups,
        "group_rows_max": max((g[1] for g in maintenance.groups), default=0),
        "group_median_s": percentile(group_s, 0.5),
        "files_after": after["data_files"],
        "rss_before_mb": rss_before / 1024,
        "peak_rss_after_first_group_mb": first_peak / 1024 if reset else float("nan"),
        "peak_rss_mb": peak / 1024 if reset else float("nan"),
        "bytes_per_reading_before": before["data_bytes"] / total,
        "bytes_per_reading_after": after["data_bytes"] / total,
        "target_rows": DEFAULTS.compact_target_rows,
    }


def run(env: BenchEnv, args: argparse.Namespace, record: Record) -> None:
    record(
        "compaction of a day",
        bench_compaction(env.sql, env.work, args.compact_files, args.compact_rows),
    )
