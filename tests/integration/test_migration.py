"""An archive of the former layout (Hive external tables over Parquet day folders,
JSON checkpoints in the lake) becomes the Iceberg tables (stream_jobs.migrate):
every row below its checkpoint is there exactly once, the pending flush is not,
the tables hold the checkpoints' offsets, the legacy files are gone, and a second
run, or a run after a crash at either step of the migration, changes nothing more."""

import json
import os
import subprocess
import sys
import uuid
from contextlib import suppress
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from iot_common.crashpoints import CRASH_ENV, CRASH_EXIT_CODE, STEPS
from local.services import ROOT
from stream_jobs.checkpoint import state_key
from stream_jobs.iceberg import IcebergTable, committed_offsets, connect
from stream_jobs.lake import Lake
from stream_jobs.migrate import MIGRATED, _hms_table, _is_iceberg, migrate
from stream_jobs.parquet import parquet_bytes
from stream_jobs.settings import StreamSettings
from stream_jobs.tables import (
    READINGS,
    READINGS_1M_REVISIONS,
    REJECTED,
    SENSORS,
    TABLES,
    TS,
)

pytestmark = pytest.mark.integration

TOPIC, DLQ, SENSORS_TOPIC = "iot.readings", "iot.readings.dlq", "iot.sensors"
DAY1, DAY2 = date(2026, 1, 1), date(2026, 1, 2)
# The tables of the former layout, which the migration moves (later tables are new).
LEGACY = (READINGS, SENSORS, REJECTED, READINGS_1M_REVISIONS)
WINDOWS = {"clock": "x", "clock_us": 1, "open": [["Sensor 1", 60_000_000, {"count": 2}]]}
MIGRATION_STEPS = ("migration.written", "migration.committed")


# -- a legacy archive, by hand ---------------------------------------------------------


def readings(partition, offsets, day, backfill=False):
    n = len(offsets)
    ts = [datetime(day.year, day.month, day.day, 10) + timedelta(seconds=o) for o in offsets]
    return pa.table(
        {
            "sensor_id": [f"Sensor {o % 3}" for o in offsets],
            "ts": pa.array(ts, TS),
            "value": [float(o) for o in offsets],
            "payload": [f'{{"offset": {o}}}' for o in offsets],
            "mqtt_topic": ["backfill" if backfill else "sensors"] * n,
            "received_at": pa.array([t + timedelta(seconds=1) for t in ts], TS),
            "kafka_partition": pa.array([None if backfill else partition] * n, pa.int32()),
            "kafka_offset": pa.array([None if backfill else o for o in offsets], pa.int64()),
        },
        schema=READINGS.schema,
    )


def dead_letters(topic, offsets, day, old=False):
    n = len(offsets)
    received = [datetime(day.year, day.month, day.day, 11) + timedelta(seconds=o) for o in offsets]
    t = pa.table(
        {
            "reason": ["not_json: x"] * n,
            "reason_code": ["not_json"] * n,
            "payload": [b"x%d" % o for o in offsets],
            "payload_text": [f"x{o}" for o in offsets],
            "mqtt_topic": ["sensors"] * n,
            "received_at": pa.array(received, TS),
            "kafka_partition": pa.array([0] * n, pa.int32()),
            "kafka_offset": pa.array(offsets, pa.int64()),
            "kafka_topic": [topic] * n,
            "payload_size": pa.array([2] * n, pa.int64()),
            "payload_sha256": ["0" * 64] * n,
        },
        schema=REJECTED.columns,
    )
    # Written before the last three columns existed.
    return t.select(t.column_names[:8]) if old else t


def sensors(offsets):
    n = len(offsets)
    return pa.table(
        {
            "sensor_id": [f"Sensor {o}" for o in offsets],
            "payload": ["{}"] * n,
            "deleted": [False] * n,
            "seen_at": pa.array([datetime(2026, 1, 1)] * n, TS),
            "kafka_partition": pa.array([0] * n, pa.int32()),
            "kafka_offset": pa.array(offsets, pa.int64()),
        }
    )


def minutes(starts, day):
    n = len(starts)
    base = datetime(day.year, day.month, day.day)
    return pa.table(
        {
            "sensor_id": ["Sensor 1"] * n,
            "window_start": pa.array([base + timedelta(minutes=m) for m in starts], TS),
            "window_end": pa.array([base + timedelta(minutes=m + 1) for m in starts], TS),
            "mean": [1.0] * n,
            "count": pa.array([1] * n, pa.int64()),
            "revision": pa.array([1] * n, pa.int32()),
        }
    )


