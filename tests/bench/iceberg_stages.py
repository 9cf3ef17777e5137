"""The bench's Iceberg stages and helpers: timed commits, a day of commits at speed,
compaction of a large day, and what the compaction policy rewrites over a day.

Everything here runs in the bench process against the real Hive Metastore (and
Trino, for expiry and counts) that `tests.integration.harness.start_sql` starts.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.exceptions import NoSuchTableError, ValidationException
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from stream_jobs import backfill
from stream_jobs.iceberg import (
    OFFSET_PREFIX,
    IcebergTable,
    committed_offsets,
    connect,
    offset_properties,
)
from stream_jobs.lake import Lake
from stream_jobs.maintenance import Maintenance, MaintenancePolicy, plan_groups
from stream_jobs.settings import StreamSettings
from stream_jobs.tables import READINGS, TableSpec
from tests.integration.harness import SqlServices

DEFAULTS = StreamSettings(_env_file=None)
US = 1_000_000


# -- figures ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_ms(durations: list[float], prefix: str = "commit") -> dict[str, Any]:
    """Median and p95 of durations in seconds, as milliseconds."""
    return {
        f"{prefix}s": len(durations),
        f"{prefix}_median_ms": percentile(durations, 0.5) * 1000,
        f"{prefix}_p95_ms": percentile(durations, 0.95) * 1000,
    }


def vm_kib(field: str) -> int:
    """A Vm* line of /proc/self/status (VmRSS, VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- tables -------------------------------------------------------------------------------


def metastore_uri(sql: SqlServices) -> str:
    return f"thrift://127.0.0.1:{sql.stack.metastore_port}"


def namespaces(uid: str) -> dict[str, str]:
    """The SQL schemas of a bench run, as Pipeline names them (raw_<uid>, curated_<uid>)."""
    return {"raw": f"raw_{uid}", "curated": f"curated_{uid}"}


class TimedTable(IcebergTable):
    """An IcebergTable that times its commits (the whole call: the metastore commit,
    pyiceberg's retries on conflicts, ours on errors) and keeps the Kafka offsets it
    committed, so that committed rows are counted from what landed in the table."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commit_s: list[float] = []
        self.landed: dict[str, int] = {}  # offset property -> value, as committed

    def commit(self, files: list[str], properties: Mapping[str, str], **kwargs: Any) -> None:
        t0 = time.perf_counter()
        super().commit(files, properties, **kwargs)
        self.commit_s.append(time.perf_counter() - t0)
        for key, value in properties.items():
            if key.startswith(OFFSET_PREFIX):
                self.landed[key] = int(value)

    def committed(self, topic: str) -> int:
        """Records of `topic` below the committed offsets (a topic written from offset 0)."""
        prefix = f"{OFFSET_PREFIX}{topic}."
        return sum(v for k, v in list(self.landed.items()) if k.startswith(prefix))


def open_table(
    sql: SqlServices,
    lake_dir: Path,
    spec: TableSpec,
    uid: str,
    cls: type[IcebergTable] = IcebergTable,
) -> Any:
    """A handle on one of our tables in schemas of `uid` (its own metastore connection)."""
    lake = Lake(str(lake_dir))
    return cls(
        spec,
        catalog=connect(metastore_uri(sql), lake),
        lake=lake,
        namespaces=namespaces(uid),
        zstd_level=DEFAULTS.zstd_level,
    )


def data_files(table: Table) -> list[DataFile]:
    """The data files of the table's current snapshot."""
    return [task.file for task in table.scan().plan_files()]


def table_figures(table: Table) -> dict[str, int]:
    """Rows, data bytes and files of the current snapshot, and the metadata on disk."""
    files = data_files(table)
    meta_dir = Path(urlparse(table.location()).path) / "metadata"
    meta = [p.stat().st_size for p in meta_dir.iterdir()] if meta_dir.exists() else []
    current = table.current_snapshot()
    return {
        "rows": sum(f.record_count for f in files),
        "data_bytes": sum(f.file_size_in_bytes for f in files),
        "data_files": len(files),
        "snapshots": len(table.metadata.snapshots),
        "manifests": len(current.manifests(table.io)) if current else 0,
        "metadata_files": len(meta),
        "metadata_bytes": sum(meta),
        "metadata_json_bytes": Path(urlparse(table.metadata_location).path).stat().st_size,
    }


class CommittedRows:
    """Rows of a topic committed to a pipeline's table: the sum of the offsets in its
    table properties, read from the metastore (0 before the table exists)."""

    def __init__(self, sql: SqlServices, lake_dir: Path, uid: str, topic: str) -> None:
        self.catalog = connect(metastore_uri(sql), Lake(str(lake_dir)))
        self.ident = f"{namespaces(uid)['raw']}.{READINGS.name}"
        self.topic = topic

    def __call__(self) -> int:
        try:
            table = self.catalog.load_table(self.ident)
        except NoSuchTableError:
            return 0
        return sum(committed_offsets(table.properties, self.topic).values())

    def table(self) -> Table:
        return self.catalog.load_table(self.ident)


# -- synthetic readings -------------------------------------------------------------------


def readings_slice(
    day: date, first: int, n: int, sensors: int, tick_us: int, seed: int
) -> pa.Table:
    """stream_jobs.backfill.readings_slice with Kafka lineage as the archiver writes
    it (3 partitions by sensor, growing offsets) and the generator's MQTT topic."""
    rows = backfill.readings_slice(day, first, n, sensors, tick_us, seed)
    index = pc.add(pa.array(range(n), pa.int64()), first)
    sensor = pc.add(pc.subtract(index, pc.multiply(pc.divide(index, sensors), sensors)), 1)
    partition = pc.cast(pc.subtract(sensor, pc.multiply(pc.divide(sensor, 3), 3)), pa.int32())
    for name, column in (
        ("mqtt_topic", pa.array(["sensors"] * n, pa.string())),
        ("kafka_partition", partition),
        ("kafka_offset", pc.divide(index, 3)),
    ):
        rows = rows.set_column(rows.schema.get_field_index(name), name, column)
    return rows


# -- a day of commits ---------------------------------------------------------------------


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
    ends before the next commit (see `bench_compaction_conflicts` for one that does
    not). The snapshot retention is scaled to keep as many commits as the default
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
        "maintenance_passes": maintenance.stats["passes"],
        "maintenance_errors": maintenance.stats["errors"],
        "compactions": maintenance.stats["compactions"],
        "rows_rewritten": maintenance.rows_rewritten,
        "compact_median_s": percentile(maintenance.step_s["compact"], 0.5),
        "compact_max_s": max(maintenance.step_s["compact"], default=float("nan")),
        "expire_median_s": percentile(maintenance.step_s["expire"], 0.5),
        "plan_files_s": plan_s,
        "trino_count_s": count_s,
    }


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


# -- compaction of a large day ------------------------------------------------------------


class GroupTimedMaintenance(Maintenance):
    """The maintenance, recording the time and the peak RSS after each rewritten group."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.groups: list[tuple[float, int, int]] = []  # (seconds, rows, peak RSS KiB)

    def rewrite(self, t: IcebergTable, files: list[DataFile]) -> None:
        t0 = time.perf_counter()
        super().rewrite(t, files)
        rows = sum(f.record_count for f in files)
        self.groups.append((time.perf_counter() - t0, rows, vm_kib("VmHWM")))


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
