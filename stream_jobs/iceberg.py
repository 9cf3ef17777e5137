"""Our tables as Apache Iceberg tables in the Hive Metastore: one home for how a
batch of our own Parquet files becomes part of a table, with the Kafka offsets it covers.

Guarantees:
* A commit is atomic. The files of a batch and the Kafka offsets they cover (table
  properties `iot.kafka.<topic>.<partition>` = the next offset to read) become part
  of the table together, in one metastore call, or not at all. So a table is its own
  checkpoint: after a crash a job resumes at the offsets its table holds, and every
  record below them is in the table exactly once.
* A file written but never committed (a crash before or during the commit) is an
  orphan: in no snapshot, so no query sees it; maintenance removes it.
* A commit whose outcome is unknown (the metastore answered with an error, or not at
  all) is checked against the table before it is tried again: it never lands twice.
* Offsets live in table properties, not in snapshot summaries: they survive
  `optimize`, compaction and snapshot expiry, which replace or drop snapshots.
* A commit can be conditional (`expect`): it lands only if the named properties
  hold the expected values at the moment it lands, checked by the metastore commit
  itself, under the table's lock, against the metadata it replaces (a requirement
  like Iceberg's own: AssertProperties). Otherwise it raises Fenced and nothing
  lands. Several members of a consumer group write one table this way
  (stream_jobs.checkpoint: ownership of partitions). Commits of different writers
  that touch different properties never undo each other: a commit sets only its
  own properties on the metadata it replaces, and concurrent appends are retried
  on the new metadata (pyiceberg, then the retry loop here).

Files are ours (stream_jobs.parquet: sorted, delta-encoded, zstd), one per day
partition, added with `add_files`; they carry no Iceberg field ids and are read
through the table's name mapping, kept in line with the schema here.

pyiceberg 0.12 calls the Thrift `get_table`, which Hive 4 removed: `_shim` maps it
to `get_table_req` until a release does.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any, Literal
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
from hive_metastore.ThriftHiveMetastore import Client as _ThriftClient
from hive_metastore.ttypes import GetTableRequest
from pydantic import Field
from pyiceberg.catalog.hive import HiveCatalog, _HiveClient
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    ValidationException,
)
from pyiceberg.expressions import EqualTo
from pyiceberg.io import FileIO
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER, SortField, SortOrder
from pyiceberg.table.update import ValidatableTableRequirement
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DoubleType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestampType,
)
from thrift.transport import TSocket, TTransport

from iot_common.crashpoints import crash_point
from stream_jobs.errors import Fenced
from stream_jobs.lake import Lake
from stream_jobs.parquet import parquet_bytes
from stream_jobs.tables import TableSpec

log = logging.getLogger(__name__)

OFFSET_PREFIX = "iot.kafka."  # table property: iot.kafka.<topic>.<partition> = next offset
NAME_MAPPING = "schema.name-mapping.default"
# Every table: old metadata files go (each commit writes one), commits retried on
# conflicts with concurrent commits (the other writers, maintenance, Trino).
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
    "commit.retry.num-retries": "10",
    "commit.retry.max-wait-ms": "5000",
    # A compaction (delete + add of the same rows) must not be refused because a
    # writer added a file meanwhile: it conflicts only if a file it removes is gone.
    # pyiceberg's default, serializable, fails it on any concurrent append.
    "write.delete.isolation-level": "snapshot",
    "write.update.isolation-level": "snapshot",
}
# Properties kept as declared on existing tables (format-version is fixed at creation).
SYNCED_PROPERTIES = {k: v for k, v in TABLE_PROPERTIES.items() if k != "format-version"}
PARTITION_FIELD_ID = 1000
# Which protocol a thread's commit belongs to (its crash points: iceberg.* for the
# writers' commits, compaction.* for maintenance's).
_PROTOCOL: contextvars.ContextVar[str] = contextvars.ContextVar("protocol", default="iceberg")


def _shim() -> None:
    def get_table(self: _ThriftClient, dbname: str, tbl_name: str) -> Any:
        return self.get_table_req(GetTableRequest(dbName=dbname, tblName=tbl_name)).table

    _ThriftClient.get_table = get_table


_shim()


class _TimedClient(_HiveClient):
    """pyiceberg's Thrift client with socket timeouts (it has none: a metastore that
    hangs would hang the job)."""

    timeout_ms = 60_000

    def _init_thrift_transport(self) -> TTransport.TTransportBase:
        url = urlparse(self._uri)
        socket = TSocket.TSocket(url.hostname, url.port)
        socket.setTimeout(self.timeout_ms)
        return TTransport.TBufferedTransport(socket)


class Catalog(HiveCatalog):
    """pyiceberg's Hive catalog, with socket timeouts and a crash point inside the
    metastore commit (the new metadata file written, the metastore not yet switched
    to it). Not thread-safe (one Thrift connection): one per thread."""

    def __init__(self, name: str, **properties: str) -> None:
        super().__init__(name, **properties)
        self._client = _TimedClient(properties["uri"])

    @staticmethod
    def _write_metadata(metadata: TableMetadata, io: FileIO, metadata_path: str) -> None:
        HiveCatalog._write_metadata(metadata, io, metadata_path)
        table = metadata.location.rstrip("/").rsplit("/", 1)[-1]
        crash_point(f"{_PROTOCOL.get()}.{table}.metadata")


def connect(metastore_uri: str, lake: Lake, s3: Mapping[str, str] | None = None) -> Catalog:
    """The catalog over the metastore; `s3` holds pyiceberg's s3.* FileIO settings."""
    return Catalog("iot", uri=metastore_uri, warehouse=lake.uri("warehouse"), **dict(s3 or {}))


