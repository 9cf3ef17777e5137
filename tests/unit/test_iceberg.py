"""stream_jobs.iceberg without a metastore: table definitions, offsets in table
properties, files per day, and the commit's retry rule. Also home of
FakeIcebergTable, the in-memory IcebergTable the jobs' unit tests run on."""

from __future__ import annotations

import inspect
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyiceberg.expressions import AlwaysTrue, And, BooleanExpression
from pyiceberg.expressions.visitors import bind
from pyiceberg.io.pyarrow import PyArrowFileIO, expression_to_pyarrow
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
)

from iot_common.crashpoints import STEPS
from iot_data_generator.readings import reading_payload
from stream_jobs import iceberg
from stream_jobs.checkpoint import OWNER_PREFIX
from stream_jobs.errors import Fenced
from stream_jobs.iceberg import (
    OFFSET_PREFIX,
    IcebergTable,
    committed_offsets,
    equal,
    iceberg_schema,
    iceberg_type,
    offset_key,
    offset_properties,
    partition_spec,
    sort_order,
    split_by_day,
)
from stream_jobs.lake import Lake
from stream_jobs.records import Record, build_readings
from stream_jobs.tables import (
    READINGS,
    READINGS_1M_REVISIONS,
    REJECTED,
    SENSORS,
    TABLES,
    TS,
    TableSpec,
)

SETTINGS = settings(max_examples=200, deadline=None, database=None)
NAMESPACES = {"raw": "raw", "curated": "curated"}


def handle(catalog=None, lake=None):
    """A real IcebergTable of raw.readings (a catalog needed only to commit)."""
    return IcebergTable(READINGS, catalog=catalog, lake=lake, namespaces=NAMESPACES, zstd_level=3)


# -- the fake the jobs' tests use -----------------------------------------------------


class CommitFailed(Exception):
    """A commit FakeIcebergTable was told to fail (as the real one raises when its
    job stops before the commit landed, or as a crash would end it)."""


@dataclass
class Commit:
    files: list[str]
    properties: dict[str, str]
    delete: list[object]
    stop: threading.Event | None


EVERY_ROW = AlwaysTrue()


class FakeScan:
    def __init__(self, rows: pa.Table, spec: TableSpec, row_filter: BooleanExpression) -> None:
        self.rows, self.spec, self.row_filter = rows, spec, row_filter

    def to_arrow(self) -> pa.Table:
        # The filter bound to the table's Iceberg schema, as pyiceberg binds it: a
        # literal that does not fit its column's type fails here as it would there.
        bound = bind(iceberg_schema(self.spec), self.row_filter, case_sensitive=True)
        return self.rows.filter(expression_to_pyarrow(bound))


class FakeTable:
    """The little of pyiceberg's Table the jobs use: properties and scan()."""

    def __init__(self, fake: FakeIcebergTable) -> None:
        self.properties = dict(fake.properties)
        self._fake = fake

    def scan(self, row_filter: BooleanExpression = EVERY_ROW) -> FakeScan:
        return FakeScan(self._fake.rows(), self._fake.spec, row_filter)