def build_legacy_archive(lake: Lake) -> None:
    def put(rel, rows, spec):
        lake.write_atomic(lake.path(rel), parquet_bytes(rows, spec.sort_by, 3))

    def checkpoint(table, topic, partition, next_offset, pending=None, **extra):
        doc = {"topic": topic, "partition": partition, "next_offset": next_offset}
        lake.write_json(
            lake.path("_checkpoints", table, f"{topic}+{partition}.json"),
            {**doc, **extra, "pending": pending},
        )

    r1, r2 = f"raw/readings/event_date={DAY1}", f"raw/readings/event_date={DAY2}"
    put(f"{r1}/{TOPIC}+0+0+19.parquet", readings(0, range(20), DAY1), READINGS)
    put(f"{r1}/{TOPIC}+1+0+9.parquet", readings(1, range(10), DAY1), READINGS)
    put(f"{r1}/backfill+{DAY1}.parquet", readings(0, range(3), DAY1, backfill=True), READINGS)
    # A compaction of day 1 whose old files were not deleted yet: every row twice.
    day1 = pa.concat_tables([readings(0, range(20), DAY1), readings(1, range(10), DAY1)])
    put(f"{r1}/_c1/part-00000.parquet", day1, READINGS)
    put(f"{r2}/{TOPIC}+0+20+29.parquet", readings(0, range(20, 30), DAY2), READINGS)
    # A flush of offsets 30..34 that a crash left pending: a reading file and a dead
    # letter of the readings topic (offset 31).
    pending = [f"{r2}/{TOPIC}+0+30+34.parquet", f"raw/rejected/received_date={DAY2}/p.parquet"]
    put(pending[0], readings(0, range(30, 35), DAY2), READINGS)
    put(pending[1], dead_letters(TOPIC, [31], DAY2), REJECTED)
    checkpoint("readings", TOPIC, 0, 30, {"next_offset": 35, "files": pending})
    checkpoint("readings", TOPIC, 1, 10)

    d1 = f"raw/rejected/received_date={DAY1}"
    put(f"{d1}/{DLQ}+0+0+4.parquet", dead_letters(DLQ, range(5), DAY1, old=True), REJECTED)
    put(f"{d1}/{TOPIC}+0+0+19.parquet", dead_letters(TOPIC, [7], DAY1), REJECTED)
    checkpoint("rejected", DLQ, 0, 5)

    put(f"raw/sensors/{SENSORS_TOPIC}+0+0+2.parquet", sensors(range(3)), SENSORS)
    checkpoint("sensors", SENSORS_TOPIC, 0, 3)

    m = "curated/readings_1m_revisions/window_date="
    put(f"{m}{DAY1}/{TOPIC}+0+0+abc.parquet", minutes(range(4), DAY1), READINGS_1M_REVISIONS)
    put(f"{m}{DAY2}/{TOPIC}+0+30+def.parquet", minutes([0, 1], DAY2), READINGS_1M_REVISIONS)
    checkpoint(
        "readings_1m_revisions",
        TOPIC,
        0,
        30,
        {"files": [f"{m}{DAY2}/{TOPIC}+0+30+def.parquet"]},
        windows=WINDOWS,
    )
    lake.write_json(lake.path("_checkpoints/compaction/readings+event_date=2026-01-01.json"), {})


def trino_type(t):
    if pa.types.is_timestamp(t):
        return "timestamp(6)"
    return {
        pa.string(): "varchar",
        pa.float64(): "double",
        pa.int32(): "integer",
        pa.int64(): "bigint",
        pa.bool_(): "boolean",
        pa.binary(): "varbinary",
        pa.date32(): "date",
    }[t]


def create_hive_tables(sql, s: StreamSettings, lake: Lake) -> None:
    """The former installation's SQL tables, as its catalog created them."""
    for zone, schema in (("raw", s.raw_schema), ("curated", s.curated_schema)):
        sql.query(f"CREATE SCHEMA hive.{schema} WITH (location = '{lake.uri(zone)}')")
    for spec in (READINGS, SENSORS):
        columns = ", ".join(f"{f.name} {trino_type(f.type)}" for f in spec.table_schema)
        props = [f"external_location = '{lake.uri(spec.zone, spec.name)}'", "format = 'PARQUET'"]
        if spec.partition_column:
            props.append(f"partitioned_by = ARRAY['{spec.partition_column}']")
        sql.query(
            f"CREATE TABLE hive.{s.raw_schema}.{spec.name} ({columns}) WITH ({', '.join(props)})"
        )
    sql.query(f"CALL hive.system.sync_partition_metadata('{s.raw_schema}', 'readings', 'ADD')")
    # What a query of the former installation saw: the day folders' own files.
    assert sql.query(f"SELECT count(*) FROM hive.{s.raw_schema}.readings") == [[48]]