# -- table definitions ------------------------------------------------------------------


def iceberg_type(t: pa.DataType) -> IcebergType:
    if pa.types.is_timestamp(t):
        return TimestampType()  # microseconds, no zone: UTC by convention
    mapping: dict[pa.DataType, IcebergType] = {
        pa.string(): StringType(),
        pa.float64(): DoubleType(),
        pa.int32(): IntegerType(),
        pa.int64(): LongType(),
        pa.bool_(): BooleanType(),
        pa.binary(): BinaryType(),
        pa.date32(): DateType(),
    }
    try:
        return mapping[t]
    except KeyError:
        raise ValueError(f"no Iceberg type for Arrow type {t}") from None


def iceberg_schema(spec: TableSpec) -> Schema:
    """The table's columns, with their comments (Trino and DBeaver show them)."""
    return Schema(
        *(
            NestedField(
                field_id=n,
                name=f.name,
                field_type=iceberg_type(f.type),
                required=False,
                doc=spec.doc(f.name),
            )
            for n, f in enumerate(spec.table_schema, start=1)
        )
    )


def partition_spec(spec: TableSpec, schema: Schema) -> PartitionSpec:
    """Day of the table's time column (hidden partitioning: a filter on that column
    prunes days; the date column beside it prunes them too, through file statistics)."""
    if spec.partition_source is None:
        return UNPARTITIONED_PARTITION_SPEC
    source = schema.find_field(spec.partition_source)
    return PartitionSpec(
        PartitionField(
            source_id=source.field_id,
            field_id=PARTITION_FIELD_ID,
            transform=DayTransform(),
            name=f"{spec.partition_source}_day",
        )
    )


def sort_order(spec: TableSpec, schema: Schema) -> SortOrder:
    if not spec.sort_by:
        return UNSORTED_SORT_ORDER
    return SortOrder(
        *(
            SortField(source_id=schema.find_field(c).field_id, transform=IdentityTransform())
            for c in spec.sort_by
        )
    )


def identifier(spec: TableSpec, namespaces: Mapping[str, str]) -> str:
    """`<schema>.<table>`: the zone's SQL schema (tests use their own)."""
    return f"{namespaces[spec.zone]}.{spec.name}"


def table_dir(spec: TableSpec) -> str:
    """Where a table's files live in the lake (relative to its root)."""
    return f"warehouse/{spec.zone}/{spec.name}"


def ensure_table(
    catalog: HiveCatalog, spec: TableSpec, lake: Lake, namespaces: Mapping[str, str]
) -> Table:
    """The table, created if missing; columns added since its creation are added
    (a file without them reads them as null)."""
    namespace = namespaces[spec.zone]
    with contextlib.suppress(NamespaceAlreadyExistsError):
        catalog.create_namespace(namespace, {"location": lake.uri(spec.zone)})
    ident = identifier(spec, namespaces)
    schema = iceberg_schema(spec)
    try:
        table = catalog.load_table(ident)
    except NoSuchTableError:
        lake.ensure_dir(lake.path(table_dir(spec)))
        table = catalog.create_table(
            ident,
            schema=schema,
            location=lake.uri(table_dir(spec)),
            partition_spec=partition_spec(spec, schema),
            sort_order=sort_order(spec, schema),
            properties={
                **TABLE_PROPERTIES,
                "comment": spec.description,
                NAME_MAPPING: schema.name_mapping.model_dump_json(),
            },
        )
        log.info("created Iceberg table %s at %s", ident, table.location())
        return table
    have = {f.name for f in table.schema().fields}
    missing = [f.name for f in schema.fields if f.name not in have]
    if missing:
        with table.update_schema() as update:
            update.union_by_name(schema)
        log.info("added columns %s to %s", missing, ident)
    wanted = {**SYNCED_PROPERTIES, NAME_MAPPING: table.schema().name_mapping.model_dump_json()}
    drift = {k: v for k, v in wanted.items() if table.properties.get(k) != v}
    if drift:
        table = table.transaction().set_properties(drift).commit_transaction()
        log.info("%s: properties %s set", ident, sorted(drift))
    return table


