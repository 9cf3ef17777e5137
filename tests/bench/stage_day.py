"""Stage `day`: a day of the readings table's commits, and what compaction rewrites.

A day of commits (8,640 at ROTATE_SECONDS=10), each one file of `--day-sensors`
sensors x ROTATE_SECONDS and three Kafka offsets, as the archiver commits them, at
up to `--day-speed` times real time, with a maintenance pass (compaction, then
expiry and orphan removal through Trino) every MAINTENANCE_INTERVAL_SECONDS /
ROTATE_SECONDS commits. Measures the metadata (snapshots, manifests, files,
metadata.json) and the commit latency along the day (printed as it goes) and at
start vs end; commits rebased or retried; the maintenance passes, their errors and
times; planning and count(*) times at the end, the rows checked exact.

Then what the compaction policy rewrites over a day of one partition at 10, 100
and 1,000 sensors, planned with stream_jobs.maintenance.plan_groups (no I/O):
rows rewritten against rows written.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyiceberg.manifest import DataFile

from stream_jobs.iceberg import IcebergTable, offset_properties
from stream_jobs.maintenance import Maintenance, MaintenancePolicy, plan_groups
from stream_jobs.tables import READINGS
from tests.bench.common import (
    DEFAULTS,
    US,
    BenchEnv,
    Record,
    TimedTable,
    data_files,
    open_table,
    percentile,
    readings_slice,
    table_figures,
)
from tests.integration.harness import SqlServices


class CountingMaintenance(Maintenance):
    """The maintenance, counting the rows its compaction rewrites and timing its steps."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows_rewritten = 0
        self.step_s: dict[str, list[float]] = {"compact": [], "expire": []}

    def rewrite(self, t: IcebergTable, files: list[DataFile]) -> None:
        super().rewrite(t, files)
        self.rows_rewritten += sum(f.record_count for f in files)

    def compact(self, t: IcebergTable) -> int:
        t0 = time.perf_counter()
        try:
            return super().compact(t)
        finally:
            self.step_s["compact"].append(time.perf_counter() - t0)

    def expire(self, t: IcebergTable) -> None:
        t0 = time.perf_counter()
        try:
            super().expire(t)
        finally:
            self.step_s["expire"].append(time.perf_counter() - t0)


class WarningCounter(logging.Handler):
    """Counts the warnings whose message starts with one of `starts`."""

    def __init__(self, *starts: str) -> None:
        super().__init__(logging.WARNING)
        self.starts = starts
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if any(str(record.msg).startswith(s) for s in self.starts):
            self.count += 1


@contextlib.contextmanager
def counting_warnings(logger: str, *starts: str) -> Iterator[WarningCounter]:
    handler = WarningCounter(*starts)
    log = logging.getLogger(logger)
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