# -- running the migration --------------------------------------------------------------


def tables_of(s: StreamSettings, lake: Lake):
    namespaces = {"raw": s.raw_schema, "curated": s.curated_schema}

    def make(spec):
        catalog = connect(f"thrift://{s.metastore_host}:{s.metastore_port}", lake)
        return IcebergTable(spec, catalog=catalog, lake=lake, namespaces=namespaces, zstd_level=3)

    return make


def run_from_env() -> None:
    """`python -c` entry of the crash test: the migration with settings from the environment."""
    s = StreamSettings()
    lake = Lake(s.lake_url)
    print(json.dumps(migrate(s, lake, tables_of(s, lake))))


def run_subprocess(s: StreamSettings, crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if k != CRASH_ENV},
        "LAKE_URL": s.lake_url,
        "METASTORE_HOST": s.metastore_host,
        "METASTORE_PORT": str(s.metastore_port),
        "RAW_SCHEMA": s.raw_schema,
        "CURATED_SCHEMA": s.curated_schema,
        "PYTHONPATH": str(ROOT),
        **({CRASH_ENV: crash_at} if crash_at else {}),
    }
    code = "from tests.integration.test_migration import run_from_env; run_from_env()"
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_for(sql, tmp_path: Path) -> StreamSettings:
    uid = uuid.uuid4().hex[:8]
    return StreamSettings(
        lake_url=str(tmp_path / "lake"),
        metastore_host="127.0.0.1",
        metastore_port=sql.stack.metastore_port,
        raw_schema=f"raw_{uid}",
        curated_schema=f"curated_{uid}",
    )


def drop_all(sql, s: StreamSettings) -> None:
    for spec in TABLES:
        schema = s.raw_schema if spec.zone == "raw" else s.curated_schema
        for catalog in ("iceberg", "hive"):
            with suppress(Exception):
                sql.query(f"DROP TABLE IF EXISTS {catalog}.{schema}.{spec.name}")
    for schema in (s.raw_schema, s.curated_schema):
        with suppress(Exception):
            sql.query(f"DROP SCHEMA IF EXISTS hive.{schema}")


# -- what must hold afterwards -------------------------------------------------------------


def assert_migrated_exactly_once(sql, s: StreamSettings, lake: Lake) -> None:
    raw, curated = f"iceberg.{s.raw_schema}", f"iceberg.{s.curated_schema}"
    per_partition = (
        "SELECT kafka_partition, count(*), count(DISTINCT kafka_offset), min(kafka_offset), "
        "max(kafka_offset) FROM {} GROUP BY 1 ORDER BY 1 NULLS LAST"
    )
    # Partition 0: offsets 0..29 once (not the pending 30..34, not the compaction's
    # copy); partition 1: 0..9 once; the 3 backfill rows (no offsets) as they were.
    assert sql.query(per_partition.format(f"{raw}.readings")) == [
        [0, 30, 30, 0, 29],
        [1, 10, 10, 0, 9],
        [None, 3, 0, None, None],
    ]
    assert sql.query(f"SELECT event_date, count(*) FROM {raw}.readings GROUP BY 1 ORDER BY 1") == [
        [DAY1, 33],
        [DAY2, 10],
    ]
    # Older queries through the hive catalog reach the Iceberg table.
    assert sql.query(f"SELECT count(*) FROM hive.{s.raw_schema}.readings") == [[43]]
    # Dead letters: the DLQ's 0..4 (kafka_topic null: written before the column) and
    # the readings topic's offset 7; not offset 31 (in the pending flush).
    assert sql.query(
        f"SELECT kafka_topic, kafka_offset, payload_size, received_date FROM {raw}.rejected "
        "ORDER BY 1 NULLS FIRST, 2"
    ) == [[None, o, None, DAY1] for o in range(5)] + [[TOPIC, 7, 2, DAY1]]
    assert sql.query(per_partition.format(f"{raw}.sensors")) == [[0, 3, 3, 0, 2]]
    # The 1-minute table without the pending file's two rows.
    assert sql.query(
        f"SELECT window_date, count(*) FROM {curated}.readings_1m_revisions GROUP BY 1"
    ) == [[DAY1, 4]]

    make = tables_of(s, lake)
    props = {spec.name: dict(make(spec).refresh().properties) for spec in LEGACY}
    assert committed_offsets(props["readings"], TOPIC) == {0: 30, 1: 10}
    assert committed_offsets(props["rejected"], DLQ) == {0: 5}
    assert committed_offsets(props["rejected"], TOPIC) == {0: 30, 1: 10}
    assert committed_offsets(props["sensors"], SENSORS_TOPIC) == {0: 3}
    assert committed_offsets(props["readings_1m_revisions"], TOPIC) == {0: 30}
    state = lake.read_json(lake.path(props["readings_1m_revisions"][state_key(TOPIC, 0)]))
    assert state == {"topic": TOPIC, "partition": 0, "next_offset": 30, "windows": WINDOWS}
    assert all(MIGRATED in p for p in props.values())
    for spec in LEGACY:
        assert _is_iceberg(_hms_table(make(spec))), f"{spec.name} is not an Iceberg table"

    for rel in ("raw/readings", "raw/rejected", "raw/sensors", "curated/readings_1m_revisions"):
        assert not lake.fs.exists(lake.path(rel)), f"legacy {rel} left behind"
    assert lake.list_files(lake.path("_checkpoints")) == []


