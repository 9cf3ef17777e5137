"""What the pages read from the SQL side: sensors' status, quality scores per hour
and minute, and the live facts of tables and views (row count, freshness).

Pages depend on the `Warehouse` protocol only (tests give them a fake);
`TrinoWarehouse` answers it through Trino's DB-API. Its methods block: the app
calls them in a thread pool. Guarantees:
* every value put into SQL is a literal built here (strings quoted, ''-doubled)
  or an identifier that matched IDENTIFIER: a sensor id or dataset name cannot
  change a query;
* row counts of tables come from Iceberg's metadata (`$files`: the record count
  of each data file of the current snapshot), never from a scan; the newest
  event time from the files' column statistics (the upper bound of the table's
  first timestamp column). A view is counted only when it has no date column
  (the small ones: sensor lists, statuses); else only its newest time over
  yesterday and today is asked;
* Trino unreachable, slow or missing a view is `Unavailable` with the reason,
  never a crash of a page.
Event times are naive UTC; the session runs in UTC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from trino.exceptions import Error as TrinoError
from trino.exceptions import HttpError, TrinoQueryError

from iot_common import trino_client
from iot_common.errors import PlatformError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
QUALITY_WINDOW = timedelta(hours=1)  # "the latest quality figures": this last span


class Unavailable(PlatformError):
    """Trino could not answer (unreachable, failed, or the relation does not exist)."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing  # the table or view does not exist (yet)


@dataclass(frozen=True)
class Sensor:
    sensor_id: str
    type: str = ""
    unit: str = ""
    description: str = ""


@dataclass(frozen=True)
class SensorStatus:
    sensor_id: str
    status: str  # ok | degraded | silent (curated.sensor_status)
    last_reading_at: datetime | None
    recent_score: float | None
    checked_at: datetime | None


@dataclass(frozen=True)
class HourScore:
    """Mean quality score of one sensor over one hour (the minutes that have a row)."""

    sensor_id: str
    hour: datetime
    score: float
    minutes: int


@dataclass(frozen=True)
class Minute:
    """One sensor-minute's quality figures (newest revision: curated.sensor_quality_1m)."""

    window_start: datetime
    window_end: datetime
    expected: float
    received: int
    valid: int
    out_of_range: int
    duplicates: int
    late: int
    rejected: int
    score: float
    revision: int
    emitted_at: datetime | None = None


@dataclass(frozen=True)
class QualitySummary:
    """The latest quality figures: the minutes since `since`, and the statuses now."""

    since: datetime
    sensors: int
    minutes: int
    mean_score: float | None
    received: int
    valid: int
    out_of_range: int
    duplicates: int
    late: int
    rejected: int
    newest_minute_end: datetime | None
    statuses: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    description: str = ""


@dataclass
class Facts:
    """Live facts of one table or view; what could not be learnt is None, with a note."""

    checked_at: datetime
    rows: int | None = None
    rows_how: str = ""  # how `rows` was counted
    files: int | None = None
    bytes: int | None = None
    newest: datetime | None = None  # newest event time
    newest_column: str = ""
    last_commit_at: datetime | None = None
    quality: QualitySummary | None = None
    columns: list[ColumnInfo] = field(default_factory=list)  # views: from Trino
    notes: list[str] = field(default_factory=list)


class Warehouse(Protocol):
    """The SQL side as the pages need it (blocking; raises Unavailable)."""

    def ping(self) -> None: ...

    def sensors(self) -> list[Sensor]: ...

    def statuses(self) -> list[SensorStatus]: ...

    def hour_scores(self, since: datetime, until: datetime) -> list[HourScore]: ...

    def minutes(self, sensor_id: str, hour: datetime) -> list[Minute]: ...

    def quality_summary(self, now: datetime) -> QualitySummary: ...

    def facts(self, dataset: DatasetRef, now: datetime) -> Facts: ...


@dataclass(frozen=True)
class DatasetRef:
    """What the facts need of a catalogue entry: name (<zone>.<relation>), kind and,
    when the catalogue has them, its columns (name, type)."""

    name: str
    kind: str
    columns: tuple[tuple[str, str], ...] = ()


# -- SQL literals -------------------------------------------------------------------------


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql_timestamp(ts: datetime) -> str:
    return f"TIMESTAMP '{ts.strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def sql_date(d: date) -> str:
    return f"DATE '{d.isoformat()}'"


def identifier(name: str) -> str:
    if not IDENTIFIER.match(name):
        raise Unavailable(f"not a plain SQL name: {name!r}")
    return f'"{name}"'