class FakeIcebergTable:
    """IcebergTable's public surface in memory. `write` keeps the rows under new
    URIs (one per day, as the real one writes files); `commit` adds them and sets
    the properties together, as the real commit does, or, while `fail_commits` > 0,
    raises CommitFailed having changed nothing (the written files stay orphans).
    A commit whose `expect`ed properties the table does not hold raises Fenced,
    as the real one does. Every commit that landed is recorded in `commits`, and its
    table's name in `log` (pass one list to several tables to see the order of their
    commits); the claims of partitions (stream_jobs.checkpoint: a commit of owner
    properties alone) are kept apart in `claims`, and never fail."""

    def __init__(self, spec: TableSpec, lake: Lake, *, log: list[str] | None = None) -> None:
        self.spec, self.lake = spec, lake
        self.ident = f"{spec.zone}.{spec.name}"
        self.properties: dict[str, str] = {}
        self.files: dict[str, pa.Table] = {}  # committed
        self.written: dict[str, pa.Table] = {}  # written, not (yet) committed
        self.commits: list[Commit] = []
        self.claims: list[dict[str, str]] = []
        self.log: list[str] = [] if log is None else log
        self.fail_commits = 0
        self.bytes_written = 0

    @property
    def table(self) -> FakeTable:
        return FakeTable(self)

    def wait_ready(self, stop: threading.Event, retry_s: float = 5.0) -> bool:
        return True

    def refresh(self) -> FakeTable:
        return self.table

    def offsets(self, topic: str) -> dict[int, int]:
        return committed_offsets(self.refresh().properties, topic)

    def write(self, rows: pa.Table) -> list[str]:
        uris = []
        for day, part in split_by_day(rows, self.spec.partition_column):
            uri = f"mem://{self.ident}/{day}/{uuid.uuid4().hex}.parquet"
            self.written[uri] = part
            self.bytes_written += part.nbytes  # in memory: Arrow's size, not Parquet's
            uris.append(uri)
        return uris

    def commit(
        self,
        files: list[str],
        properties: dict[str, str],
        *,
        delete: Iterable[object] = (),
        stop: threading.Event | None = None,
        protocol: str = "iceberg",
        expect: Mapping[str, str | None] | None = None,
    ) -> None:
        deleted = list(delete)
        if protocol == "claim":
            assert not files and all(k.startswith(OWNER_PREFIX) for k in properties)
            self.properties.update(properties)
            self.claims.append(dict(properties))
            return
        wrong = {k: self.properties.get(k) for k, v in (expect or {}).items()}
        wrong = {k: v for k, v in wrong.items() if v != (expect or {})[k]}
        if wrong:
            raise Fenced(f"{self.ident} holds {wrong}")
        if self.fail_commits:
            self.fail_commits -= 1
            raise CommitFailed(self.ident)
        assert all(f in self.written for f in files), "committing files never written"
        for uri in deleted:
            del self.files[uri]
        for uri in files:
            self.files[uri] = self.written.pop(uri)
        self.properties.update(properties)
        self.commits.append(Commit(list(files), dict(properties), deleted, stop))
        self.log.append(self.spec.name)

    def rows(self) -> pa.Table:
        """Every committed row, in the table's columns."""
        schema = self.spec.table_schema
        parts = [t.select(schema.names).cast(schema) for t in self.files.values()]
        return pa.concat_tables(parts) if parts else schema.empty_table()


def test_the_fake_has_the_surface_the_jobs_use():
    used = ("spec", "ident", "lake", "table", "wait_ready", "refresh", "offsets", "write", "commit")
    real = handle()
    for name in used:
        assert hasattr(FakeIcebergTable(READINGS, None), name)
        assert name in vars(real) or hasattr(IcebergTable, name)
    for name in ("wait_ready", "offsets", "write", "commit"):
        want = inspect.signature(getattr(IcebergTable, name)).parameters
        have = inspect.signature(getattr(FakeIcebergTable, name)).parameters
        assert [(p.name, p.kind) for p in have.values()] == [
            (p.name, p.kind) for p in want.values() if p.name != "retry_s" or name != "commit"
        ]
    assert real.ident == FakeIcebergTable(READINGS, None).ident == "raw.readings"


# -- offsets in table properties ------------------------------------------------------

topics = st.text("abcxyzAZ019._-", min_size=1, max_size=20)
offset_maps = st.dictionaries(st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1), max_size=8)


@SETTINGS
@given(
    topic=topics,
    offsets=offset_maps,
    others=st.dictionaries(topics, offset_maps, max_size=4),
    unrelated=st.dictionaries(st.text(max_size=30), st.text(max_size=30), max_size=6),
)
def test_offsets_round_trip_through_table_properties(topic, offsets, others, unrelated):
    """Any topic (dots included) and any partition -> offset map comes back as it
    was, whatever other topics' offsets and other properties the table holds."""
    mine = f"{OFFSET_PREFIX}{topic}."
    properties = {k: v for k, v in unrelated.items() if not k.startswith(mine)}
    for other, their in others.items():
        if other != topic:
            properties.update(offset_properties(other, their))
    properties.update(offset_properties(topic, offsets))
    assert committed_offsets(properties, topic) == offsets
    for other, their in others.items():
        if other != topic:
            assert committed_offsets(properties, other) == their


