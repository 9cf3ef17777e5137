"""The archive as SQL tables: schemas, tables and views in Trino's `hive` catalog
(stored in the Hive Metastore), created idempotently, and partitions registered
as the archive writes them.

Why registration by the writer (not partition projection, not a periodic sync):
the archive knows the moment it creates a new date folder, so it registers it
right then (a query sees a new day within a file rotation); every folder with
data is visible, including late or clock-skewed days that a projected date
range would hide; and a sync at start-up (`sync_partition_metadata`, ADD)
catches anything a crash or an unreachable Trino made it miss. When many new
folders of one table wait at once (a batch of readings spread over many days),
one sync registers them all instead of a call each.

Columns added to a table after its first release reach an existing installation
through `ALTER TABLE ... ADD COLUMN IF NOT EXISTS` at start (appended after the
other data columns; Hive keeps partition columns apart, and Trino reads Parquet
columns by name, so older files read the new column as null).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import trino
from trino.exceptions import Error as TrinoError
from trino.exceptions import HttpError, TrinoUserError

from stream_jobs.lake import Lake
from stream_jobs.settings import StreamSettings
from stream_jobs.tables import TABLES, TableSpec

log = logging.getLogger(__name__)

# Trino down, starting, or its metastore unreachable: retried, never fatal.
UNAVAILABLE = (TrinoError, HttpError, OSError)
# More new partitions than this of one table waiting: one sync_partition_metadata
# call registers them all (it lists the table's folders) instead of one call each.
SYNC_ABOVE = 16


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def trino_type(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "timestamp(6)"  # microseconds, UTC by convention (no zone stored)
    mapping = {
        pa.string(): "varchar",
        pa.float64(): "double",
        pa.int32(): "integer",
        pa.int64(): "bigint",
        pa.bool_(): "boolean",
        pa.binary(): "varbinary",
        pa.date32(): "date",
    }
    try:
        return mapping[t]
    except KeyError:
        raise ValueError(f"no Trino type for Arrow type {t}") from None


def create_table_sql(spec: TableSpec, catalog: str, schema: str, location: str) -> str:
    """CREATE TABLE IF NOT EXISTS for an external table over an archive folder."""
    columns = [(f.name, trino_type(f.type)) for f in spec.schema]
    if spec.partition_column:
        columns.append((spec.partition_column, "date"))  # Hive: partition columns last
    body = ",\n  ".join(
        f"{name} {typ}"
        + (f" COMMENT {sql_literal(spec.comments[name])}" if name in spec.comments else "")
        for name, typ in columns
    )
    props = [f"external_location = {sql_literal(location)}", "format = 'PARQUET'"]
    if spec.partition_column:
        props.append(f"partitioned_by = ARRAY[{sql_literal(spec.partition_column)}]")
    return (
        f"CREATE TABLE IF NOT EXISTS {catalog}.{schema}.{spec.name} (\n  {body}\n)\n"
        f"COMMENT {sql_literal(spec.description)}\nWITH ({', '.join(props)})"
    )


def add_column_sqls(
    spec: TableSpec, catalog: str, schema: str, existing: Iterable[str]
) -> list[str]:
    """ALTER TABLE ... ADD COLUMN IF NOT EXISTS for each column of `spec` that an
    existing table lacks (a table created before the column existed)."""
    have = {c.lower() for c in existing}
    return [
        f"ALTER TABLE {catalog}.{schema}.{spec.name} ADD COLUMN IF NOT EXISTS "
        f"{f.name} {trino_type(f.type)}"
        + (f" COMMENT {sql_literal(spec.comments[f.name])}" if f.name in spec.comments else "")
        for f in spec.schema
        if f.name.lower() not in have
    ]


def view_sqls(catalog: str, raw: str = "raw", curated: str = "curated") -> list[str]:
    """Views for BI; `CREATE OR REPLACE` so a changed definition replaces the old one."""
    return [
        f"""CREATE OR REPLACE VIEW {catalog}.{raw}.sensors_current
COMMENT 'The current version of every sensor that is in the sensor list'
AS SELECT sensor_id, lat, lng, unit, type, range_min, range_max, description,
          seen_at AS valid_since
FROM (SELECT s.*, row_number() OVER (PARTITION BY sensor_id ORDER BY kafka_offset DESC) AS rn
      FROM {catalog}.{raw}.sensors s)
WHERE rn = 1 AND NOT deleted""",
        f"""CREATE OR REPLACE VIEW {catalog}.{curated}.readings_enriched