def equal(column: str, value: object) -> EqualTo:
    """A row filter `column = value` (pyiceberg's pydantic signature confuses mypy)."""
    make: Any = EqualTo  # its pydantic __init__ is typed unlike how it is called
    predicate: EqualTo = make(column, value)
    return predicate


# -- conditional commits ------------------------------------------------------------------


class AssertProperties(ValidatableTableRequirement):
    """A commit's requirement: the table's properties named in `expected` hold those
    values (None: absent). pyiceberg checks the requirements of a commit against the
    metadata it is about to replace, in the Hive catalog under the table's metastore
    lock: no commit of another writer can land between the check and the switch.
    Not one of Iceberg's REST requirement types: it only works with a catalog that
    validates in-process, as pyiceberg's Hive catalog does (ours)."""

    type: Literal["assert-properties"] = Field(default="assert-properties")
    expected: dict[str, str | None] = Field(default_factory=dict)

    # pydantic's deprecated classmethod `validate` has the name; pyiceberg overrides it too
    def validate(self, base_metadata: TableMetadata | None) -> None:  # type: ignore[override]
        if base_metadata is None:
            raise CommitFailedException("Requirement failed: current table metadata is missing")
        found = {k: base_metadata.properties.get(k) for k in self.expected}
        wrong = {k: v for k, v in found.items() if v != self.expected[k]}
        if wrong:
            # Not a CommitFailedException: pyiceberg retries those, and this one can
            # never pass by retrying.
            raise Fenced(f"the table holds {wrong}, not {self.expected}")


# -- offsets ------------------------------------------------------------------------------


def offset_key(topic: str, partition: int) -> str:
    return f"{OFFSET_PREFIX}{topic}.{partition}"


def offset_properties(topic: str, next_offsets: Mapping[int, int]) -> dict[str, str]:
    return {offset_key(topic, p): str(o) for p, o in next_offsets.items()}


def committed_offsets(properties: Mapping[str, str], topic: str) -> dict[int, int]:
    """Kafka partition -> next offset, as the table's last commits left them."""
    prefix = f"{OFFSET_PREFIX}{topic}."
    found = {}
    for key, value in properties.items():
        rest = key[len(prefix) :] if key.startswith(prefix) else ""
        if rest.isascii() and rest.isdigit():
            found[int(rest)] = int(value)
    return found


# -- files --------------------------------------------------------------------------------


def split_by_day(rows: pa.Table, column: str | None) -> list[tuple[date | None, pa.Table]]:
    """Rows per value of the table's date column (one file per day partition)."""
    if column is None:
        return [(None, rows)] if rows.num_rows else []
    values = rows.column(column)
    parts = []
    for value in pc.unique(values).to_pylist():
        if value is None:  # never from our builders; kept all the same, in a file of its own
            part = rows.filter(pc.is_null(values))
        else:
            part = rows.filter(pc.equal(values, pa.scalar(value, values.type)))
        parts.append((value, part))
    return sorted(parts, key=lambda p: str(p[0]))