def test_offset_keys_are_the_documented_properties():
    assert offset_key("iot.readings", 3) == "iot.kafka.iot.readings.3"
    assert offset_properties("iot.readings", {0: 10, 2: 7}) == {
        "iot.kafka.iot.readings.0": "10",
        "iot.kafka.iot.readings.2": "7",
    }
    # the readings topic and its DLQ share a prefix, never their offsets
    both = {
        **offset_properties("iot.readings", {0: 5}),
        **offset_properties("iot.readings.dlq", {0: 9}),
    }
    assert committed_offsets(both, "iot.readings") == {0: 5}
    assert committed_offsets(both, "iot.readings.dlq") == {0: 9}
    assert committed_offsets({}, "iot.readings") == {}


# -- files per day ---------------------------------------------------------------------


@SETTINGS
@given(days=st.lists(st.one_of(st.dates(), st.none()), max_size=40))
def test_split_by_day_makes_one_part_per_date_and_keeps_every_row(days):
    """A null date (our builders never make one) is a part of its own, never lost."""
    rows = pa.table({"n": pa.array(range(len(days)), pa.int64()), "d": pa.array(days, pa.date32())})
    parts = split_by_day(rows, "d")
    assert [d for d, _ in parts] == sorted(set(days), key=str)  # one part per date, in order
    for day, part in parts:
        assert part.num_rows and set(part.column("d").to_pylist()) == {day}
    got = [r for _, part in parts for r in part.to_pylist()]
    assert Counter(tuple(sorted(r.items())) for r in got) == Counter(
        tuple(sorted(r.items())) for r in rows.to_pylist()
    )


def test_an_unpartitioned_table_is_one_part_and_no_rows_no_part():
    rows = pa.table({"n": [1, 2, 3]})
    assert [(d, p.num_rows) for d, p in split_by_day(rows, None)] == [(None, 3)]
    assert split_by_day(rows.slice(0, 0), None) == []
    empty = pa.table({"d": pa.array([], pa.date32())})
    assert split_by_day(empty, "d") == []


def test_write_puts_each_day_in_a_file_of_its_own_in_our_layout(tmp_path):
    lake = Lake(str(tmp_path))
    table = handle(lake=lake)
    records = [
        Record(
            0,
            i,
            0,
            None,
            reading_payload(f"S{i % 4}", datetime(2026, 11, 24 if i % 3 else 25, 12, i), i),
            {"received_at": b"2026-11-25T13:00:00"},
        )
        for i in range(12)
    ]
    rows = build_readings(records).rows
    assert rows.num_rows == 12
    uris = table.write(rows)
    assert len(uris) == 2 and all(u.startswith("file://") for u in uris)
    assert all("/warehouse/raw/readings/data/ts_day=2026-11-2" in u for u in uris)
    back = [pq.read_table(lake.fs._strip_protocol(u)) for u in uris]
    assert sorted(t.num_rows for t in back) == [4, 8]
    for t in back:
        assert t.schema.equals(READINGS.table_schema)
        keys = list(zip(t["sensor_id"].to_pylist(), t["ts"].to_pylist(), strict=True))
        assert keys == sorted(keys)  # sorted by the table's sort order
    assert sorted(pa.concat_tables(back)["kafka_offset"].to_pylist()) == list(range(12))
    assert table.commits == 0  # written, not committed: nothing reads them yet


# -- table definitions -----------------------------------------------------------------

