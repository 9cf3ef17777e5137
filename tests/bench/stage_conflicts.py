"""Stage `conflicts`: compaction of a past day beside a writer committing to today.

Each of `--conflict-attempts` attempts commits `--conflict-files` fresh small files
(`--compact-rows` readings each) to another past day, then runs one compaction
pass (Maintenance.compact, defaults) through its own table handle while a writer's
next commit to today lands at a random moment of the following ROTATE_SECONDS (as
the archiver's next commit would: the maintenance does not know its phase).
Measures how many passes land and how many are refused, how often the writer
committed during the pass, and the pass's median time.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pyiceberg.exceptions import ValidationException

from stream_jobs.iceberg import IcebergTable, offset_properties
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
)
from tests.integration.harness import SqlServices


def bench_compaction_conflicts(
    sql: SqlServices,
    work: Path,
    attempts: int,
    files: int,
    rows_per_file: int,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Compaction of a past day while the archiver commits to today every
    ROTATE_SECONDS: each attempt compacts `files` fresh small files of another past
    day, and one writer commit to today lands at a random moment of the
    ROTATE_SECONDS after the pass starts (as a writer's next commit would, whose
    phase the maintenance does not know). How many passes land."""
    uid = f"cfl{uuid.uuid4().hex[:6]}"
    lake_dir = work / "conflict-lake"
    writer: IcebergTable = open_table(sql, lake_dir, READINGS, uid)
    compactor: IcebergTable = open_table(sql, lake_dir, READINGS, uid)
    maintenance = GroupTimedMaintenance(
        [compactor],
        sql=None,
        policy=MaintenancePolicy(
            target_rows=DEFAULTS.compact_target_rows, min_files=DEFAULTS.compact_min_files
        ),
    )
    _ = writer.table
    today = datetime.now(UTC).date()
    rng = random.Random(7)
    landed = refused = during = 0
    durations: list[float] = []
    for a in range(attempts):
        day = today - timedelta(days=10 + a)
        uris: list[str] = []
        for f in range(files):
            rows = readings_slice(day, f * rows_per_file, rows_per_file, 1000, 864_000, f)
            uris += compactor.write(rows)
        compactor.commit(uris, {"iot.bench.attempt": str(a)})
        # the writer's next file, ready: only its commit is left, as in a flush
        mine = writer.write(readings_slice(today, a * 1000, 1000, 100, US, seed=a))
        commit_at: list[float] = []

        def commit_today(files: list[str] = mine, n: int = a, at: list[float] = commit_at) -> None:
            writer.commit(files, offset_properties("bench.conflict", {0: 1000 * (n + 1)}))
            at.append(time.perf_counter())

        timer = threading.Timer(rng.uniform(0, DEFAULTS.rotate_seconds), commit_today)
        t0 = time.perf_counter()
        timer.start()
        try:
            maintenance.compact(compactor)
            landed += 1
            outcome = "landed"
        except ValidationException as exc:
            refused += 1
            outcome = f"refused ({str(exc)[:70]}...)"
        t1 = time.perf_counter()
        timer.join()
        if commit_at and commit_at[0] < t1:
            during += 1
        durations.append(t1 - t0)
        report(
            f"  conflicts: attempt {a + 1}: pass {t1 - t0:.1f} s, writer committed "
            f"{'during' if commit_at and commit_at[0] < t1 else 'after'} it; {outcome}"
        )
    return {
        "attempts": attempts,
        "rows_per_attempt": files * rows_per_file,
        "writer_commit_during_pass": during,
        "landed": landed,
        "refused": refused,
        "compact_median_s": percentile(durations, 0.5),
        "writer_interval_s": DEFAULTS.rotate_seconds,
    }


def run(env: BenchEnv, args: argparse.Namespace, record: Record) -> None:
    record(
        "compaction beside a writer",
        bench_compaction_conflicts(
            env.sql, env.work, args.conflict_attempts, args.conflict_files, args.compact_rows
        ),
    )
