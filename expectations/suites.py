"""The expectation suites, as code: what each table of the platform must satisfy.

Four suites, one per table (named by its logical name; the SQL schemas may differ):

  raw.readings               schema and types; keys and times not null; (sensor_id, ts)
                             unique; every value in its sensor's range; only known
                             sensors; ts not in the future; ingestion delay (received_at
                             - ts) within 10 s for 99% of the readings; every known sensor
                             reporting
  raw.rejected               schema and types; reason codes known; dead letters at most
                             1% of the window's readings
  curated.readings_1m        schema and types; keys not null; (sensor_id, window_start)
                             unique; windows of 1 minute; count >= 1; min <= mean <= max
  curated.sensor_quality_1m  schema and types; keys not null; (sensor_id, window_start)
                             unique; windows of 1 minute; score in [0, 1]; score >= 0.9
                             for 95% of the sensor-minutes

Each expectation carries `meta["check"]`, a short stable name (`value_in_range`,
`unique_sensor_ts`, ...): the run summary (latest.json) and the tests name checks by
it, so a reworded or re-parameterised expectation keeps its identity. `notes` say
why, and the Data Docs show them beside the expectation.

Guarantees: building a suite is pure (no I/O, no clock: the run's time and the
sensor list are arguments), and the same arguments build the same suite. The
thresholds are the constants below, reviewed with the code like
stream_jobs/quality.py's.

Two things the suites see that the tables do not have: `derive` adds
`ingestion_delay_s` (received_at - ts) to the readings and `window_seconds`
(window_end - window_start) to the 1-minute tables, because GX Core has no
expectation comparing a difference of two columns with a constant.
Columns are declared with their Trino types; the loader (expectations.source) maps
each Trino type to one pandas dtype, so a column whose Trino type changes fails
its type expectation.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.expectations.row_conditions import Column

# -- thresholds -------------------------------------------------------------------------

# A reading's ts may be ahead of the run's clock by this much (clock differences
# between a device and this host); more is a device clock running ahead, which the
# bridge lets through up to DT_MAX_AHEAD_SECONDS (5 min).
FUTURE_ALLOWANCE = timedelta(seconds=5)
# A reading received more than this after its ts is late (docs/quality.md: the
# 1-minute job's `late` uses the same 10 s) ...
MAX_INGESTION_DELAY_S = 10.0
# ... and at least this share of the window's readings must be on time.
ON_TIME_SHARE = 0.99
# Dead letters in the window may be at most this share of the window's readings:
# a healthy fleet sends none; a device or gateway sending garbage shows up here.
MAX_DEAD_LETTER_RATE = 0.01
# A sensor-minute scores high at or above this (docs/quality.md: `degraded` below 0.9) ...
HIGH_SCORE = 0.9
# ... and at least this share of the window's sensor-minutes must score high.
HIGH_SCORE_SHARE = 0.95

# -- the tables' columns, with their Trino types (stream_jobs/tables.py, catalog.py) ----

READINGS_COLUMNS = {
    "sensor_id": "varchar",
    "ts": "timestamp(6)",
    "value": "double",
    "payload": "varchar",
    "mqtt_topic": "varchar",
    "received_at": "timestamp(6)",
    "kafka_partition": "integer",
    "kafka_offset": "bigint",
    "event_date": "date",
}
REJECTED_COLUMNS = {
    "reason": "varchar",
    "reason_code": "varchar",
    "payload": "varbinary",
    "payload_text": "varchar",
    "mqtt_topic": "varchar",
    "received_at": "timestamp(6)",
    "kafka_partition": "integer",
    "kafka_offset": "bigint",
    "kafka_topic": "varchar",
    "payload_size": "bigint",
    "payload_sha256": "varchar",
    "received_date": "date",
}
READINGS_1M_COLUMNS = {  # the view curated.readings_1m (newest revision of each window)
    "sensor_id": "varchar",
    "window_start": "timestamp(6)",
    "window_end": "timestamp(6)",
    "mean": "double",
    "min": "double",
    "max": "double",
    "count": "bigint",
    "out_of_range_count": "bigint",
    "late_count": "bigint",
    "revision": "integer",
    "emitted_at": "timestamp(6)",
    "window_date": "date",
}
SENSOR_QUALITY_1M_COLUMNS = {
    "sensor_id": "varchar",
    "window_start": "timestamp(6)",
    "window_end": "timestamp(6)",
    "expected": "double",
    "received": "bigint",
    "valid": "bigint",
    "out_of_range": "bigint",
    "duplicates": "bigint",
    "late": "bigint",
    "rejected": "bigint",
    "score": "double",
    "revision": "integer",
    "emitted_at": "timestamp(6)",
    "window_date": "date",
}

# The dead letters' reason codes (stream_jobs/tables.py, raw.rejected.reason_code).
REASON_CODES = (
    "not_json",
    "not_object",
    "missing_id",
    "bad_id",
    "missing_dt",
    "bad_dt",
    "dt_too_old",
    "dt_in_future",
    "missing_value",
    "bad_value",
    "oversized",
    "duplicate",
    "kafka_rejected",
    "internal_error",
)

READINGS = "raw.readings"
REJECTED = "raw.rejected"
READINGS_1M = "curated.readings_1m"
SENSOR_QUALITY_1M = "curated.sensor_quality_1m"
SUITES = (READINGS, REJECTED, READINGS_1M, SENSOR_QUALITY_1M)

COLUMNS = {
    READINGS: READINGS_COLUMNS,
    REJECTED: REJECTED_COLUMNS,
    READINGS_1M: READINGS_1M_COLUMNS,
    SENSOR_QUALITY_1M: SENSOR_QUALITY_1M_COLUMNS,
}
# Columns `derive` adds, per suite.
DERIVED = {
    READINGS: ("ingestion_delay_s",),
    REJECTED: (),
    READINGS_1M: ("window_seconds",),
    SENSOR_QUALITY_1M: ("window_seconds",),
}

# Trino type -> the pandas dtype the loader gives such a column (expectations.source
# converts with it; the type expectations check it). Nullable pandas dtypes for
# integers and strings, so a null does not turn a column into float or object.
DTYPES = {
    "varchar": "string",
    "double": "float64",
    "real": "float32",
    "bigint": "Int64",
    "integer": "Int32",
    "smallint": "Int16",
    "tinyint": "Int8",
    "boolean": "boolean",
    "date": "datetime64[s]",
    "timestamp(0)": "datetime64[s]",
    "timestamp(3)": "datetime64[ms]",
    "timestamp(6)": "datetime64[us]",
    "timestamp(9)": "datetime64[ns]",
    "varbinary": "object",
}
OTHER_DTYPE = "object"  # any other Trino type (arrays, maps, decimals, ...)


def dtype(trino_type: str) -> str:
    """The pandas dtype of a column of this Trino type (`varchar(10)` is a varchar)."""
    base = trino_type.split("(", 1)[0] if trino_type.startswith("varchar") else trino_type
    return DTYPES.get(base, OTHER_DTYPE)


@dataclass(frozen=True)
class Sensor:
    """A sensor of raw.sensors_current: its id and declared range."""

    sensor_id: str
    range_min: float
    range_max: float


# -- deriving what the suites check beyond the tables' columns ------------------------


def derive(suite: str, df: pd.DataFrame) -> pd.DataFrame:
    """The suite's batch: the table's window plus its derived columns (when the
    columns they come from exist; else the schema expectation says what is missing)."""
    out = df.copy()
    if suite == READINGS and {"ts", "received_at"} <= set(df.columns):
        out["ingestion_delay_s"] = (df["received_at"] - df["ts"]).dt.total_seconds()
    if suite in (READINGS_1M, SENSOR_QUALITY_1M) and {"window_start", "window_end"} <= set(
        df.columns
    ):
        out["window_seconds"] = (df["window_end"] - df["window_start"]).dt.total_seconds()
    return out


# -- building blocks ----------------------------------------------------------------------


def _check(name: str, says: str, notes: str | None = None) -> dict[str, Any]:
    """An expectation's identity and texts: `meta.check` (stable, for the summary and
    the tests), a description that the Data Docs show instead of GX's generic
    sentence (so a result page names the check), and notes (why; on the suite page)."""
    kwargs: dict[str, Any] = {"meta": {"check": name}, "description": f"{name}: {says}"}
    if notes:
        kwargs["notes"] = notes
    return kwargs


def _schema(suite: str) -> list[gxe.Expectation]:
    """The table's columns, exactly (plus the derived ones), each of its Trino type."""
    columns = COLUMNS[suite]
    derived = DERIVED[suite]
    out: list[gxe.Expectation] = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=[*columns, *derived],
            exact_match=True,
            **_check(
                "schema",
                f"the columns are exactly {', '.join(columns)}"
                + (f" (and the derived {', '.join(derived)})" if derived else ""),
                "A column added or dropped changes this suite in the same review.",
            ),
        )
    ]
    out += [
        gxe.ExpectColumnTypeToBe(
            column=name,
            type_=dtype(trino_type),
            **_check(f"type:{name}", f"{name} is {trino_type} (pandas {dtype(trino_type)})"),
        )
        for name, trino_type in columns.items()
    ]
    return out