ARROW_TO_ICEBERG = {
    pa.string(): StringType(),
    pa.float64(): DoubleType(),
    pa.int32(): IntegerType(),
    pa.int64(): LongType(),
    pa.bool_(): BooleanType(),
    pa.binary(): BinaryType(),
    pa.date32(): DateType(),
    TS: TimestampType(),
}


@pytest.mark.parametrize("spec", TABLES, ids=lambda s: s.name)
def test_the_iceberg_schema_has_every_column_with_its_comment(spec):
    schema = iceberg_schema(spec)
    assert [f.name for f in schema.fields] == spec.table_schema.names  # same order
    assert [f.field_id for f in schema.fields] == list(range(1, len(spec.table_schema) + 1))
    for field, arrow in zip(schema.fields, spec.table_schema, strict=True):
        assert field.field_type == ARROW_TO_ICEBERG[arrow.type]
        assert field.doc == spec.doc(arrow.name)
        assert field.doc  # every column explains itself in Trino and DBeaver
        assert not field.required  # a column added later reads as null in older files


def test_types_without_an_iceberg_equivalent_are_refused():
    assert iceberg_type(pa.timestamp("ms")) == TimestampType()
    with pytest.raises(ValueError, match="no Iceberg type"):
        iceberg_type(pa.list_(pa.int32()))


def test_the_rejected_table_keeps_its_late_columns_before_the_date():
    names = [f.name for f in iceberg_schema(REJECTED).fields]
    assert names.index("kafka_offset") < names.index("kafka_topic") < names.index("payload_size")
    assert names[-1] == "received_date"
    comment = REJECTED.doc("reason_code")
    for code in ("dt_too_old", "dt_in_future", "internal_error", "kafka_rejected"):
        assert code in comment


@pytest.mark.parametrize("spec", TABLES, ids=lambda s: s.name)
def test_tables_are_partitioned_by_the_day_of_their_time_column(spec):
    schema = iceberg_schema(spec)
    part = partition_spec(spec, schema)
    if spec.partition_source is None:
        assert spec.partition_column is None
        assert part.is_unpartitioned()
        return
    (field,) = part.fields
    assert isinstance(field.transform, DayTransform)
    assert field.source_id == schema.find_field(spec.partition_source).field_id
    assert field.name == f"{spec.partition_source}_day"
    assert spec.table_schema.field(spec.partition_source).type == TS


def test_which_tables_are_partitioned():
    assert (READINGS.partition_source, READINGS.partition_column) == ("ts", "event_date")
    assert (REJECTED.partition_source, REJECTED.partition_column) == (
        "received_at",
        "received_date",
    )
    assert READINGS_1M_REVISIONS.partition_source == "window_start"
    assert partition_spec(SENSORS, iceberg_schema(SENSORS)).is_unpartitioned()


@pytest.mark.parametrize("spec", TABLES, ids=lambda s: s.name)
def test_sort_order_follows_the_spec(spec):
    schema = iceberg_schema(spec)
    order = sort_order(spec, schema)
    assert [schema.find_column_name(f.source_id) for f in order.fields] == list(spec.sort_by)
    assert all(isinstance(f.transform, IdentityTransform) for f in order.fields)


def test_a_filter_on_a_timestamp_binds_from_its_iso_text():
    """The 1-minute job finds a window by `equal("window_start", <iso text>)`."""
    start = datetime(2026, 11, 25, 0, 1)
    expr = And(
        equal("sensor_id", "S"), equal("window_start", start.isoformat(timespec="microseconds"))
    )
    rows = pa.table(
        {
            "sensor_id": ["S", "S", "T"],
            "window_start": pa.array([start, start + timedelta(minutes=1), start], TS),
        }
    )
    bound = bind(iceberg_schema(READINGS_1M_REVISIONS), expr, case_sensitive=True)
    assert rows.filter(expression_to_pyarrow(bound)).num_rows == 1


def test_every_crash_point_of_a_table_commit_is_a_known_step():
    for spec in TABLES:
        for step in ("written", "metadata", "committed"):
            assert f"iceberg.{spec.name}.{step}" in STEPS


