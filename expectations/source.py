"""What is validated: a recent window of each table, read through Trino into pandas.

Why through Trino: it is the one SQL engine over the Iceberg tables; it reads each
table's current snapshot (never files that compaction replaced, nor a commit that
did not land), has the views (curated.readings_1m is one), and needs no lake or
metastore credentials in this process: a Trino user is all it holds.

Why one query per table into a DataFrame, validated by GX's pandas engine, rather
than GX's SQL data source (`great_expectations[trino]`, one SQL query per metric):
the reference measurement took 10 s and 19 metric queries for two expectations on
raw.readings, and these suites have about 60; here a run is five queries (the
sensor list and four windows), each scanning its window once, and the metrics are
computed in memory. A window is small by design (by default the last hour: about
18,000 readings for the 5 sensors of sensors.json, 360,000 for a fleet of 100).

The window: rows whose event time is at or after the run's time minus
QUALITY_WINDOW_MINUTES. There is no upper bound, so readings stamped in the future
are in it (an expectation looks for them). Event time is `ts` for readings and
`window_start` for the 1-minute tables; dead letters have no trustworthy event
time, so theirs is `received_at`. Times are naive UTC, as the tables store them.

Guarantees: the SQL is built by pure functions (`window_sqls`), with the window's
bounds as literals computed once per run, so every table is read for the same
window. Each column is converted to the pandas dtype of its Trino type
(`suites.dtype`), so a DataFrame's dtypes are the image of the table's SQL types.
A query error of one table (TrinoUserError: a table or view missing, a column
renamed) is that table's outcome; any other failure means Trino is not usable and
raises `TrinoUnavailable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from trino.exceptions import TrinoUserError

from expectations.settings import QualitySettings
from expectations.suites import (
    READINGS,
    READINGS_1M,
    REJECTED,
    SENSOR_QUALITY_1M,
    Sensor,
    dtype,
)
from iot_common import trino_client


class TrinoUnavailable(Exception):
    """Trino could not be reached or could not answer: the run cannot happen."""


@dataclass(frozen=True)
class Window:
    """[start, end]: the run's time `end` and `minutes` before it (naive UTC)."""

    start: datetime
    end: datetime

    @classmethod
    def ending(cls, end: datetime, minutes: int) -> Window:
        return cls(start=end - timedelta(minutes=minutes), end=end)

    @property
    def minutes(self) -> float:
        return (self.end - self.start).total_seconds() / 60


def timestamp_literal(t: datetime) -> str:
    """A Trino `timestamp(6)` literal of a naive UTC datetime."""
    return f"TIMESTAMP '{t.strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def sensors_sql(catalog: str, raw: str) -> str:
    return (
        f"SELECT sensor_id, range_min, range_max FROM {catalog}.{raw}.sensors_current "
        "ORDER BY sensor_id"
    )


def window_sqls(catalog: str, raw: str, curated: str, window: Window) -> dict[str, str]:
    """Each suite's SQL: its table's rows in the window."""
    start = timestamp_literal(window.start)
    quality = f"{catalog}.{curated}.sensor_quality_1m"
    return {
        # day(ts) partitions: Trino prunes the days before the window from this predicate.
        READINGS: f"SELECT * FROM {catalog}.{raw}.readings WHERE ts >= {start}",
        REJECTED: f"SELECT * FROM {catalog}.{raw}.rejected WHERE received_at >= {start}",
        # The view keeps the newest revision of each window.
        READINGS_1M: f"SELECT * FROM {catalog}.{curated}.readings_1m WHERE window_start >= {start}",
        # A table of every revision: its newest revision of each sensor-minute.
        SENSOR_QUALITY_1M: f"""SELECT q.* FROM {quality} q
JOIN (SELECT sensor_id, window_start, max(revision) AS revision
      FROM {quality} WHERE window_start >= {start}
      GROUP BY sensor_id, window_start) n
  ON q.sensor_id = n.sensor_id AND q.window_start = n.window_start
 AND q.revision = n.revision
WHERE q.window_start >= {start}""",
    }


def typed_frame(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Rows as the Trino client returns them, with (name, Trino type) per column, as a
    DataFrame whose dtypes are those of the Trino types."""
    names = [name for name, _ in columns]
    df = pd.DataFrame.from_records(list(rows), columns=names)
    for name, trino_type in columns:
        target = dtype(trino_type)
        if target.startswith("datetime64"):
            # datetime.date and datetime.datetime alike; None becomes NaT.
            df[name] = pd.to_datetime(df[name]).astype(target)
        elif target != "object":
            df[name] = df[name].astype(target)
    return df


class TrinoSource:
    """Queries Trino (one connection per run); counts the queries it sent."""

    def __init__(self, s: QualitySettings) -> None:
        self.settings = s
        self.queries = 0

    def frame(self, sql: str) -> pd.DataFrame:
        """The query's result, typed. TrinoUserError passes (the query's own fault);
        anything else is TrinoUnavailable."""
        s = self.settings
        self.queries += 1
        try:
            password = s.trino_password.get_secret_value() if s.trino_password else None
            conn = trino_client.connect(
                host=s.trino_host,
                port=s.trino_port,
                user=s.trino_user,
                password=password,
                ca_file=s.trino_ca_file or None,
                catalog=s.trino_catalog,
                source="iot-quality",
                request_timeout=300,
                max_attempts=2,
            )
            try:
                cur = conn.cursor()
                cur.execute(sql)
                rows = cur.fetchall()
                columns = [(d[0], d[1]) for d in cur.description]
            finally:
                conn.close()
        except TrinoUserError:
            raise
        except Exception as exc:  # whatever stops Trino answering
            first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            raise TrinoUnavailable(
                f"Trino at {s.trino_host}:{s.trino_port}: {type(exc).__name__}: {first}"
            ) from exc
        return typed_frame(columns, rows)

    def sensors(self) -> list[Sensor]:
        df = self.frame(sensors_sql(self.settings.trino_catalog, self.settings.raw_schema))
        return [
            Sensor(str(r.sensor_id), float(r.range_min), float(r.range_max))
            for r in df.itertuples(index=False)
        ]

    def windows(self, window: Window) -> dict[str, pd.DataFrame | TrinoUserError]:
        """Each suite's window, or the error its query got."""
        s = self.settings
        out: dict[str, pd.DataFrame | TrinoUserError] = {}
        for suite, sql in window_sqls(
            s.trino_catalog, s.raw_schema, s.curated_schema, window
        ).items():
            try:
                out[suite] = self.frame(sql)
            except TrinoUserError as exc:
                out[suite] = exc
        return out