def snapshots(s: StreamSettings, lake: Lake) -> dict[str, int | None]:
    make = tables_of(s, lake)
    found = {}
    for spec in LEGACY:
        snapshot = make(spec).refresh().current_snapshot()
        found[spec.name] = snapshot.snapshot_id if snapshot else None
    return found


# -- the tests ---------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_a_legacy_archive_is_migrated_exactly_once(sql, tmp_path):
    s = settings_for(sql, tmp_path)
    lake = Lake(s.lake_url)
    build_legacy_archive(lake)
    try:
        create_hive_tables(sql, s, lake)
        migrated = migrate(s, lake, tables_of(s, lake))
        assert migrated == {"readings": 43, "sensors": 3, "rejected": 6, "readings_1m_revisions": 4}
        assert_migrated_exactly_once(sql, s, lake)

        before = snapshots(s, lake)
        assert migrate(s, lake, tables_of(s, lake)) == {}  # a second run does nothing
        assert snapshots(s, lake) == before
        assert_migrated_exactly_once(sql, s, lake)
    finally:
        drop_all(sql, s)


@pytest.mark.timeout(240)
@pytest.mark.skipif(
    not set(MIGRATION_STEPS) <= set(STEPS),
    reason="iot_common/crashpoints.py STEPS lacks migration.written / migration.committed",
)
def test_a_crash_at_each_step_of_the_migration_loses_and_doubles_nothing(sql, tmp_path):
    s = settings_for(sql, tmp_path)
    lake = Lake(s.lake_url)
    build_legacy_archive(lake)
    try:
        create_hive_tables(sql, s, lake)
        # Dies before the first table's commit: nothing committed, the legacy
        # archive intact (the Hive table of raw.readings already dropped).
        first = run_subprocess(s, "migration.written")
        assert first.returncode == CRASH_EXIT_CODE, first.stderr[-3000:]
        assert MIGRATED not in tables_of(s, lake)(READINGS).refresh().properties
        assert lake.fs.exists(lake.path("raw/readings"))
        # Dies after the second table's commit (raw.sensors), before its cleanup.
        second = run_subprocess(s, "migration.committed@2")
        assert second.returncode == CRASH_EXIT_CODE, second.stderr[-3000:]
        assert lake.fs.exists(lake.path("raw/sensors"))
        assert not lake.fs.exists(lake.path("raw/readings"))
        # The rest, then nothing more.
        third = run_subprocess(s, None)
        assert third.returncode == 0, third.stderr[-3000:]
        assert json.loads(third.stdout.strip().splitlines()[-1]) == {
            "rejected": 6,
            "readings_1m_revisions": 4,
        }
        assert_migrated_exactly_once(sql, s, lake)
        fourth = run_subprocess(s, None)
        assert fourth.returncode == 0, fourth.stderr[-3000:]
        assert json.loads(fourth.stdout.strip().splitlines()[-1]) == {}
        assert_migrated_exactly_once(sql, s, lake)
    finally:
        drop_all(sql, s)