# -- the commit's retry rule ------------------------------------------------------------


class Runaway(BaseException):
    """More commit attempts than a test planned (not an Exception: the commit's
    retry loop does not catch it)."""


class FakeCatalog:
    """load_table: the table as the metastore has it (or the metastore away)."""

    def __init__(self) -> None:
        self.properties: dict[str, str] = {}
        self.down = False

    def load_table(self, ident):
        if self.down:
            raise OSError("metastore away")
        return SimpleNamespace(properties=dict(self.properties))


def table_on(catalog, monkeypatch, outcomes):
    """An IcebergTable whose single commit attempts go as `outcomes` says: "ok",
    "lost" (an error, nothing landed), "landed" (an error, yet it landed) or "fenced"
    (refused: the table's owner is another)."""
    t = handle(catalog)
    attempts = []

    def commit_once(files, properties, deleted, expect):
        if len(attempts) == len(outcomes):
            raise Runaway(f"tried again after {outcomes}")
        outcome = outcomes[len(attempts)]
        attempts.append(outcome)
        if outcome == "fenced":
            raise Fenced("another member owns it")
        if outcome in ("ok", "landed"):
            catalog.properties.update(properties)
        if outcome != "ok":
            raise ConnectionError("metastore answered nothing")

    monkeypatch.setattr(t, "_commit_once", commit_once)
    return t, attempts


def test_a_commit_that_landed_despite_an_error_is_not_tried_again(monkeypatch):
    catalog = FakeCatalog()
    t, attempts = table_on(catalog, monkeypatch, ["landed"])
    t.commit(["f"], offset_properties("iot.readings", {0: 5}), retry_s=0)
    assert attempts == ["landed"] and t.commits == 1


def test_a_commit_that_did_not_land_is_tried_again_until_it_does(monkeypatch):
    catalog = FakeCatalog()
    catalog.properties = offset_properties("iot.readings", {0: 3})  # the previous commit
    t, attempts = table_on(catalog, monkeypatch, ["lost", "lost", "ok"])
    t.commit(["f"], offset_properties("iot.readings", {0: 5}), retry_s=0)
    assert attempts == ["lost", "lost", "ok"] and t.commits == 1
    assert committed_offsets(catalog.properties, "iot.readings") == {0: 5}


def test_a_metastore_that_cannot_be_read_means_not_landed(monkeypatch):
    catalog = FakeCatalog()
    t, attempts = table_on(catalog, monkeypatch, ["lost", "ok"])
    real_load = catalog.load_table

    def load_once_down(ident):
        catalog.load_table = real_load
        raise OSError("metastore away")

    catalog.load_table = load_once_down
    t.commit(["f"], offset_properties("iot.readings", {0: 5}), retry_s=0)
    assert attempts == ["lost", "ok"]


def test_a_commit_gives_up_only_when_its_job_stops(monkeypatch):
    catalog = FakeCatalog()
    t, attempts = table_on(catalog, monkeypatch, ["lost"] * 3)
    stop = threading.Event()
    stop.set()
    with pytest.raises(ConnectionError):
        t.commit(["f"], offset_properties("iot.readings", {0: 5}), stop=stop, retry_s=0)
    assert attempts == ["lost"] and t.commits == 0


def test_offsets_are_read_from_the_table_as_the_metastore_has_it():
    catalog = FakeCatalog()
    t = handle(catalog)
    catalog.properties = {**offset_properties("iot.readings", {1: 42}), "comment": "x"}
    assert t.offsets("iot.readings") == {1: 42}
    catalog.properties[offset_key("iot.readings", 1)] = "43"
    assert t.offsets("iot.readings") == {1: 43}  # read again, not remembered


def test_a_commit_passes_its_crash_points_in_protocol_order(monkeypatch):
    passed = []
    monkeypatch.setattr(iceberg, "crash_point", passed.append)
    t, _ = table_on(FakeCatalog(), monkeypatch, ["ok"])
    t.commit([], {"k": "v"}, retry_s=0)
    assert passed == ["iceberg.readings.written", "iceberg.readings.committed"]
    assert all(step in STEPS for step in passed)


