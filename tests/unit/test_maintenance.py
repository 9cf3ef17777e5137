"""Table maintenance without a metastore or Trino: which small files are compacted
together (plan_groups), how old files are read in today's columns (conform), and
one compaction pass over real files in a lake, committed to a fake table."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_common.crashpoints import STEPS
from stream_jobs.iceberg import IcebergTable, split_by_day
from stream_jobs.lake import Lake
from stream_jobs.maintenance import (
    COMPACTION_PROPERTY,
    Maintenance,
    MaintenancePolicy,
    conform,
    plan_groups,
)
from stream_jobs.tables import READINGS, REJECTED, TABLES, TS

# -- plan_groups -------------------------------------------------------------------------

files_of = st.lists(
    st.tuples(
        st.sampled_from([(date(2026, 11, 24),), (date(2026, 11, 25),), (None,), ()]),
        st.integers(0, 120),
    ),
    max_size=40,
)


@settings(max_examples=500, deadline=None, database=None)
@given(files=files_of, target=st.integers(1, 100), min_files=st.integers(2, 6))
def test_groups_are_small_files_of_one_partition_never_above_the_target(files, target, min_files):
    listed = [(part, rows, f"f{i:03d}") for i, (part, rows) in enumerate(files)]
    partition_of = {path: part for part, _, path in listed}
    rows_of = {path: rows for _, rows, path in listed}
    groups = plan_groups(listed, target, min_files)

    grouped = [p for g in groups for p in g]
    assert len(grouped) == len(set(grouped))  # a file is in one group at most
    small = Counter(part for part, rows, _ in listed if rows < target)
    for group in groups:
        assert len(group) > 1  # rewriting one file alone gains nothing
        assert all(rows_of[p] < target for p in group)  # only small files
        assert sum(rows_of[p] for p in group) <= target  # a group never exceeds the target
        assert len({partition_of[p] for p in group}) == 1  # one partition a group
        assert group == sorted(group)  # packed in path order
    for part, n in small.items():
        mine = [p for p in grouped if partition_of[p] == part]
        if n < min_files:
            assert mine == []  # too few small files: left alone
        elif sum(r for q, r, _ in listed if q == part and r < target) <= target:
            # they all fit in one file: they become one
            assert sorted(mine) == sorted(p for q, r, p in listed if q == part and r < target)


def test_a_day_of_many_small_files_is_packed_up_to_the_target():
    day, other = (date(2026, 11, 24),), (date(2026, 11, 25),)
    files = [(day, 40, f"a{i}") for i in range(5)] + [(day, 500, "big")]
    files += [(other, 1, "b1"), (other, 1, "b2")]  # fewer than min_files small files
    assert plan_groups(files, target_rows=100, min_files=3) == [["a0", "a1"], ["a2", "a3"]]
    assert plan_groups([], 100, 2) == []


# -- conform --------------------------------------------------------------------------------


def test_conform_reads_an_old_file_in_the_current_columns():
    schema = REJECTED.table_schema
    old = pa.table(
        {
            "received_date": pa.array([date(2026, 11, 25)] * 2, pa.date32()),
            "reason": ["a", "b"],
            "kafka_offset": pa.array([1, 2], pa.int32()),  # narrower than today's int64
            "dropped_since": [1, 2],
        }
    )
    rows = conform(old, schema)
    assert rows.schema.equals(schema)  # the schema's columns, in its order, its types
    assert rows.column("reason").to_pylist() == ["a", "b"]
    assert rows.column("kafka_offset").to_pylist() == [1, 2]
    for missing in ("kafka_topic", "payload_size", "payload_sha256", "payload"):
        assert rows.column(missing).null_count == 2
    assert conform(rows, schema).equals(rows)


# -- one pass over a table --------------------------------------------------------------


class CompactedTable:
    """A table for Maintenance: real files written in the lake by IcebergTable.write,
    the table's live files and commits kept here."""

    def __init__(self, lake: Lake, spec=READINGS) -> None:
        self.spec, self.lake, self.ident = spec, lake, f"{spec.zone}.{spec.name}"
        self._writer = IcebergTable(
            spec, catalog=None, lake=lake, namespaces={"raw": "raw"}, zstd_level=3
        )
        self.live: list[SimpleNamespace] = []
        self.with_deletes: set[str] = set()
        self.commits: list[tuple[list[str], dict[str, str], list[object]]] = []
        self.properties: dict[str, str] = {}
        self.protocols: list[str] = []

    def write(self, rows: pa.Table) -> list[str]:
        return self._writer.write(rows)

    def add(self, rows: pa.Table) -> None:
        for uri in self.write(rows):
            self.live.append(self._data_file(uri))

    def _data_file(self, uri: str) -> SimpleNamespace:
        rows = pq.read_table(self.lake.fs._strip_protocol(uri))
        day = split_by_day(rows, self.spec.partition_column)[0][0]
        return SimpleNamespace(file_path=uri, partition=(day,), record_count=rows.num_rows)

    def refresh(self):
        tasks = [
            SimpleNamespace(file=f, delete_files=["d"] if f.file_path in self.with_deletes else [])
            for f in self.live
        ]
        return SimpleNamespace(scan=lambda: SimpleNamespace(plan_files=lambda: tasks))

    def commit(self, files, properties, *, delete=(), stop=None, protocol="iceberg"):
        self.protocols.append(protocol)
        deleted = list(delete)
        assert all(d in self.live for d in deleted)
        self.live = [f for f in self.live if f not in deleted]
        self.live += [self._data_file(u) for u in files]
        self.properties.update(properties)
        self.commits.append((list(files), dict(properties), deleted))

    def rows(self) -> pa.Table:
        return pa.concat_tables(
            conform(
                pq.read_table(self.lake.fs._strip_protocol(f.file_path)), self.spec.table_schema
            )
            for f in self.live
        )