def _not_null(columns: Iterable[str]) -> list[gxe.Expectation]:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column=c, **_check(f"not_null:{c}", f"{c} is never null"))
        for c in columns
    ]


def _one_minute_windows() -> gxe.Expectation:
    return gxe.ExpectColumnValuesToBeBetween(
        column="window_seconds",
        min_value=60,
        max_value=60,
        **_check("window_is_one_minute", "window_end is window_start + 1 minute"),
    )


def _unique(columns: list[str], check: str, notes: str) -> gxe.Expectation:
    return gxe.ExpectCompoundColumnsToBeUnique(
        column_list=columns,
        **_check(check, f"({', '.join(columns)}) is unique", notes),
    )


def range_groups(sensors: Sequence[Sensor]) -> dict[tuple[float, float], list[str]]:
    """Sensor ids by declared range (sorted): one range expectation per distinct range.
    A sensor without a range (null) has nothing to check."""
    groups: dict[tuple[float, float], list[str]] = defaultdict(list)
    for s in sorted(sensors, key=lambda s: s.sensor_id):
        if not (math.isnan(s.range_min) or math.isnan(s.range_max)):
            groups[(s.range_min, s.range_max)].append(s.sensor_id)
    return dict(sorted(groups.items()))


def _names(ids: Sequence[str], shown: int = 5) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more