# -- conditional commits (several members of a consumer group) ------------------------------


def test_a_fenced_commit_is_never_tried_again(monkeypatch):
    t, attempts = table_on(FakeCatalog(), monkeypatch, ["fenced"])
    with pytest.raises(Fenced):
        t.commit(["f"], offset_properties("iot.readings", {0: 5}), retry_s=0, expect={"o": "me"})
    assert attempts == ["fenced"] and t.commits == 0


def test_after_an_unknown_outcome_a_commit_is_fenced_only_if_it_did_not_land(monkeypatch):
    catalog = FakeCatalog()
    t, attempts = table_on(catalog, monkeypatch, ["lost", "fenced"])
    with pytest.raises(Fenced):
        t.commit(["f"], offset_properties("iot.readings", {0: 5}), retry_s=0, expect={"o": "me"})
    assert attempts == ["lost", "fenced"]
    t, attempts = table_on(catalog, monkeypatch, ["landed"])
    t.commit(["f"], offset_properties("iot.readings", {0: 6}), retry_s=0, expect={"o": "me"})
    assert attempts == ["landed"] and t.commits == 1


class CheckingCatalog:
    """A catalog that does what pyiceberg's Hive catalog does with a commit under the
    table's lock: every requirement checked against the metadata it holds now, then
    the updates applied to that metadata (not to the committer's)."""

    def __init__(self, metadata):
        self.metadata = metadata

    def load_table(self, ident):
        from pyiceberg.table import Table

        return Table(("raw", "readings"), self.metadata, "mem://m", PyArrowFileIO(), self)

    def commit_table(self, table, requirements, updates):
        from pyiceberg.table import CommitTableResponse
        from pyiceberg.table.update import update_table_metadata

        for requirement in requirements:
            requirement.validate(self.metadata)
        self.metadata = update_table_metadata(self.metadata, updates)
        return CommitTableResponse(metadata=self.metadata, metadata_location="mem://m")

    def _delete_old_metadata(self, io, base, new):
        pass


def test_a_conditional_commit_is_checked_against_the_table_as_it_lands():
    """pyiceberg's own transaction carries the requirement to the catalog's check:
    a member's view of the table from before another member's claim does not let
    its commit through, and the commit sets only its own properties."""
    from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
    from pyiceberg.table.metadata import new_table_metadata
    from pyiceberg.table.sorting import UNSORTED_SORT_ORDER

    metadata = new_table_metadata(
        iceberg_schema(READINGS),
        UNPARTITIONED_PARTITION_SPEC,
        UNSORTED_SORT_ORDER,
        "mem://t",
        {"owner.0": "a", "owner.1": "b"},
    )
    catalog = CheckingCatalog(metadata)
    a, b = handle(catalog), handle(catalog)
    a.commit([], {"offset.0": "10"}, expect={"owner.0": "a"}, retry_s=0)
    b.commit([], {"offset.1": "7"}, expect={"owner.1": "b"}, retry_s=0)
    assert {k: v for k, v in catalog.metadata.properties.items() if "." in k} == {
        "owner.0": "a",
        "owner.1": "b",
        "offset.0": "10",
        "offset.1": "7",
    }
    _ = a.table  # a's view of the table, as of its last commit
    b.commit([], {"owner.0": "b"}, retry_s=0)  # b claims partition 0
    assert a.table.properties["owner.0"] == "a"  # a has not seen it
    with pytest.raises(Fenced):
        a.commit([], {"offset.0": "20"}, expect={"owner.0": "a"}, retry_s=0)
    assert catalog.metadata.properties["offset.0"] == "10"
    with pytest.raises(Fenced):  # a missing property is expected as None
        a.commit([], {"offset.2": "1"}, expect={"owner.2": "a"}, retry_s=0)
    a.commit([], {"offset.2": "1"}, expect={"owner.2": None}, retry_s=0)