def naive_utc(value: Any) -> datetime | None:
    """A timestamp as Trino's client gives it (naive, or aware for WITH TIME ZONE)
    or as Iceberg's readable metrics spell it, as naive UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace(" ", "T").replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    found: datetime = value
    return found


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def is_timestamp(type_name: str) -> bool:
    """Arrow's `timestamp[us]` (the catalogue) or Trino's `timestamp(6)`."""
    return type_name.lower().startswith("timestamp")


def is_date(type_name: str) -> bool:
    return type_name.lower() in ("date", "date32[day]", "date32")


Query = Callable[[str], Sequence[Sequence[Any]]]


class TrinoWarehouse:
    """The Warehouse through Trino: one connection per query (HTTP; nothing held)."""

    def __init__(
        self,
        *,
        query: Query,
        catalog: str,
        raw: str,
        curated: str,
    ) -> None:
        self.query = query
        self.catalog, self.raw, self.curated = catalog, raw, curated

    def relation(self, zone: str, name: str, metadata: str = "") -> str:
        """<catalog>.<schema>.<name>; zone raw/curated maps to this install's schemas;
        `metadata` names one of Iceberg's metadata tables (files: "<name>$files")."""
        schema = {"raw": self.raw, "curated": self.curated}.get(zone)
        if schema is None:
            raise Unavailable(f"unknown zone {zone!r}")
        table = identifier(name)
        if metadata:
            table = f'"{identifier(name)[1:-1]}${identifier(metadata)[1:-1]}"'
        return f"{identifier(self.catalog)}.{identifier(schema)}.{table}"

    def ping(self) -> None:
        self.query("SELECT 1")

    def sensors(self) -> list[Sensor]:
        rows = self.query(
            "SELECT sensor_id, type, unit, description "
            f"FROM {self.relation('raw', 'sensors_current')} ORDER BY sensor_id"
        )
        return [Sensor(str(r[0]), r[1] or "", r[2] or "", r[3] or "") for r in rows]

    def statuses(self) -> list[SensorStatus]:
        rows = self.query(
            "SELECT sensor_id, status, last_reading_at, recent_score, checked_at "
            f"FROM {self.relation('curated', 'sensor_status')} ORDER BY sensor_id"
        )
        return [
            SensorStatus(
                str(r[0]),
                str(r[1]),
                naive_utc(r[2]),
                float(r[3]) if r[3] is not None else None,
                naive_utc(r[4]),
            )
            for r in rows
        ]

    def hour_scores(self, since: datetime, until: datetime) -> list[HourScore]:
        # window_date prunes days (the table's partitions); window_start the rest.
        rows = self.query(
            "SELECT sensor_id, date_trunc('hour', window_start), avg(score), count(*) "
            f"FROM {self.relation('curated', 'sensor_quality_1m')} "
            f"WHERE window_date BETWEEN {sql_date(since.date())} AND {sql_date(until.date())} "
            f"AND window_start >= {sql_timestamp(since)} AND window_start < {sql_timestamp(until)} "
            "GROUP BY 1, 2"
        )
        return [
            HourScore(str(r[0]), naive_utc(r[1]) or since, float(r[2]), int(r[3]))
            for r in rows
            if r[2] is not None
        ]

    def minutes(self, sensor_id: str, hour: datetime) -> list[Minute]:
        end = hour + timedelta(hours=1)
        rows = self.query(
            "SELECT window_start, window_end, expected, received, valid, out_of_range, "
            "duplicates, late, rejected, score, revision, emitted_at "
            f"FROM {self.relation('curated', 'sensor_quality_1m')} "
            f"WHERE sensor_id = {sql_string(sensor_id)} AND window_date = {sql_date(hour.date())} "
            f"AND window_start >= {sql_timestamp(hour)} AND window_start < {sql_timestamp(end)} "
            "ORDER BY window_start"
        )
        return [
            Minute(
                window_start=naive_utc(r[0]) or hour,
                window_end=naive_utc(r[1]) or hour,
                expected=float(r[2] or 0),
                received=_int(r[3]),
                valid=_int(r[4]),
                out_of_range=_int(r[5]),
                duplicates=_int(r[6]),
                late=_int(r[7]),
                rejected=_int(r[8]),
                score=float(r[9] or 0),
                revision=_int(r[10]),
                emitted_at=naive_utc(r[11]),
            )
            for r in rows
        ]

    def quality_summary(self, now: datetime) -> QualitySummary:
        since = now - QUALITY_WINDOW
        r = self.query(
            "SELECT count(DISTINCT sensor_id), count(*), avg(score), sum(received), sum(valid), "
            "sum(out_of_range), sum(duplicates), sum(late), sum(rejected), max(window_end) "
            f"FROM {self.relation('curated', 'sensor_quality_1m')} "
            f"WHERE window_date >= {sql_date(since.date())} "
            f"AND window_start >= {sql_timestamp(since)}"
        )[0]
        try:
            statuses = {
                str(s): int(n)
                for s, n in self.query(
                    "SELECT status, count(*) "
                    f"FROM {self.relation('curated', 'sensor_status')} GROUP BY 1"
                )
            }
        except Unavailable:
            statuses = {}
        return QualitySummary(
            since=since,
            sensors=_int(r[0]),
            minutes=_int(r[1]),
            mean_score=float(r[2]) if r[2] is not None else None,
            received=_int(r[3]),
            valid=_int(r[4]),
            out_of_range=_int(r[5]),
            duplicates=_int(r[6]),
            late=_int(r[7]),
            rejected=_int(r[8]),
            newest_minute_end=naive_utc(r[9]),
            statuses=statuses,
        )

    def facts(self, dataset: DatasetRef, now: datetime) -> Facts:
        zone, _, name = dataset.name.partition(".")
        relation = self.relation(zone, name)
        facts = Facts(checked_at=now)
        columns = list(dataset.columns)
        if not columns:  # views: the catalogue may not list their columns; Trino does
            described = self.query(f"SHOW COLUMNS FROM {relation}")
            facts.columns = [ColumnInfo(str(c[0]), str(c[1]), str(c[3] or "")) for c in described]
            columns = [(c.name, c.type) for c in facts.columns]
        time_column = next((n for n, t in columns if is_timestamp(t)), "")
        date_column = next((n for n, t in columns if is_date(t)), "")
        facts.newest_column = time_column
        if dataset.kind == "table":
            self._table_facts(zone, name, time_column, facts)
        else:
            self._view_facts(relation, time_column, date_column, now, facts)
        return facts

    def _table_facts(self, zone: str, name: str, time_column: str, facts: Facts) -> None:
        files = self.relation(zone, name, "files")
        newest = "NULL"
        if time_column and IDENTIFIER.match(time_column):
            path = sql_string(f"$.{time_column}.upper_bound")
            newest = f"max(json_extract_scalar(readable_metrics, {path}))"
        # content = 0: data files (a delete file's records are not rows)
        r = self.query(
            f"SELECT count(*), sum(record_count), sum(file_size_in_bytes), {newest} "
            f"FROM {files} WHERE content = 0"
        )[0]
        facts.files, facts.rows, facts.bytes = _int(r[0]), _int(r[1]), _int(r[2])
        facts.rows_how = "Iceberg metadata: record counts of the current snapshot's files"
        facts.newest = naive_utc(r[3])
        if time_column and facts.newest is None and facts.rows:
            facts.notes.append(f"no statistics of {time_column} in the files' metadata")
        snapshots = self.relation(zone, name, "snapshots")
        committed = self.query(f"SELECT max(committed_at) FROM {snapshots}")
        facts.last_commit_at = naive_utc(committed[0][0]) if committed else None

    def _view_facts(
        self, relation: str, time_column: str, date_column: str, now: datetime, facts: Facts
    ) -> None:
        newest = f"max({identifier(time_column)})" if time_column else "NULL"
        if date_column:
            # A view over a big table: no count; the newest time of yesterday and today only.
            since = (now - timedelta(days=1)).date()
            r = self.query(
                f"SELECT {newest} FROM {relation} "
                f"WHERE {identifier(date_column)} >= {sql_date(since)}"
            )[0]
            facts.newest = naive_utc(r[0])
            facts.notes.append(
                f"not counted (a view over a large table); newest {time_column or 'time'} "
                f"looked for since {since.isoformat()}"
            )
            return
        r = self.query(f"SELECT count(*), {newest} FROM {relation}")[0]
        facts.rows, facts.newest = _int(r[0]), naive_utc(r[1])
        facts.rows_how = "count(*) over the view (a small one)"