# -- the suites -------------------------------------------------------------------------


def readings_suite(sensors: Sequence[Sensor], now: datetime) -> gx.ExpectationSuite:
    """raw.readings, against the sensor list and the run's time `now` (naive UTC)."""
    out = [*_schema(READINGS), *_not_null(("sensor_id", "ts", "value", "received_at"))]
    out.append(
        _unique(
            ["sensor_id", "ts"],
            "unique_sensor_ts",
            "One sensor cannot report twice at one instant; the bridge dead-letters a "
            "repeat, so a pair here twice came around it (or was archived twice).",
        )
    )
    # One expectation per distinct range rather than per sensor: the suite grows with
    # the kinds of sensor (a handful), not with the fleet, and a failure still names
    # its rows' sensors (the summary lists sensor_id and ts of the unexpected rows).
    for (lo, hi), ids in range_groups(sensors).items():
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="value",
                min_value=lo,
                max_value=hi,
                row_condition=Column("sensor_id").is_in(ids),
                **_check(
                    "value_in_range",
                    f"value is within [{lo:g}, {hi:g}] for {_names(ids)}",
                    "The sensors' declared range (raw.sensors_current); the bridge accepts "
                    "values outside it, the 1-minute means leave them out.",
                ),
            )
        )
    known = sorted(s.sensor_id for s in sensors)
    out.append(
        gxe.ExpectColumnValuesToBeInSet(
            column="sensor_id",
            value_set=known,
            **_check(
                "known_sensor",
                f"sensor_id is one of the {len(known)} sensors of raw.sensors_current",
                "A reading of an id missing from the sensor list has no range to check.",
            ),
        )
    )
    out.append(
        gxe.ExpectColumnDistinctValuesToContainSet(
            column="sensor_id",
            value_set=known,
            **_check(
                "every_sensor_reporting",
                f"each of the {len(known)} sensors of raw.sensors_current sent a reading "
                "in the window",
            ),
        )
    )
    limit = now + FUTURE_ALLOWANCE
    out.append(
        gxe.ExpectColumnValuesToBeBetween(
            column="ts",
            max_value=limit,
            **_check(
                "ts_not_in_future",
                f"ts is at most {limit.isoformat(sep=' ')} (the run's time "
                f"+ {FUTURE_ALLOWANCE.total_seconds():g} s)",
                "A ts ahead of the clock is a device clock running ahead; the bridge "
                "accepts up to 5 minutes of it.",
            ),
        )
    )
    out.append(
        gxe.ExpectColumnValuesToBeBetween(
            column="ingestion_delay_s",
            max_value=MAX_INGESTION_DELAY_S,
            mostly=ON_TIME_SHARE,
            **_check(
                "ingestion_delay",
                f"received_at - ts is at most {MAX_INGESTION_DELAY_S:g} s for "
                f"{ON_TIME_SHARE:.0%} of the readings",
                "A late reading revises its 1-minute mean after it was first emitted.",
            ),
        )
    )
    return gx.ExpectationSuite(name=READINGS, expectations=out)