def bench_day_of_commits(
    sql: SqlServices,
    work: Path,
    commits: int,
    sensors: int,
    speed: float,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """A day of the readings table's commits, at up to `speed` times real time.

    One commit every ROTATE_SECONDS (at most `speed` times faster), each one file of
    `sensors` sensors x ROTATE_SECONDS (one reading a second) and three Kafka offsets,
    as the archiver commits them, through a writer handle of its own. Every
    MAINTENANCE_INTERVAL_SECONDS / ROTATE_SECONDS commits, one maintenance pass
    (stream_jobs.maintenance, defaults: compaction, then expiry and orphan removal
    through Trino) through a handle of its own, between two commits: as a pass that
    ends before the next commit (see stage_conflicts for one that does not).
    The snapshot retention is scaled to keep as many commits as the default
    keeps in real time (SNAPSHOT_RETENTION_SECONDS / ROTATE_SECONDS), from the wall
    time a commit took so far, pauses included, and at least Trino's floor (a minute)."""
    uid = f"day{uuid.uuid4().hex[:6]}"
    lake_dir = work / "day-lake"
    writer: TimedTable = open_table(sql, lake_dir, READINGS, uid, TimedTable)
    rotate = DEFAULTS.rotate_seconds
    kept_commits = DEFAULTS.snapshot_retention_seconds / rotate  # 360 by default
    per_pass = max(1, round(DEFAULTS.maintenance_interval_seconds / rotate))  # 30
    policy = MaintenancePolicy(
        interval_s=DEFAULTS.maintenance_interval_seconds,
        target_rows=DEFAULTS.compact_target_rows,
        min_files=DEFAULTS.compact_min_files,
        snapshot_retention_s=60,
        orphan_retention_s=60,
    )
    maintenance = CountingMaintenance(
        [open_table(sql, lake_dir, READINGS, uid)], sql=sql.query, policy=policy
    )
    _ = writer.table  # created before the clock starts
    interval = rotate / speed
    rows_per_commit = sensors * int(rotate)
    day = datetime.now(UTC).date()
    timeline: list[dict[str, Any]] = []
    topic = "bench.day"
    offsets = dict.fromkeys(range(3), 0)
    step = max(1, commits // 12)
    with (
        counting_warnings("pyiceberg.table", "Commit failed due to a concurrent") as rebased,
        counting_warnings("stream_jobs.iceberg", "%s: commit failed") as retried,
    ):
        t0 = due = time.perf_counter()
        for i in range(commits):
            rows = readings_slice(day, i * rows_per_commit, rows_per_commit, sensors, US, seed=i)
            for p in range(3):
                offsets[p] += rows_per_commit // 3
            files = writer.write(rows)
            writer.commit(files, offset_properties(topic, offsets))
            if (i + 1) % per_pass == 0:
                wall_per_commit = (time.perf_counter() - t0) / (i + 1)
                retention = max(60, round(kept_commits * wall_per_commit))
                maintenance.policy = replace(
                    policy, snapshot_retention_s=retention, orphan_retention_s=retention
                )
                maintenance.run_once()
            if (i + 1) % step == 0 or i + 1 == commits:
                fig = table_figures(writer.table)
                window = writer.commit_s[-step:]
                point = {
                    "commits": i + 1,
                    "elapsed_s": time.perf_counter() - t0,
                    "snapshots": fig["snapshots"],
                    "manifests": fig["manifests"],
                    "data_files": fig["data_files"],
                    "metadata_mb": fig["metadata_bytes"] / 1e6,
                    "metadata_json_kb": fig["metadata_json_bytes"] / 1e3,
                    "commit_median_ms": percentile(window, 0.5) * 1000,
                    "commit_p95_ms": percentile(window, 0.95) * 1000,
                }
                timeline.append(point)
                report(
                    "  day: "
                    + ", ".join(
                        f"{k}={v:,.1f}" if isinstance(v, float) else f"{k}={v:,}"
                        for k, v in point.items()
                    )
                )
            due = max(due + interval, time.perf_counter() - interval)  # no catching up
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    elapsed = time.perf_counter() - t0
    table = writer.refresh()
    fig = table_figures(table)
    plan_t = time.perf_counter()
    data_files(table)
    plan_s = time.perf_counter() - plan_t
    count_t = time.perf_counter()
    counted = sql.query(f"SELECT count(*) FROM iceberg.{writer.ident}")[0][0]
    count_s = time.perf_counter() - count_t
    expected = commits * rows_per_commit
    assert fig["rows"] == counted == expected, (fig["rows"], counted, expected)
    first, last = writer.commit_s[:100], writer.commit_s[-100:]
    return {
        "commits": commits,
        "rows_per_commit": rows_per_commit,
        "elapsed_s": elapsed,
        "day_fraction": commits * rotate / 86_400,
        "snapshot_retention_s": maintenance.policy.snapshot_retention_s,
        "snapshots": fig["snapshots"],
        "manifests": fig["manifests"],
        "data_files": fig["data_files"],
        "metadata_files": fig["metadata_files"],
        "metadata_mb": fig["metadata_bytes"] / 1e6,
        "metadata_json_kb": fig["metadata_json_bytes"] / 1e3,
        "commit_first100_median_ms": percentile(first, 0.5) * 1000,
        "commit_first100_p95_ms": percentile(first, 0.95) * 1000,
        "commit_last100_median_ms": percentile(last, 0.5) * 1000,
        "commit_last100_p95_ms": percentile(last, 0.95) * 1000,
        "commit_max_ms": max(writer.commit_s) * 1000,
        "commits_rebased": rebased.count,  # pyiceberg retried on a concurrent commit
        "commits_retried": retried.count,  # ours: an error, checked and tried again
        "maintenance_passes": maintenance.stats.passes,
        "maintenance_errors": maintenance.stats.errors,
        "compactions": maintenance.stats.compactions,
        "rows_rewritten": maintenance.rows_rewritten,
        "compact_median_s": percentile(maintenance.step_s["compact"], 0.5),
        "compact_max_s": max(maintenance.step_s["compact"], default=float("nan")),
        "expire_median_s": percentile(maintenance.step_s["expire"], 0.5),
        "plan_files_s": plan_s,
        "trino_count_s": count_s,
    }


# -- what the compaction policy rewrites over a day (planning only, no I/O) --------------


def compaction_rewrites(
    rows_per_commit: int,
    commits: int = 8_640,
    commits_per_pass: int = 30,
    target_rows: int = DEFAULTS.compact_target_rows,
    min_files: int = DEFAULTS.compact_min_files,
) -> dict[str, Any]:
    """One day partition through a day of commits and maintenance passes, planned
    with stream_jobs.maintenance.plan_groups (file names random, as the writers'
    uuid4 names): rows rewritten by compaction against rows written."""
    files: dict[str, int] = {}
    rewritten = groups = 0
    for i in range(commits):
        files[uuid.uuid4().hex] = rows_per_commit
        if (i + 1) % commits_per_pass == 0:
            for group in plan_groups(
                [(None, rows, path) for path, rows in files.items()], target_rows, min_files
            ):
                rows = sum(files.pop(p) for p in group)
                files[uuid.uuid4().hex] = rows
                rewritten += rows
                groups += 1
    written = rows_per_commit * commits
    return {
        "rows_per_commit": rows_per_commit,
        "day_rows": written,
        "rows_rewritten": rewritten,
        "rewrites_per_row": rewritten / written,
        "groups": groups,
        "files_at_end": len(files),
    }


def run(env: BenchEnv, args: argparse.Namespace, record: Record) -> None:
    record(
        "a day of commits (metadata)",
        bench_day_of_commits(env.sql, env.work, args.day_commits, args.day_sensors, args.day_speed),
    )
    for sensors in (10, 100, 1000):
        rows = sensors * int(DEFAULTS.rotate_seconds)
        record(f"compaction plan, a day of {sensors} sensors", compaction_rewrites(rows))