def trino_query(
    *, login: Mapping[str, Any], catalog: str, timeout_s: float
) -> Callable[[str], list[list[Any]]]:
    """Run one statement on Trino and fetch its rows; failures become Unavailable.
    `login`: host, port, user and credentials (TrinoSettings.trino_login)."""
    where = f"{login['host']}:{login['port']}"

    def run(sql: str) -> list[list[Any]]:
        conn = trino_client.connect(
            **login,
            catalog=catalog,
            request_timeout=timeout_s,
            max_attempts=1,  # a page waits for one try, not three
            timezone="UTC",
            session_properties={"query_max_run_time": f"{max(1, int(timeout_s))}s"},
        )
        try:
            cur = conn.cursor()
            cur.execute(sql)
            return cur.fetchall()  # type: ignore[no-any-return]
        except TrinoQueryError as exc:
            missing = exc.error_name in ("TABLE_NOT_FOUND", "SCHEMA_NOT_FOUND")
            raise Unavailable(f"{exc.error_name}: {exc.message}", missing=missing) from exc
        except (TrinoError, HttpError, OSError) as exc:
            raise Unavailable(f"Trino at {where} unreachable: {exc}") from exc
        finally:
            conn.close()

    return run


def to_jsonable(value: Any) -> Any:
    """Dataclasses' dicts as JSON: datetimes as ISO-8601 (naive UTC: a Z is added)."""
    if isinstance(value, datetime):
        return value.isoformat() + ("Z" if value.tzinfo is None else "")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2)
