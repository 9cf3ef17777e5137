"""One-shot migration of an archive of the former layout (Hive external tables over
Parquet folders, JSON checkpoints in the lake) into the Iceberg tables.

What it moves, per table (raw.readings, raw.sensors, raw.rejected,
curated.readings_1m_revisions) that has legacy data (Parquet files under
`<zone>/<name>/`, a legacy checkpoint folder it depends on, or a Hive table of its
name) and no `iot.migrated-from-hive` property yet:
* the flushes a crash left pending in the legacy checkpoints are rolled back
  (their files deleted), as the former jobs did at start-up;
* the Hive table's definition is dropped (EXTERNAL: its files stay), and the
  Iceberg table created in its place;
* day folder by day folder, every file (those of compaction's `_c<n>` subfolders
  too) is read, given the date column from its folder name and the current columns
  (columns added later: null), and rewritten in our layout into the table's location;
* one commit adds all the files together with the Kafka offsets of the legacy
  checkpoints (table properties `iot.kafka.<topic>.<partition>`), for the 1-minute
  table also its open windows (a state file named by `iot.state.<topic>.<partition>`),
  and the marker `iot.migrated-from-hive`;
* then the legacy folder and checkpoints are deleted.

Guarantees:
* Exactly once. A record of Kafka is in the table iff its offset is below the
  legacy checkpoint of its (topic, partition): rows at or past it (a flush that
  never completed) are left out, and rows seen twice in a day (a compaction that
  was interrupted, or whose old files were still waiting for deletion, leaves a
  day's rows both in the day folder and in `_c<n>`) are kept once, by (topic,
  kafka_partition, kafka_offset); a dead letter without kafka_topic came from the
  dead-letter topic. Rows without Kafka offsets (the backfill command's) are kept
  as they are (a day that compaction left doubled keeps them twice). Since the
  table then holds the checkpoints' offsets, the jobs resume exactly where the
  former ones stopped.
* Crash-safe and idempotent. The files, the offsets and the marker land in one
  atomic commit per table; nothing legacy is deleted before it. A crash before the
  commit leaves orphan files (in no snapshot; maintenance removes them) and the
  legacy data untouched: the next run starts that table over (a table without the
  marker is an attempt that failed; a writer never commits before the migration,
  and one that did makes this refuse rather than double rows). A crash after it
  leaves only deletions to do, which the next run finishes. A second run does
  nothing. raw.readings' legacy checkpoints (they also cover raw.rejected's rows of
  the readings topic) are deleted only once both tables are migrated.
* Bounded memory: one day folder of one table at a time (for the unpartitioned
  raw.sensors: the table), plus the list of written file URIs.

No writer of the former layout may run meanwhile: the stream jobs call this before
they start (stream_jobs.app). Several stream-job processes starting together each
try it: a table's commit lands only while the table has no marker (a conditional
commit, stream_jobs.iceberg), so one migration of it lands; the others are refused
(Fenced), retried, and find it done.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from hive_metastore.ttypes import NoSuchObjectException

from iot_common.crashpoints import crash_point
from stream_jobs.checkpoint import new_state_path, state_key
from stream_jobs.errors import StreamJobError
from stream_jobs.iceberg import (
    OFFSET_PREFIX,
    IcebergTable,
    committed_offsets,
    ensure_table,
    offset_key,
    table_dir,
)
from stream_jobs.lake import Lake
from stream_jobs.maintenance import conform
from stream_jobs.parquet import parquet_bytes
from stream_jobs.settings import StreamSettings
from stream_jobs.tables import READINGS, READINGS_1M_REVISIONS, REJECTED, SENSORS, TableSpec

log = logging.getLogger(__name__)

MIGRATED = "iot.migrated-from-hive"  # table property: when the migration committed
CHECKPOINTS = "_checkpoints"
COMPACTION_JOURNAL = "compaction"  # the former compaction's journal, under _checkpoints/
HIVE_DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # the folder of a null date


class MigrationError(StreamJobError):
    """The legacy archive cannot be migrated safely as it is; nothing was committed."""


# -- pure parts ---------------------------------------------------------------------


@dataclass(frozen=True)
class LegacyCheckpoint:
    """A checkpoint of the former jobs (`_checkpoints/<table>/<topic>+<p>.json`)."""

    topic: str
    partition: int
    next_offset: int  # every record below it is in the archive
    pending_files: tuple[str, ...] = ()  # files of an unfinished flush (relative to the lake)
    windows: Any = None  # the 1-minute job's open windows


def read_checkpoint(doc: object, name: str = "") -> LegacyCheckpoint:
    """A legacy checkpoint document; `name` is its file name, `<topic>+<p>.json`
    (where topic and partition come from when the document lacks them)."""
    if not isinstance(doc, dict):
        raise MigrationError(f"legacy checkpoint {name!r} is not a JSON object")
    stem = name.rsplit("/", 1)[-1].removesuffix(".json")
    file_topic, _, file_partition = stem.rpartition("+")
    try:
        topic = str(doc.get("topic") or file_topic)
        partition = int(doc.get("partition", file_partition))
        next_offset = int(doc["next_offset"])
        pending = doc.get("pending") or {}
        files = tuple(str(f) for f in pending.get("files") or ())
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MigrationError(f"legacy checkpoint {name!r} is not readable: {exc!r}") from exc
    if not topic:
        raise MigrationError(f"legacy checkpoint {name!r} names no topic")
    return LegacyCheckpoint(topic, partition, next_offset, files, doc.get("windows"))


def day_of_folder(folder: str, column: str) -> date | None:
    """The date of a Hive day folder `<column>=YYYY-MM-DD` (None: the folder of a
    null date). ValueError if it is not a day folder of `column`."""
    name = folder.rstrip("/").rsplit("/", 1)[-1]
    key, sep, value = name.partition("=")
    if not sep or key != column:
        raise ValueError(f"{folder!r} is not a day folder of {column}")
    if value == HIVE_DEFAULT_PARTITION:
        return None
    return date.fromisoformat(value)


def legacy_rows(parts: Sequence[pa.Table], spec: TableSpec, day: date | None) -> pa.Table:
    """The rows of the files of one day folder as the table has them: its current
    columns (those a file lacks: null), then the date column from the folder name."""
    tables = [conform(p, spec.columns) for p in parts]
    rows = pa.concat_tables(tables) if tables else spec.columns.empty_table()
    if spec.partition_column is None:
        return rows
    return rows.append_column(
        pa.field(spec.partition_column, pa.date32()), pa.array([day] * rows.num_rows, pa.date32())
    )


def row_topics(rows: pa.Table, topic: str) -> pa.ChunkedArray:
    """The Kafka topic of each row: its kafka_topic, else `topic` (the table's own;
    a dead letter written before the column existed came from the dead-letter topic)."""
    default = pa.chunked_array([pa.array([topic] * rows.num_rows, pa.string())])
    if "kafka_topic" not in rows.column_names:
        return default
    return pc.coalesce(rows.column("kafka_topic"), default)


def below_checkpoints(
    rows: pa.Table, topics: pa.ChunkedArray, floors: Mapping[tuple[str, int], int]
) -> pa.Table:
    """The rows whose kafka_offset is below the checkpoint of their (topic,
    kafka_partition). Rows without offsets, or of a partition without a checkpoint,
    are kept."""
    if not floors or rows.num_rows == 0:
        return rows
    part, offset = rows.column("kafka_partition"), rows.column("kafka_offset")
    drop = pa.chunked_array([pa.array([False] * rows.num_rows)])
    for (topic, partition), floor in floors.items():
        hit = pc.and_(
            pc.and_(pc.equal(topics, topic), pc.equal(part, partition)),
            pc.greater_equal(offset, floor),
        )
        drop = pc.or_(drop, pc.fill_null(hit, False))
    return rows.filter(pc.invert(drop))


def deduplicate(rows: pa.Table, topics: pa.ChunkedArray) -> pa.Table:
    """Each (topic, kafka_partition, kafka_offset) once (the first); rows without
    offsets all kept, in the order given."""
    n = rows.num_rows
    if n == 0:
        return rows
    index = pa.array(range(n), pa.int64())
    part, offset = rows.column("kafka_partition"), rows.column("kafka_offset")
    keyed = pc.and_(pc.is_valid(part), pc.is_valid(offset))
    keys = pa.table({"t": topics, "p": part, "o": offset, "i": index}).filter(keyed)
    first = keys.group_by(["t", "p", "o"], use_threads=False).aggregate([("i", "min")])
    keep = pa.concat_arrays(
        [first.column("i_min").combine_chunks(), index.filter(pc.invert(keyed).combine_chunks())]
    )
    if len(keep) == n:
        return rows
    return rows.take(pc.take(keep, pc.sort_indices(keep)))


def clean(
    rows: pa.Table, topic: str, floors: Mapping[tuple[str, int], int]
) -> tuple[pa.Table, set[tuple[str, int]]]:
    """A day's rows below the checkpoints and de-duplicated (tables with Kafka
    lineage; others as they are), and the (topic, partition)s they hold that have no
    checkpoint."""
    if "kafka_offset" not in rows.column_names:
        return rows, set()
    rows = below_checkpoints(rows, row_topics(rows, topic), floors)
    topics = row_topics(rows, topic)
    rows = deduplicate(rows, topics)
    pairs = pa.table({"t": row_topics(rows, topic), "p": rows.column("kafka_partition")})
    found = pairs.filter(pc.is_valid(pairs.column("p"))).group_by(["t", "p"]).aggregate([])
    unknown = {
        (t, p)
        for t, p in zip(found.column("t").to_pylist(), found.column("p").to_pylist(), strict=True)
        if (t, p) not in floors
    }
    return rows, unknown


# -- what each table holds ---------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    spec: TableSpec
    topic: str  # the Kafka topic of its rows (raw.rejected: of those without kafka_topic)
    checkpoints: tuple[str, ...]  # folders under _checkpoints/ with the offsets it holds

    @property
    def folder(self) -> str:
        return f"{self.spec.zone}/{self.spec.name}"


def plans(settings: StreamSettings) -> list[Plan]:
    """raw.rejected holds dead letters of two topics: the dead-letter topic's (its own
    checkpoints) and the readings topic's (the readings archiver's checkpoints)."""
    return [
        Plan(READINGS, settings.kafka_topic_readings, (READINGS.name,)),
        Plan(SENSORS, settings.kafka_topic_sensors, (SENSORS.name,)),
        Plan(REJECTED, settings.kafka_topic_dlq, (REJECTED.name, READINGS.name)),
        Plan(
            READINGS_1M_REVISIONS,
            settings.kafka_topic_readings,
            (READINGS_1M_REVISIONS.name,),
        ),
    ]


# -- the lake --------------------------------------------------------------------------


def _is_data(path: str) -> bool:
    return path.endswith(".parquet") and not path.rsplit("/", 1)[-1].startswith((".", "_"))


def _has_legacy_files(lake: Lake, folder: str) -> bool:
    try:
        for _dir, _dirs, files in lake.fs.walk(lake.path(folder)):
            if any(_is_data(f) for f in files):
                return True
    except FileNotFoundError:
        return False
    return False


def _exists(lake: Lake, relative: str) -> bool:
    return bool(lake.fs.exists(lake.path(relative)))


def _remove(lake: Lake, relative: str) -> None:
    path = lake.path(relative)
    if not lake.fs.exists(path):
        return
    with contextlib.suppress(FileNotFoundError):
        lake.fs.rm(path, recursive=True)
    log.info("migration: deleted the legacy %s", lake.uri_of(path))


def _checkpoints(lake: Lake, folder: str) -> list[tuple[str, LegacyCheckpoint]]:
    found = []
    for path in lake.list_files(lake.path(CHECKPOINTS, folder)):
        if path.endswith(".json"):
            found.append((path, read_checkpoint(lake.read_json(path), path)))
    return found


def _roll_back(lake: Lake, folder: str) -> list[LegacyCheckpoint]:
    """The checkpoints of a legacy folder, their pending flushes undone."""
    done = []
    for path, ckpt in _checkpoints(lake, folder):
        if ckpt.pending_files:
            for rel in ckpt.pending_files:
                lake.delete(lake.path(rel))
            doc = lake.read_json(path)
            lake.write_json(path, {**(doc or {}), "pending": None})
            log.warning(
                "migration: rolled back an unfinished flush of %s partition %d (%d files)",
                ckpt.topic,
                ckpt.partition,
                len(ckpt.pending_files),
            )
        done.append(
            LegacyCheckpoint(ckpt.topic, ckpt.partition, ckpt.next_offset, (), ckpt.windows)
        )
    return done


def _day_folders(lake: Lake, plan: Plan) -> Iterator[tuple[date | None, list[str]]]:
    """(date, files) of each day folder of a legacy table, one at a time (the
    unpartitioned raw.sensors: all its files, once)."""
    root = lake.path(plan.folder)
    column = plan.spec.partition_column
    if column is None:
        files = [p for p in lake.list_files(root) if _is_data(p)]
        if files:
            yield None, files
        return
    try:
        entries = lake.fs.ls(root, detail=True)
    except FileNotFoundError:
        return
    for entry in sorted(entries, key=lambda e: str(e["name"])):
        name = str(entry["name"]).rstrip("/")
        if entry.get("type") != "directory":
            if _is_data(name):
                log.warning("migration: %s is in no day folder (no query saw it): left out", name)
            continue
        try:
            day = day_of_folder(name, column)
        except ValueError:
            if _has_legacy_files(lake, lake.relative(name)):
                log.warning("migration: %s is no day folder of %s: left out", name, column)
            continue
        files = [p for p in lake.list_files(name) if _is_data(p)]
        if files:
            yield day, files


def _read(lake: Lake, path: str) -> pa.Table:
    with lake.fs.open(path, "rb") as f:
        return pq.read_table(f)


# -- the metastore -------------------------------------------------------------------


def _hms_table(t: IcebergTable) -> Any | None:
    """The metastore's entry of the table's name (None: there is none)."""
    db, name = t.ident.split(".", 1)
    with t.catalog._client as client:
        try:
            return client.get_table(dbname=db, tbl_name=name)
        except NoSuchObjectException:
            return None


def _is_iceberg(hms_table: Any) -> bool:
    parameters = getattr(hms_table, "parameters", None) or {}
    return str(parameters.get("table_type", "")).upper() == "ICEBERG"


def _drop_hive_table(t: IcebergTable) -> None:
    """Only the definition: the table is EXTERNAL (and deleteData=False), its files stay."""
    db, name = t.ident.split(".", 1)
    with t.catalog._client as client, contextlib.suppress(NoSuchObjectException):
        client.drop_table(db, name, False)
    log.info("migration: dropped the Hive table %s (its files stay until migrated)", t.ident)


# -- one table -------------------------------------------------------------------------


def _write(t: IcebergTable, rows: pa.Table) -> list[str]:
    """Files of our layout for a day's rows, one per day of the partition source
    (what the table's partitioning needs to take a file as a whole)."""
    spec = t.spec
    if rows.num_rows == 0:
        return []
    if spec.partition_source is None or spec.partition_column is None:
        return t.write(rows)
    days = pc.cast(rows.column(spec.partition_source), pa.date32())
    files = []
    for value in pc.unique(days).to_pylist():
        mask = pc.is_null(days) if value is None else pc.fill_null(pc.equal(days, value), False)
        part = rows.filter(mask)
        if part.column(spec.partition_column).null_count:
            # A folder of a null date: IcebergTable.write splits by that column.
            files.append(_write_one(t, part))
        else:
            files += t.write(part)
    return files


def _write_one(t: IcebergTable, rows: pa.Table) -> str:
    path = t.lake.path(table_dir(t.spec), "data", f"{uuid.uuid4().hex}.parquet")
    t.lake.write_atomic(path, parquet_bytes(rows, t.spec.sort_by, t.zstd_level))
    return t.lake.uri_of(path)


def _start_over(t: IcebergTable) -> None:
    """The Iceberg table, created if missing. One that exists without the marker is
    an earlier attempt that did not commit (its files are orphans): the migration
    starts over. One that holds a writer's commits is refused (migrating into it
    would double rows)."""
    ensure_table(t.catalog, t.spec, t.lake, t.namespaces)
    table = t.refresh()
    snapshot = table.current_snapshot()
    records = snapshot.summary.get("total-records") if snapshot and snapshot.summary else None
    if any(k.startswith(OFFSET_PREFIX) for k in table.properties) or records not in (None, "0"):
        raise MigrationError(
            f"{t.ident} already holds rows or Kafka offsets that a writer committed, but "
            "the legacy archive was not migrated into it: move one of the two away first"
        )


def _migrate_table(
    plan: Plan, t: IcebergTable, lake: Lake, checkpoints: Sequence[LegacyCheckpoint]
) -> int:
    floors = {(c.topic, c.partition): c.next_offset for c in checkpoints}
    files: list[str] = []
    rows_total = legacy_files = days = 0
    unknown: set[tuple[str, int]] = set()
    for day, paths in _day_folders(lake, plan):
        rows = legacy_rows([_read(lake, p) for p in paths], plan.spec, day)
        rows, missing = clean(rows, plan.topic, floors)
        unknown |= missing
        files += _write(t, rows)
        rows_total += rows.num_rows
        legacy_files += len(paths)
        days += 1
    if unknown:
        log.warning(
            "migration: %s holds rows of %s without a legacy checkpoint: kept all of them",
            t.ident,
            sorted(unknown),
        )
    properties: dict[str, str] = {}
    for c in checkpoints:
        properties[offset_key(c.topic, c.partition)] = str(c.next_offset)
    if plan.spec is READINGS_1M_REVISIONS:
        for c in checkpoints:
            if not isinstance(c.windows, dict):
                raise MigrationError(
                    f"the 1-minute job's legacy checkpoint of {c.topic} partition "
                    f"{c.partition} holds no windows"
                )
            state = new_state_path(plan.spec.name, c.topic, c.partition)
            doc = {
                "topic": c.topic,
                "partition": c.partition,
                "next_offset": c.next_offset,
                "windows": c.windows,
            }
            lake.write_json(lake.path(state), doc)
            properties[state_key(c.topic, c.partition)] = state
    properties[MIGRATED] = datetime.now(UTC).isoformat()
    crash_point("migration.written")
    # Only while no other process's migration of the table landed (several members).
    t.commit(files, properties, expect={MIGRATED: None})
    log.info(
        "migration: %s: %d rows of %d legacy files (%d days) committed as %d files, offsets %s",
        t.ident,
        rows_total,
        legacy_files,
        days,
        len(files),
        {
            topic: committed_offsets(properties, topic)
            for topic in sorted({c.topic for c in checkpoints})
        },
    )
    crash_point("migration.committed")
    return rows_total


# -- entry -----------------------------------------------------------------------------


def migrate(
    settings: StreamSettings, lake: Lake, make_table: Callable[[TableSpec], IcebergTable]
) -> dict[str, int]:
    """Migrate what the former layout left in the lake and the metastore: rows
    migrated per table (by table name), empty when there was nothing to migrate."""
    all_plans = plans(settings)
    tables = {p.spec.name: make_table(p.spec) for p in all_plans}
    with contextlib.suppress(AttributeError):
        lake.fs.invalidate_cache()
    marked: set[str] = set()
    hive: set[str] = set()
    for p in all_plans:
        entry = _hms_table(tables[p.spec.name])
        if entry is None:
            continue
        if not _is_iceberg(entry):
            hive.add(p.spec.name)
        elif MIGRATED in tables[p.spec.name].refresh().properties:
            marked.add(p.spec.name)
    todo = [
        p
        for p in all_plans
        if p.spec.name not in marked
        and (
            p.spec.name in hive
            or _has_legacy_files(lake, p.folder)
            or any(_exists(lake, f"{CHECKPOINTS}/{c}") for c in p.checkpoints)
        )
    ]
    if todo:
        log.warning(
            "migration: moving the legacy Hive tables %s into Iceberg tables",
            [tables[p.spec.name].ident for p in todo],
        )
    checkpoints = {
        folder: _roll_back(lake, folder)
        for folder in sorted({c for p in todo for c in p.checkpoints})
    }
    migrated: dict[str, int] = {}
    for p in todo:
        t = tables[p.spec.name]
        if p.spec.name in hive:
            _drop_hive_table(t)
        _start_over(t)
        migrated[p.spec.name] = _migrate_table(
            p, t, lake, [c for folder in p.checkpoints for c in checkpoints[folder]]
        )
        marked.add(p.spec.name)
        _clean_up(lake, all_plans, marked)
    _clean_up(lake, all_plans, marked)
    if marked:  # every table with legacy data is migrated by now
        _remove(lake, f"{CHECKPOINTS}/{COMPACTION_JOURNAL}")
    if migrated:
        log.warning("migration: done, rows per table: %s", migrated)
    return migrated


def _clean_up(lake: Lake, all_plans: Sequence[Plan], marked: set[str]) -> None:
    """The legacy files of migrated tables, and each legacy checkpoint folder once
    every table that takes offsets from it is migrated."""
    for p in all_plans:
        if p.spec.name in marked:
            _remove(lake, p.folder)
    for folder in sorted({c for p in all_plans for c in p.checkpoints}):
        users = [p.spec.name for p in all_plans if folder in p.checkpoints]
        if all(u in marked for u in users):
            _remove(lake, f"{CHECKPOINTS}/{folder}")