def max_dead_letters(readings_in_window: int) -> int:
    """How many dead letters a window with this many readings may hold."""
    return int(MAX_DEAD_LETTER_RATE * readings_in_window)


def rejected_suite(readings_in_window: int) -> gx.ExpectationSuite:
    """raw.rejected, received in the window, against the readings of the same window."""
    out = [*_schema(REJECTED), *_not_null(("reason_code", "received_at", "kafka_topic"))]
    out.append(
        gxe.ExpectColumnValuesToBeInSet(
            column="reason_code",
            value_set=list(REASON_CODES),
            **_check("reason_code_known", "reason_code is one of the contract's codes"),
        )
    )
    # A row-count bound rather than a rate column: the batch stays the dead letters
    # themselves (the other expectations need their rows), and the bound is the rate
    # times the window's readings, said in the description.
    bound = max_dead_letters(readings_in_window)
    out.append(
        gxe.ExpectTableRowCountToBeBetween(
            min_value=0,
            max_value=bound,
            **_check(
                "dead_letter_rate",
                f"at most {bound} dead letters: {MAX_DEAD_LETTER_RATE:.0%} of the "
                f"window's {readings_in_window} readings",
                "A healthy fleet sends none; a device or gateway sending garbage shows here.",
            ),
        )
    )
    return gx.ExpectationSuite(name=REJECTED, expectations=out)


def readings_1m_suite() -> gx.ExpectationSuite:
    """curated.readings_1m (the newest revision of each window)."""
    out = [
        *_schema(READINGS_1M),
        *_not_null(("sensor_id", "window_start", "window_end", "count", "revision")),
        _unique(
            ["sensor_id", "window_start"],
            "unique_sensor_window",
            "One row per sensor and minute: the view keeps the newest revision only.",
        ),
        _one_minute_windows(),
        gxe.ExpectColumnValuesToBeBetween(
            column="count",
            min_value=1,
            **_check(
                "count_positive",
                "count is at least 1",
                "A window exists because a reading came; count 0 means every reading of "
                "the minute was out of range.",
            ),
        ),
        # mean, min and max are null when count is 0 (checked above): not compared here.
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="mean",
            column_B="min",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
            **_check("mean_at_least_min", "mean >= min"),
        ),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="max",
            column_B="mean",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
            **_check("mean_at_most_max", "mean <= max"),
        ),
    ]
    return gx.ExpectationSuite(name=READINGS_1M, expectations=out)


def sensor_quality_suite() -> gx.ExpectationSuite:
    """curated.sensor_quality_1m (the newest revision of each sensor-minute)."""
    out = [
        *_schema(SENSOR_QUALITY_1M),
        *_not_null(("sensor_id", "window_start", "window_end", "score", "revision")),
        _unique(
            ["sensor_id", "window_start"],
            "unique_sensor_window",
            "One newest revision per sensor and minute.",
        ),
        _one_minute_windows(),
        gxe.ExpectColumnValuesToBeBetween(
            column="score",
            min_value=0,
            max_value=1,
            **_check(
                "score_in_unit_interval",
                "score is within [0, 1]",
                "The score is a product of factors in [0, 1] (docs/quality.md).",
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="score",
            min_value=HIGH_SCORE,
            mostly=HIGH_SCORE_SHARE,
            **_check(
                "score_high",
                f"score is at least {HIGH_SCORE:g} for {HIGH_SCORE_SHARE:.0%} of the "
                "sensor-minutes",
                "Missing, out-of-range, duplicate, late or rejected readings lower the "
                "score: this is where faults of the fleet show.",
            ),
        ),
    ]
    return gx.ExpectationSuite(name=SENSOR_QUALITY_1M, expectations=out)


def build_suites(
    sensors: Sequence[Sensor], now: datetime, readings_in_window: int
) -> dict[str, gx.ExpectationSuite]:
    """Every suite, for a run at `now` with this sensor list."""
    return {
        READINGS: readings_suite(sensors, now),
        REJECTED: rejected_suite(readings_in_window),
        READINGS_1M: readings_1m_suite(),
        SENSOR_QUALITY_1M: sensor_quality_suite(),
    }