class IcebergTable:
    """One of our tables: its files are written here and committed with the offsets
    they cover. Thread-safe: commits of one process to one table go one at a time."""

    def __init__(
        self,
        spec: TableSpec,
        *,
        catalog: HiveCatalog,
        lake: Lake,
        namespaces: Mapping[str, str],
        zstd_level: int,
        gate: threading.Event | None = None,
    ) -> None:
        self.spec, self.catalog, self.lake = spec, catalog, lake
        self.gate = gate  # set once the table may be written (after a migration)
        self.namespaces, self.zstd_level = namespaces, zstd_level
        self.ident = identifier(spec, namespaces)
        self.lock = threading.Lock()
        self._table: Table | None = None
        self.commits = 0
        self.bytes_written = 0  # Parquet bytes of the data files written (metrics)

    @property
    def table(self) -> Table:
        if self._table is None:
            self._table = ensure_table(self.catalog, self.spec, self.lake, self.namespaces)
        return self._table

    def wait_ready(self, stop: threading.Event, retry_s: float = 5.0) -> bool:
        """The table exists (created if needed) once the metastore answers; False
        if `stop` came first. Never raises: a job waits for the metastore."""
        while not stop.is_set():
            if self.gate is not None and not self.gate.is_set():
                stop.wait(0.5)
                continue
            try:
                _ = self.table
                return True
            except Exception as exc:  # noqa: BLE001 - metastore not up yet: wait, never crash
                log.warning("%s: metastore not usable yet (%s)", self.ident, exc)
                stop.wait(retry_s)
        return False

    def refresh(self) -> Table:
        """The table as the metastore has it now."""
        self._table = self.catalog.load_table(self.ident)
        return self._table

    def offsets(self, topic: str) -> dict[int, int]:
        return committed_offsets(self.refresh().properties, topic)

    def write(self, rows: pa.Table) -> list[str]:
        """Our Parquet files for `rows`, one per day, written but not committed: URIs."""
        uris = []
        base = table_dir(self.spec)
        for day, part in split_by_day(rows, self.spec.partition_column):
            folder = f"{self.spec.partition_source}_day={day}/" if day is not None else ""
            path = self.lake.path(base, "data", f"{folder}{uuid.uuid4().hex}.parquet")
            data = parquet_bytes(part, self.spec.sort_by, self.zstd_level)
            self.lake.write_atomic(path, data)
            self.bytes_written += len(data)
            uris.append(self.lake.uri_of(path))
        return uris

    def commit(
        self,
        files: list[str],
        properties: Mapping[str, str],
        *,
        delete: Iterable[Any] = (),
        stop: threading.Event | None = None,
        retry_s: float = 2.0,
        protocol: str = "iceberg",
        expect: Mapping[str, str | None] | None = None,
    ) -> None:
        """Add `files` (and drop the DataFiles in `delete`) and set `properties`, in
        one commit. An error leaves the outcome unknown: the table is read again, and
        the commit is tried again only if it did not land. Gives up (raises) only
        when `stop` is set before it landed, or with Fenced when the properties named
        in `expect` do not hold those values (None: absent) as it would land."""
        deleted = list(delete)
        crash_point(f"{protocol}.{self.spec.name}.written")
        token = _PROTOCOL.set(protocol)
        try:
            self._commit_retrying(files, properties, deleted, stop, retry_s, dict(expect or {}))
        finally:
            _PROTOCOL.reset(token)
        crash_point(f"{protocol}.{self.spec.name}.committed")

    def _commit_retrying(
        self,
        files: list[str],
        properties: Mapping[str, str],
        deleted: list[Any],
        stop: threading.Event | None,
        retry_s: float,
        expect: dict[str, str | None],
    ) -> None:
        with self.lock:
            while True:
                try:
                    self._commit_once(files, properties, deleted, expect)
                    break
                except (ValidationException, Fenced):
                    # It can never apply (a file to delete is gone, or another writer
                    # owns what it writes now): the caller's call. A Fenced after an
                    # error of unknown outcome comes only once that one is known not
                    # to have landed (below).
                    raise
                except Exception as exc:
                    log.warning(
                        "%s: commit failed (%s: %s); checking whether it landed",
                        self.ident,
                        type(exc).__name__,
                        str(exc).splitlines()[0][:300] if str(exc) else "",
                    )
                    if self._landed(properties):
                        break
                    if stop is not None and stop.wait(retry_s):
                        raise
                    if stop is None:
                        time.sleep(retry_s)
            self.commits += 1

    def _commit_once(
        self,
        files: list[str],
        properties: Mapping[str, str],
        deleted: list[Any],
        expect: dict[str, str | None],
    ) -> None:
        table = self.table
        with table.transaction() as tx:
            if expect:
                # pyiceberg has no public way to add a requirement: its _stage keeps it
                # with the transaction's own, checked at every attempt of the commit.
                requirement: Any = AssertProperties(expected=expect)  # not in its Union
                tx._stage((), (requirement,))
            if deleted:
                with tx.update_snapshot().overwrite() as overwrite:
                    for data_file in deleted:
                        overwrite.delete_data_file(data_file)
                    from pyiceberg.io.pyarrow import parquet_file_to_data_file

                    for uri in files:
                        overwrite.append_data_file(
                            parquet_file_to_data_file(table.io, tx.table_metadata, uri)
                        )
            elif files:
                tx.add_files(files, check_duplicate_files=False)
            if properties:
                tx.set_properties(dict(properties))
        self._table = table

    def _landed(self, properties: Mapping[str, str]) -> bool:
        """Whether a commit that set `properties` is in the table (offsets only grow,
        so equal values mean this commit or a later one of ours; with several members,
        possibly one of the partitions' next owner that ends at the same offsets: the
        same records, in the table once)."""
        try:
            now = self.refresh().properties
        except Exception as exc:  # noqa: BLE001 - metastore still away: not known to have landed
            log.warning("%s: cannot read the table (%s)", self.ident, exc)
            return False
        return bool(properties) and all(now.get(k) == v for k, v in properties.items())