COMMENT 'Readings with the sensor metadata valid at their time (the first version of a sensor \
also covers readings before it was seen). Filter on event_date to prune days.'
AS WITH versions AS (
  SELECT sensor_id, lat, lng, unit, type, range_min, range_max, description, deleted,
         CASE WHEN row_number() OVER w = 1 THEN TIMESTAMP '0001-01-01 00:00:00'
              ELSE seen_at END AS valid_from,
         lead(seen_at) OVER w AS valid_to
  FROM {catalog}.{raw}.sensors
  WINDOW w AS (PARTITION BY sensor_id ORDER BY kafka_offset))
SELECT r.sensor_id, r.ts, r.value, v.unit, v.type, v.description, v.lat, v.lng,
       v.range_min, v.range_max,
       r.value BETWEEN v.range_min AND v.range_max AS in_range,
       r.received_at, r.event_date
FROM {catalog}.{raw}.readings r
LEFT JOIN versions v
  ON v.sensor_id = r.sensor_id AND r.ts >= v.valid_from
 AND (v.valid_to IS NULL OR r.ts < v.valid_to) AND NOT v.deleted""",
        f"""CREATE OR REPLACE VIEW {catalog}.{curated}.readings_1m
COMMENT '1-minute figures per sensor (the newest revision of each window). Filter on \
window_date to prune days.'
AS SELECT sensor_id, window_start, window_end, mean, min, max, count, out_of_range_count,
          revision, emitted_at, window_date
FROM (SELECT w.*, row_number() OVER (PARTITION BY sensor_id, window_start, window_date
                                     ORDER BY revision DESC) AS rn
      FROM {catalog}.{curated}.readings_1m_revisions w)