def readings(day: int, offsets: range) -> pa.Table:
    n = len(offsets)
    ts = [datetime(2026, 11, day, 12, i % 60) for i in range(n)]
    return pa.table(
        {
            "sensor_id": [f"S{i % 3}" for i in range(n)],
            "ts": pa.array(ts, TS),
            "value": [1.0] * n,
            "payload": ["{}"] * n,
            "mqtt_topic": ["sensors"] * n,
            "received_at": pa.array(ts, TS),
            "kafka_partition": pa.array([0] * n, pa.int32()),
            "kafka_offset": pa.array(list(offsets), pa.int64()),
            "event_date": pa.array([date(2026, 11, day)] * n, pa.date32()),
        }
    )


def test_a_pass_swaps_a_days_small_files_for_one_in_one_commit(tmp_path, monkeypatch):
    t = CompactedTable(Lake(str(tmp_path)))
    for i in range(5):
        t.add(readings(24, range(i * 10, i * 10 + 10)))
    old = readings(24, range(50, 60)).drop_columns(["mqtt_topic"])  # before a column existed
    t.add(old)
    t.add(readings(25, range(100, 110)))  # a day with one file: left alone
    t.with_deletes.add(t.live[0].file_path)  # rows deleted by SQL: left to Trino
    before = t.rows()

    m = Maintenance([t], sql=None, policy=MaintenancePolicy(target_rows=1000, min_files=4))
    assert m.compact(t) == 1
    ((files, properties, deleted),) = t.commits
    assert len(files) == 1 and len(deleted) == 5 and t.live[0] not in deleted
    assert COMPACTION_PROPERTY in properties  # its own mark, to recognise it landed
    # The swap is a compaction commit: its crash points are compaction.readings.*.
    assert t.protocols == ["compaction"] and "compaction.readings.metadata" in STEPS
    assert len(t.live) == 3
    after = t.rows()
    key = ["kafka_partition", "kafka_offset"]
    assert after.sort_by([(k, "ascending") for k in key]).equals(
        before.sort_by([(k, "ascending") for k in key])
    )  # the same rows, the old file's missing column as nulls
    assert after.column("mqtt_topic").null_count == 10
    assert (m.stats.compactions, m.stats.files_compacted) == (1, 5)
    assert m.compact(t) == 0  # nothing left to do


def test_expiry_goes_through_trinos_procedures_with_the_retentions():
    sqls: list[str] = []
    t = SimpleNamespace(ident="raw.readings", spec=READINGS)
    policy = MaintenancePolicy(snapshot_retention_s=600, orphan_retention_s=900)
    Maintenance([t], sql=sqls.append, policy=policy, catalog="ice").expire(t)
    assert sqls == [
        "ALTER TABLE ice.raw.readings EXECUTE expire_snapshots(retention_threshold => '600s')",
        "ALTER TABLE ice.raw.readings EXECUTE remove_orphan_files(retention_threshold => '900s')",
    ]
    Maintenance([t], sql=None, policy=policy).expire(t)  # no Trino: no-op


def test_a_failed_step_waits_for_the_next_pass_and_the_others_still_run(tmp_path):
    sqls: list[str] = []

    class Broken(CompactedTable):
        def refresh(self):
            raise ConnectionError("metastore away")

    broken, fine = Broken(Lake(str(tmp_path))), CompactedTable(Lake(str(tmp_path)), REJECTED)
    m = Maintenance([broken, fine], sql=sqls.append, policy=MaintenancePolicy())
    m.run_once()
    assert m.stats.errors == 1 and m.stats.passes == 1
    assert [s.split()[2] for s in sqls] == ["iceberg.raw.readings"] * 2 + [
        "iceberg.raw.rejected"
    ] * 2


@pytest.mark.parametrize("spec", TABLES, ids=lambda s: s.name)
def test_every_table_has_its_maintenance_crash_points(spec):
    assert f"compaction.{spec.name}.written" in STEPS
    assert f"expiry.{spec.name}.start" in STEPS


def test_a_day_still_written_to_is_compacted_into_files_of_an_eighth_of_the_target():
    from stream_jobs.maintenance import is_open

    today, yesterday = date(2026, 11, 30), date(2026, 11, 29)
    files = [
        (today, 20, "t0"),  # a file compacted before: past an eighth of 100, left alone
        (today, 5, "t1"),
        (today, 5, "t2"),
        (yesterday, 20, "y0"),  # the day is closed: packed up to the target
        (yesterday, 5, "y1"),
    ]
    groups = plan_groups(files, target_rows=100, min_files=2, open_partitions={today})
    assert groups == [["t1", "t2"], ["y0", "y1"]]
    # Iceberg's day transform gives days since 1970-01-01.
    days = (today - date(1970, 1, 1)).days
    assert is_open((days,), today) and is_open((days + 1,), today)
    assert not is_open((days - 1,), today)
    assert is_open((today,), today) and not is_open((yesterday,), today)
    assert is_open((), today)  # unpartitioned: always written to