WHERE rn = 1""",
    ]


def kafka_table(topic: str) -> tuple[str, str]:
    """Trino's Kafka connector names the table of topic `a.b` as schema a, table b
    (and a topic without a dot as table `default.<topic>`)."""
    schema, dot, table = topic.partition(".")
    return (schema, table) if dot else ("default", topic)


def live_view_sql(catalog: str, raw: str, kafka_catalog: str, topic: str, horizon_s: int) -> str:
    """raw.readings_live: the archive up to `horizon_s` ago, the topic after that.

    Both sides split at one instant B (the query's start minus the horizon, in ms):
    a reading is taken from the archive when received_at < B and from Kafka when
    its record timestamp >= B. The bridge sets the record timestamp to received_at
    in ms, so each reading falls on exactly one side; the archive holds every
    reading older than B as long as it lags less than the horizon behind."""
    schema, table = kafka_table(topic)
    boundary = (
        "CAST(current_timestamp AT TIME ZONE 'UTC' AS timestamp(3))"
        f" - INTERVAL '{horizon_s}' SECOND"
    )
    # dt is naive UTC (the contract; an explicit offset is allowed): Trino would
    # read a naive one in the session's zone, so it gets a Z. try(): a dt that
    # Python parses and Trino does not gives a null ts rather than a failed query.
    comment = (
        f"Every reading up to now: raw.readings, and the newest {horizon_s} s straight from "
        "Kafka (visible about a second after publishing). Filter on event_date."
    )
    return rf"""CREATE OR REPLACE VIEW {catalog}.{raw}.readings_live
COMMENT {sql_literal(comment)}
AS SELECT sensor_id, ts, value, payload, mqtt_topic, received_at, kafka_partition,
          kafka_offset, event_date
FROM {catalog}.{raw}.readings
WHERE received_at < {boundary}
UNION ALL
SELECT sensor_id, ts, value, payload, mqtt_topic, received_at, kafka_partition, kafka_offset,
       CAST(ts AS date) AS event_date
FROM (SELECT sensor_id, value, payload, mqtt_topic, kafka_partition, kafka_offset,
             CAST(try(from_iso8601_timestamp_nanos(
                 IF(regexp_like(dt, '([zZ]|[+-]\d{{2}}(:?\d{{2}})?)$'), dt, dt || 'Z')))
                  AT TIME ZONE 'UTC' AS timestamp(6)) AS ts,
             CAST(from_iso8601_timestamp_nanos(received_at) AT TIME ZONE 'UTC'
                  AS timestamp(6)) AS received_at
      FROM (SELECT json_extract_scalar(_message, '$.id') AS sensor_id,
                   regexp_replace(json_extract_scalar(_message, '$.dt'),
                                  '^(\d{{4}}-\d{{2}}-\d{{2}}) ', '$1T') AS dt,
                   CAST(json_extract_scalar(_message, '$.value') AS double) AS value,
                   _message AS payload,
                   from_utf8(element_at(_headers, 'mqtt_topic')[1]) AS mqtt_topic,
                   from_utf8(element_at(_headers, 'received_at')[1]) AS received_at,
                   CAST(_partition_id AS integer) AS kafka_partition,
                   _partition_offset AS kafka_offset
            FROM {kafka_catalog}."{schema}"."{table}"
            WHERE _timestamp >= {boundary}))"""


@dataclass(frozen=True)
class PartitionAdded:
    table: TableSpec
    folder: str  # e.g. "event_date=2026-11-25"


@dataclass(frozen=True)
class Registration:
    """One step of registering queued partitions: a sync of the whole table, or
    one register_partition call for a single folder."""

    table: TableSpec
    items: tuple[PartitionAdded, ...]
    sync: bool


def plan_registrations(
    items: Sequence[PartitionAdded], sync_above: int = SYNC_ABOVE
) -> list[Registration]:
    """Queued partitions -> calls: duplicates dropped, grouped by table in the order
    first queued; a table with more than `sync_above` new folders gets one
    sync_partition_metadata, the others one register_partition per folder."""
    by_table: dict[str, list[PartitionAdded]] = {}
    seen: set[tuple[str, str]] = set()
    for item in items:
        key = (item.table.name, item.folder)
        if key not in seen:
            seen.add(key)
            by_table.setdefault(item.table.name, []).append(item)
    plan: list[Registration] = []
    for group in by_table.values():
        if len(group) > sync_above:
            plan.append(Registration(group[0].table, tuple(group), sync=True))
        else:
            plan.extend(Registration(i.table, (i,), sync=False) for i in group)
    return plan


class SqlCatalog:
    """Keeps the hive catalog in line with the lake. Runs in its own thread: the
    archive never waits for Trino, it only queues the partitions it created."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        catalog: str,
        lake: Lake,
        raw: str = "raw",
        curated: str = "curated",
        tables: Iterable[TableSpec] = TABLES,
        kafka_catalog: str = "",
        readings_topic: str = "iot.readings",
        live_horizon_s: int = 60,
    ) -> None:
        self.host, self.port, self.user, self.catalog = host, port, user, catalog
        self.raw, self.curated = raw, curated  # schema names (tests use their own)
        self.kafka_catalog, self.readings_topic = kafka_catalog, readings_topic
        self.live_horizon_s = live_horizon_s
        self.lake = lake
        self.tables = list(tables)
        self.ready = threading.Event()
        self._queue: queue.Queue[PartitionAdded] = queue.Queue()
        self._known: set[tuple[str, str]] = set()

    def partition_added(self, table: TableSpec, folder: str) -> None:
        """Called by the archive after a flush created files in `folder` (thread-safe)."""
        if (table.name, folder) not in self._known:
            self._queue.put(PartitionAdded(table, folder))

    def _execute(self, sql: str) -> list[list[object]]:
        conn = trino.dbapi.connect(
            host=self.host, port=self.port, user=self.user, catalog=self.catalog, request_timeout=60
        )
        try:
            cur = conn.cursor()
            cur.execute(sql)
            return cur.fetchall()  # type: ignore[no-any-return]
        finally:
            conn.close()

    def schema_of(self, spec: TableSpec) -> str:
        return self.raw if spec.zone == "raw" else self.curated

    def ensure_tables(self) -> None:
        """Schemas, tables and views, then a catch-up sync of partitions."""
        for schema, folder in ((self.raw, "raw"), (self.curated, "curated")):
            self.lake.ensure_dir(self.lake.path(folder))
            self._execute(
                f"CREATE SCHEMA IF NOT EXISTS {self.catalog}.{schema} "
                f"WITH (location = {sql_literal(self.lake.uri(folder))})"
            )
        for spec in self.tables:
            self.lake.ensure_dir(self.lake.path(spec.folder))
            self._execute(
                create_table_sql(
                    spec, self.catalog, self.schema_of(spec), self.lake.uri(spec.folder)
                )
            )
        self.add_missing_columns()
        for sql in view_sqls(self.catalog, self.raw, self.curated):
            self._execute(sql)
        self.ensure_live_view()
        for spec in self.tables:
            if spec.partition_column:
                self._execute(
                    f"CALL {self.catalog}.system.sync_partition_metadata("
                    f"{sql_literal(self.schema_of(spec))}, {sql_literal(spec.name)}, 'ADD')"
                )
        log.info(
            "SQL tables ready in %s.%s and %s.%s",
            self.catalog,
            self.raw,
            self.catalog,
            self.curated,
        )

    def add_missing_columns(self) -> None:
        """Columns added to a table since an existing installation created it."""
        rows = self._execute(
            f"SELECT table_schema, table_name, column_name "
            f"FROM {self.catalog}.information_schema.columns "
            f"WHERE table_schema IN ({sql_literal(self.raw)}, {sql_literal(self.curated)})"
        )
        columns: dict[tuple[str, str], set[str]] = {}
        for schema, table, column in rows:
            columns.setdefault((str(schema), str(table)), set()).add(str(column))
        for spec in self.tables:
            schema = self.schema_of(spec)
            existing = columns.get((schema, spec.name))
            if existing is None:
                continue  # not listed (just created, or invisible): nothing to compare
            for sql in add_column_sqls(spec, self.catalog, schema, existing):
                log.info("adding a column: %s", sql)
                try:
                    self._execute(sql)
                except TrinoUserError as exc:
                    # Never block the catalog on it: the table works without the column.
                    log.error("could not add a column (%s): %s", sql, str(exc).splitlines()[0])

    def ensure_live_view(self) -> None:
        """raw.readings_live, when Trino's Kafka catalog has the readings topic."""
        if not self.kafka_catalog:
            return
        schema, table = kafka_table(self.readings_topic)
        try:
            found = self._execute(
                f"SELECT count(*) FROM {self.kafka_catalog}.information_schema.tables "
                f"WHERE table_schema = {sql_literal(schema)} "
                f"AND table_name = {sql_literal(table)}"
            )
        except TrinoUserError as exc:
            found = [[0]]
            log.warning("live view: %s", str(exc).splitlines()[0][:200])
        if found != [[1]]:
            log.warning(
                "no live view %s.%s.readings_live: Trino's catalog %r does not list topic "
                "%s (kafka.table-names in trino/etc/catalog/kafka.properties)",
                self.catalog,
                self.raw,
                self.kafka_catalog,
                self.readings_topic,
            )
            return
        self._execute(
            live_view_sql(
                self.catalog, self.raw, self.kafka_catalog, self.readings_topic, self.live_horizon_s
            )
        )

    def register(self, item: PartitionAdded) -> None:
        column, _, value = item.folder.partition("=")
        try:
            self._execute(
                f"CALL {self.catalog}.system.register_partition("
                f"{sql_literal(self.schema_of(item.table))}, "
                f"{sql_literal(item.table.name)}, ARRAY[{sql_literal(column)}], "
                f"ARRAY[{sql_literal(value)}])"
            )
            log.info(
                "registered partition %s.%s %s",
                self.schema_of(item.table),
                item.table.name,
                item.folder,
            )
        except TrinoUserError as exc:
            if exc.error_name != "ALREADY_EXISTS":
                raise
        self._known.add((item.table.name, item.folder))

    def sync(self, step: Registration) -> None:
        """Register all new folders of a table with one call."""
        schema = self.schema_of(step.table)
        self._execute(
            f"CALL {self.catalog}.system.sync_partition_metadata("
            f"{sql_literal(schema)}, {sql_literal(step.table.name)}, 'ADD')"
        )
        log.info(
            "registered %d partitions of %s.%s with one sync",
            len(step.items),
            schema,
            step.table.name,
        )
        self._known.update((i.table.name, i.folder) for i in step.items)

    def _waiting(self, first: PartitionAdded, limit: int = 100_000) -> list[PartitionAdded]:
        items = [first]
        while len(items) < limit:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return [i for i in items if (i.table.name, i.folder) not in self._known]

    def run(self, stop: threading.Event, retry_s: float = 5.0) -> None:
        while not stop.is_set():
            try:
                if not self.ready.is_set():
                    self.ensure_tables()
                    self.ready.set()
                try:
                    first = self._queue.get(timeout=0.5)
                except queue.Empty:
                    continue
                plan = plan_registrations(self._waiting(first))
                for n, step in enumerate(plan):
                    try:
                        if step.sync:
                            self.sync(step)
                        else:
                            self.register(step.items[0])
                    except UNAVAILABLE:
                        for rest in plan[n:]:  # try again after the pause below
                            for item in rest.items:
                                self._queue.put(item)
                        raise
            except UNAVAILABLE as exc:
                log.warning(
                    "Trino at %s:%d not usable yet (%s); retrying in %.0f s",
                    self.host,
                    self.port,
                    str(exc).splitlines()[0][:200],
                    retry_s,
                )
                stop.wait(retry_s)


def sql_catalog(s: StreamSettings, lake: Lake) -> SqlCatalog | None:
    """The SQL catalog the settings describe, or None when TRINO_HOST is empty."""
    if not s.trino_host:
        return None
    return SqlCatalog(
        s.trino_host,
        s.trino_port,
        s.trino_user,
        s.trino_catalog,
        lake,
        raw=s.raw_schema,
        curated=s.curated_schema,
        kafka_catalog=s.trino_kafka_catalog,
        readings_topic=s.kafka_topic_readings,
        live_horizon_s=s.live_view_horizon_seconds,
    )
