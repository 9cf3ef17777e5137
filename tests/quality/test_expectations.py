"""The expectation suites on small hand-made windows: clean data passes every
suite, and each planted fault fails exactly the expectation that looks for it.
Also the pure parts: the window's SQL, the Trino -> pandas typing, the summary's
shape, the index's links, pruning, the command's exit codes.

Runs with the quality virtualenv (GX is there, not in the platform's .venv):
    .venv-quality/bin/python -m pytest --noconftest tests/quality
"""

from __future__ import annotations

import json
import os
import re
import signal
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

gx = pytest.importorskip(
    "great_expectations",
    reason="GX is in .venv-quality only: .venv-quality/bin/python -m pytest --noconftest "
    "tests/quality",
)

import pandas as pd  # noqa: E402
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from trino.exceptions import TrinoUserError  # noqa: E402

from expectations import __main__ as cli  # noqa: E402
from expectations import run, suites  # noqa: E402
from expectations.settings import QualitySettings  # noqa: E402
from expectations.source import (  # noqa: E402
    TrinoUnavailable,
    Window,
    sensors_sql,
    timestamp_literal,
    typed_frame,
    window_sqls,
)
from expectations.suites import (  # noqa: E402
    READINGS,
    READINGS_1M,
    REJECTED,
    SENSOR_QUALITY_1M,
    Sensor,
)

NOW = datetime(2026, 11, 30, 12, 0, 0, 123456)
SENSORS = [Sensor(f"Sensor {i}", 0.0, 45.0) for i in range(1, 6)] + [
    Sensor("Humidity 1", 0.0, 100.0)
]
MINUTES = 10  # of data in the hand-made windows
EVERY_S = 10  # one reading per sensor every 10 s: 60 per sensor, 360 in all


# -- hand-made windows, as Trino returns them (rows of Python values) -----------------


def typed(suite: str, rows: list[list[Any]]) -> pd.DataFrame:
    return typed_frame(list(suites.COLUMNS[suite].items()), rows)


def reading(sensor: str, ts: datetime, value: float, delay_s: float = 0.05, offset: int = 0):
    payload = json.dumps({"id": sensor, "dt": ts.isoformat(), "value": value})
    received = ts + timedelta(seconds=delay_s)
    return [sensor, ts, float(value), payload, "sensors", received, 0, offset, ts.date()]


def readings_rows() -> list[list[Any]]:
    start = NOW - timedelta(minutes=MINUTES)
    rows = []
    for k in range(MINUTES * 60 // EVERY_S):
        ts = start + timedelta(seconds=k * EVERY_S)
        for i, s in enumerate(SENSORS):
            rows.append(reading(s.sensor_id, ts, (k * 7 + i) % 45, offset=len(rows)))
    return rows


def rejected_rows(n: int) -> list[list[Any]]:
    t = NOW - timedelta(minutes=5)
    return [
        [
            "not_json: Expecting value",
            "not_json",
            b"garbage",
            "garbage",
            "sensors",
            t + timedelta(seconds=k),
            0,
            k,
            "iot.readings.dlq",
            7,
            "ab" * 32,
            t.date(),
        ]
        for k in range(n)
    ]


def minutes() -> list[tuple[str, datetime]]:
    first = NOW.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES)
    return [(s.sensor_id, first + timedelta(minutes=m)) for m in range(MINUTES) for s in SENSORS]


def readings_1m_rows() -> list[list[Any]]:
    return [
        [
            sid,
            ws,
            ws + timedelta(minutes=1),
            20.0,
            10.0,
            30.0,
            6,
            0,
            0,
            1,
            ws + timedelta(seconds=65),
            ws.date(),
        ]
        for sid, ws in minutes()
    ]


def quality_rows() -> list[list[Any]]:
    return [
        [
            sid,
            ws,
            ws + timedelta(minutes=1),
            6.0,
            6,
            6,
            0,
            0,
            0,
            0,
            1.0,
            1,
            ws + timedelta(seconds=65),
            ws.date(),
        ]
        for sid, ws in minutes()
    ]


def col(suite: str, name: str) -> int:
    return list(suites.COLUMNS[suite]).index(name)


# -- validating ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def context():
    return gx.get_context(mode="ephemeral")


def validate(context, suite: str, rows: list[list[Any]], **build: Any) -> dict[str, Any]:
    """The suite's validation result (JSON dict) for these rows."""
    if suite == READINGS:
        built = suites.readings_suite(build.get("sensors", SENSORS), NOW)
    elif suite == REJECTED:
        built = suites.rejected_suite(build.get("readings", 360))
    elif suite == READINGS_1M:
        built = suites.readings_1m_suite()
    else:
        built = suites.sensor_quality_suite()
    df = suites.derive(suite, typed(suite, rows))
    result = run.validate(context, built, df, RunIdentifier(run_name="test"))
    return result.to_json_dict()


def failed_checks(result: dict[str, Any]) -> list[str]:
    return sorted(
        r["expectation_config"]["meta"]["check"] for r in result["results"] if not r["success"]
    )


CLEAN = {
    READINGS: readings_rows,
    REJECTED: lambda: rejected_rows(3),  # 3 dead letters: within 1% of 360 readings
    READINGS_1M: readings_1m_rows,
    SENSOR_QUALITY_1M: quality_rows,
}


@pytest.mark.parametrize("suite", suites.SUITES)
def test_clean_data_passes_every_expectation(context, suite):
    result = validate(context, suite, CLEAN[suite]())
    assert failed_checks(result) == []
    assert result["success"]
    assert result["statistics"]["evaluated_expectations"] == len(
        suites.build_suites(SENSORS, NOW, 360)[suite].expectations
    )


# Each planted fault: (suite, how to plant it in the clean rows, the one check it fails).


def duplicate_reading(rows):
    dup = list(rows[17])
    dup[col(READINGS, "kafka_offset")] = 10_000  # the same reading, archived twice
    return [*rows, dup]


def out_of_range_value(rows):
    rows[20][col(READINGS, "value")] = 46.0  # Sensor 3's range is [0, 45]
    return rows


def ts_in_future(rows):
    ts = NOW + timedelta(minutes=3)  # a device clock ahead (the bridge allows 5 min)
    return [*rows, reading("Sensor 2", ts, 10, delay_s=-180.0, offset=10_001)]


def late_readings(rows):
    for row in rows[::40]:  # 9 of 360 readings (2.5%) received 2 minutes after their ts
        row[col(READINGS, "received_at")] = row[col(READINGS, "ts")] + timedelta(minutes=2)
    return rows


def missing_sensor(rows):
    return [r for r in rows if r[0] != "Sensor 4"]


def high_dead_letter_rate(rows):
    return rejected_rows(4)  # 4 > 1% of 360


def low_scores(rows):
    for row in rows[::10]:  # 10% of the sensor-minutes score 0.5
        row[col(SENSOR_QUALITY_1M, "score")] = 0.5
    return rows


def mean_above_max(rows):
    rows[3][col(READINGS_1M, "mean")] = 31.0
    return rows


def two_minute_window(rows):
    r = rows[5]
    r[col(READINGS_1M, "window_end")] = r[col(READINGS_1M, "window_start")] + timedelta(minutes=2)
    return rows


def empty_window(rows):
    r = rows[8]
    r[col(READINGS_1M, "count")] = 0
    for name in ("mean", "min", "max"):
        r[col(READINGS_1M, name)] = None
    return rows


def duplicate_window(rows):
    return [*rows, list(rows[0])]


def score_above_one(rows):
    rows[2][col(SENSOR_QUALITY_1M, "score")] = 1.2
    return rows


FAULTS = [
    (READINGS, duplicate_reading, "unique_sensor_ts"),
    (READINGS, out_of_range_value, "value_in_range"),
    (READINGS, ts_in_future, "ts_not_in_future"),
    (READINGS, late_readings, "ingestion_delay"),
    (READINGS, missing_sensor, "every_sensor_reporting"),
    (REJECTED, high_dead_letter_rate, "dead_letter_rate"),
    (SENSOR_QUALITY_1M, low_scores, "score_high"),
    (SENSOR_QUALITY_1M, score_above_one, "score_in_unit_interval"),
    (SENSOR_QUALITY_1M, duplicate_window, "unique_sensor_window"),
    (READINGS_1M, mean_above_max, "mean_at_most_max"),
    (READINGS_1M, two_minute_window, "window_is_one_minute"),
    (READINGS_1M, empty_window, "count_positive"),
    (READINGS_1M, duplicate_window, "unique_sensor_window"),
]


@pytest.mark.parametrize(
    ("suite", "plant", "check"), FAULTS, ids=[f"{f[1].__name__}" for f in FAULTS]
)
def test_a_planted_fault_fails_exactly_its_expectation(context, suite, plant, check):
    result = validate(context, suite, plant(CLEAN[suite]()))
    assert failed_checks(result) == [check]
    assert not result["success"]


def test_each_sensor_is_held_to_its_own_range(context):
    rows = readings_rows()
    humidity = [r for r in rows if r[0] == "Humidity 1"]
    humidity[0][col(READINGS, "value")] = 80.0  # within [0, 100]: fine for this sensor
    assert failed_checks(validate(context, READINGS, rows)) == []
    rows[0][col(READINGS, "value")] = 80.0  # Sensor 1: [0, 45]
    result = validate(context, READINGS, rows)
    assert failed_checks(result) == ["value_in_range"]
    (failed,) = run.failed_expectations(result)
    (row,) = failed["observed"]["partial_unexpected_index_list"]
    assert (row["sensor_id"], row["value"]) == ("Sensor 1", 80.0)


def test_a_few_late_readings_are_tolerated(context):
    rows = readings_rows()
    for row in rows[::120]:  # 3 of 360 (0.8%): within the 1% allowed
        row[col(READINGS, "received_at")] = row[col(READINGS, "ts")] + timedelta(minutes=2)
    assert failed_checks(validate(context, READINGS, rows)) == []


def test_an_unknown_sensor_is_flagged(context):
    rows = [*readings_rows(), reading("Sensor 99", NOW - timedelta(seconds=30), 1.0)]
    assert failed_checks(validate(context, READINGS, rows)) == ["known_sensor"]


def test_a_few_dead_letters_are_tolerated_and_none_without_readings(context):
    assert failed_checks(validate(context, REJECTED, rejected_rows(3), readings=360)) == []
    assert failed_checks(validate(context, REJECTED, rejected_rows(1), readings=0)) == [
        "dead_letter_rate"
    ]
    rows = rejected_rows(2)
    rows[0][col(REJECTED, "reason_code")] = "made_up"
    assert failed_checks(validate(context, REJECTED, rows)) == ["reason_code_known"]


def test_schema_drift_fails_the_schema_and_type_expectations(context):
    names = list(suites.READINGS_COLUMNS)
    dropped = [
        [v for n, v in zip(names, r, strict=True) if n != "mqtt_topic"] for r in readings_rows()
    ]
    columns = [(n, t) for n, t in suites.READINGS_COLUMNS.items() if n != "mqtt_topic"]
    df = suites.derive(READINGS, typed_frame(columns, dropped))
    result = run.validate(
        context, suites.readings_suite(SENSORS, NOW), df, RunIdentifier(run_name="test")
    ).to_json_dict()
    assert failed_checks(result) == ["schema", "type:mqtt_topic"]

    # kafka_offset as a Trino integer instead of a bigint
    columns = [
        (n, "integer" if n == "kafka_offset" else t) for n, t in suites.READINGS_COLUMNS.items()
    ]
    df = suites.derive(READINGS, typed_frame(columns, readings_rows()))
    result = run.validate(
        context, suites.readings_suite(SENSORS, NOW), df, RunIdentifier(run_name="test")
    ).to_json_dict()
    assert failed_checks(result) == ["type:kafka_offset"]


def test_nulls_in_key_columns_fail_not_null(context):
    rows = readings_rows()
    rows[4][col(READINGS, "sensor_id")] = None
    checks = failed_checks(validate(context, READINGS, rows))
    assert "not_null:sensor_id" in checks


# -- suite contents -------------------------------------------------------------------------


def checks_of(suite: gx.ExpectationSuite) -> list[str]:
    return [e.meta["check"] for e in suite.expectations]


def test_suites_contain_the_checks_the_platform_relies_on():
    built = suites.build_suites(SENSORS, NOW, 360)
    assert set(built) == set(suites.SUITES)
    readings = checks_of(built[READINGS])
    for check in (
        "schema",
        "not_null:sensor_id",
        "not_null:ts",
        "unique_sensor_ts",
        "value_in_range",
        "known_sensor",
        "every_sensor_reporting",
        "ts_not_in_future",
        "ingestion_delay",
    ):
        assert check in readings
    assert {f"type:{c}" for c in suites.READINGS_COLUMNS} <= set(readings)
    assert "dead_letter_rate" in checks_of(built[REJECTED])
    for check in (
        "unique_sensor_window",
        "window_is_one_minute",
        "count_positive",
        "mean_at_least_min",
        "mean_at_most_max",
    ):
        assert check in checks_of(built[READINGS_1M])
    assert {"score_in_unit_interval", "score_high", "unique_sensor_window"} <= set(
        checks_of(built[SENSOR_QUALITY_1M])
    )
    for suite in built.values():
        for e in suite.expectations:  # the Data Docs name each check by its description
            assert e.description.startswith(e.meta["check"] + ": ")
            assert "$" not in e.description  # GX would read it as a template parameter


def test_one_range_expectation_per_distinct_range():
    groups = suites.range_groups([*SENSORS, Sensor("No range", float("nan"), float("nan"))])
    assert groups == {
        (0.0, 45.0): [f"Sensor {i}" for i in range(1, 6)],
        (0.0, 100.0): ["Humidity 1"],
    }
    ranges = [
        e
        for e in suites.readings_suite(SENSORS, NOW).expectations
        if e.meta["check"] == "value_in_range"
    ]
    assert sorted((e.min_value, e.max_value) for e in ranges) == [(0.0, 45.0), (0.0, 100.0)]


def test_thresholds_come_from_the_run_and_the_window():
    readings = suites.readings_suite(SENSORS, NOW)
    (future,) = [e for e in readings.expectations if e.meta["check"] == "ts_not_in_future"]
    assert future.max_value == NOW + timedelta(seconds=5)
    (delay,) = [e for e in readings.expectations if e.meta["check"] == "ingestion_delay"]
    assert (delay.max_value, delay.mostly) == (10.0, 0.99)
    (rate,) = suites.rejected_suite(2500).expectations[-1:]
    assert (rate.meta["check"], rate.max_value) == ("dead_letter_rate", 25)


def test_the_same_arguments_build_the_same_suite():
    def config(s):
        return [e.configuration.to_json_dict() for e in s.expectations]

    assert config(suites.readings_suite(SENSORS, NOW)) == config(
        suites.readings_suite(list(reversed(SENSORS)), NOW)
    )


# -- the window, read through Trino ---------------------------------------------------------


def test_window_sql_reads_the_window_of_each_table_and_nothing_before_it():
    w = Window.ending(NOW, 60)
    assert w.start == NOW - timedelta(hours=1) and w.minutes == 60
    sqls = window_sqls("iceberg", "raw_x", "curated_x", w)
    assert set(sqls) == set(suites.SUITES)
    start = "TIMESTAMP '2026-11-30 11:00:00.123456'"
    assert timestamp_literal(w.start) == start
    assert sqls[READINGS] == f"SELECT * FROM iceberg.raw_x.readings WHERE ts >= {start}"
    assert sqls[REJECTED] == f"SELECT * FROM iceberg.raw_x.rejected WHERE received_at >= {start}"
    assert sqls[READINGS_1M] == (
        f"SELECT * FROM iceberg.curated_x.readings_1m WHERE window_start >= {start}"
    )
    quality = sqls[SENSOR_QUALITY_1M]
    assert "iceberg.curated_x.sensor_quality_1m" in quality
    assert "max(revision)" in quality and quality.count(f"window_start >= {start}") == 2
    # No upper bound: readings stamped in the future must be seen.
    assert all("<" not in sql for sql in sqls.values())
    assert sensors_sql("iceberg", "raw_x").startswith(
        "SELECT sensor_id, range_min, range_max FROM iceberg.raw_x.sensors_current"
    )


def test_columns_get_the_pandas_dtype_of_their_trino_type():
    columns = [
        ("s", "varchar"),
        ("s10", "varchar(10)"),
        ("t", "timestamp(6)"),
        ("d", "date"),
        ("i", "integer"),
        ("b", "bigint"),
        ("x", "double"),
        ("bin", "varbinary"),
        ("arr", "array(integer)"),
    ]
    rows = [
        ["a", "b", datetime(2026, 1, 1, 0, 0, 0, 1), date(2026, 1, 1), 1, 2**40, 1.5, b"\x00", [1]],
        [None, None, None, None, None, None, None, None, None],
    ]
    df = typed_frame(columns, rows)
    assert {c: str(t) for c, t in df.dtypes.items()} == {
        "s": "string",
        "s10": "string",
        "t": "datetime64[us]",
        "d": "datetime64[s]",
        "i": "Int32",
        "b": "Int64",
        "x": "float64",
        "bin": "object",
        "arr": "object",
    }
    assert df["t"][0] == pd.Timestamp("2026-01-01 00:00:00.000001")
    assert df["b"][0] == 2**40 and pd.isna(df["i"][1]) and pd.isna(df["t"][1])
    empty = typed_frame(columns, [])
    assert len(empty) == 0 and str(empty["i"].dtype) == "Int32"


# -- the summary, the Data Docs, the command --------------------------------------------------


class FakeSource:
    """TrinoSource's interface over hand-made windows (a table may be an error)."""

    def __init__(self, settings, frames=None, sensors=SENSORS, unavailable=False):
        self.queries = 0
        self.frames = frames if frames is not None else {s: CLEAN[s]() for s in suites.SUITES}
        self._sensors, self.unavailable = sensors, unavailable

    def sensors(self):
        self.queries += 1
        if self.unavailable:
            raise TrinoUnavailable("Trino at nowhere:1: ConnectionError: refused")
        return self._sensors

    def windows(self, window):
        out = {}
        for name, rows in self.frames.items():
            self.queries += 1
            out[name] = rows if isinstance(rows, TrinoUserError) else typed(name, rows)
        return out


def table_not_found(name: str) -> TrinoUserError:
    return TrinoUserError(
        {
            "message": f"line 1:15: Table '{name}' does not exist",
            "errorName": "TABLE_NOT_FOUND",
            "errorType": "USER_ERROR",
        },
        query_id="q1",
    )


@pytest.fixture
def settings(tmp_path):
    return QualitySettings(_env_file=None, quality_docs_dir=tmp_path / "quality" / "data_docs")


def run_with(monkeypatch, settings, **fake) -> dict[str, Any]:
    monkeypatch.setattr(run, "TrinoSource", lambda s: FakeSource(s, **fake))
    return run.run_once(settings, now=NOW)


def test_a_run_writes_the_summary_and_data_docs_that_link_its_results(monkeypatch, settings):
    frames = {s: CLEAN[s]() for s in suites.SUITES}
    frames[READINGS] = out_of_range_value(duplicate_reading(frames[READINGS]))
    frames[SENSOR_QUALITY_1M] = table_not_found("iceberg.curated.sensor_quality_1m")
    data = run_with(monkeypatch, settings, frames=frames)

    on_disk = json.loads((settings.home / "latest.json").read_text())
    assert on_disk == json.loads(json.dumps(data))  # what was returned, and plain JSON
    assert on_disk["run_time"] == "2026-11-30T12:00:00.123456Z"
    assert on_disk["window"] == {
        "start": "2026-11-30T11:00:00.123456Z",
        "end": "2026-11-30T12:00:00.123456Z",
        "minutes": 60.0,
    }
    assert on_disk["success"] is False and on_disk["error"] is None
    assert on_disk["source"]["queries"] == 5
    assert set(on_disk["timings"]) == {"read_s", "validate_s", "docs_s"}
    assert list(on_disk["suites"]) == list(suites.SUITES)

    readings = on_disk["suites"][READINGS]
    assert readings["success"] is False and readings["rows"] == 361
    assert [f["check"] for f in readings["failed"]] == ["unique_sensor_ts", "value_in_range"]
    assert readings["failed_count"] == 2
    for f in readings["failed"]:
        assert f["expectation"].startswith("expect_")
        assert f["observed"]["unexpected_count"] >= 1
        assert {"sensor_id", "ts"} <= set(f["observed"]["partial_unexpected_index_list"][0])
    assert on_disk["suites"][REJECTED]["success"] is True
    assert on_disk["suites"][REJECTED]["failed"] == []
    missing = on_disk["suites"][SENSOR_QUALITY_1M]
    assert missing["success"] is False and missing["error"].startswith("TABLE_NOT_FOUND: ")

    docs = settings.docs_dir
    index = (docs / "index.html").read_text()
    for name in (READINGS, REJECTED, READINGS_1M):
        page = on_disk["suites"][name]["docs"]
        assert (docs / page).is_file()
        assert f'href="{page}"' in index  # a plain link, readable without GX's scripts
    page = (docs / readings["docs"]).read_text()
    assert "unique_sensor_ts: (sensor_id, ts) is unique" in page
    assert "value_in_range: value is within [0, 45]" in page
    assert "sensor_quality_1m: <b>not validated</b>" in index
    # No page of the Data Docs loads anything from the internet; failures read as such.
    for html_file in docs.rglob("*.html"):
        text = html_file.read_text()
        assert not re.search(r"""(?:src|href)=["']https?://(?!greatexpectations)""", text), (
            html_file
        )
        assert 'id="iot-offline"' in text
    assert "\\2718 FAILED" in page and "fa-times" in page


def test_the_index_keeps_one_latest_block_and_prunes_old_results(monkeypatch, settings):
    monkeypatch.setattr(run, "KEEP_RESULTS", 2)
    for minute in range(3):
        monkeypatch.setattr(run, "TrinoSource", lambda s: FakeSource(s))
        data = run.run_once(settings, now=NOW + timedelta(minutes=minute))
    index = (settings.docs_dir / "index.html").read_text()
    assert index.count(run.LATEST_BEGIN) == 1
    assert data["run_time"] in index
    pages = sorted((settings.docs_dir / "validations" / "raw" / "readings").rglob("*.html"))
    assert len(pages) == 2  # the oldest run's page is gone ...
    assert data["suites"][READINGS]["docs"] in {
        p.relative_to(settings.docs_dir).as_posix() for p in pages
    }
    results = list((settings.home / "gx" / "uncommitted" / "validations").rglob("*.json"))
    assert len(results) == 2 * len(suites.SUITES)  # ... and so is its stored result


def test_trino_unreachable_writes_a_summary_that_says_so(monkeypatch, settings):
    with pytest.raises(TrinoUnavailable):
        run_with(monkeypatch, settings, unavailable=True)
    data = json.loads((settings.home / "latest.json").read_text())
    assert data["success"] is False and "ConnectionError" in data["error"]
    assert data["suites"] == {}


def test_a_missing_sensor_list_leaves_the_readings_unvalidated(monkeypatch, settings):
    class NoSensors(FakeSource):
        def sensors(self):
            self.queries += 1
            raise table_not_found("iceberg.raw.sensors_current")

    monkeypatch.setattr(run, "TrinoSource", NoSensors)
    data = run.run_once(settings, now=NOW)
    assert data["suites"][READINGS]["error"].startswith("the sensor list: TABLE_NOT_FOUND")
    assert data["suites"][REJECTED]["success"] is True


def test_exit_codes(monkeypatch, settings, capsys):
    monkeypatch.setenv("QUALITY_DOCS_DIR", str(settings.quality_docs_dir))
    monkeypatch.setattr(run, "TrinoSource", lambda s: FakeSource(s))
    assert cli.main([]) == 0
    assert cli.main(["--strict"]) == 0
    assert "ok" in capsys.readouterr().out.splitlines()[0]

    frames = {s: CLEAN[s]() for s in suites.SUITES}
    frames[READINGS] = missing_sensor(frames[READINGS])
    monkeypatch.setattr(run, "TrinoSource", lambda s: FakeSource(s, frames=frames))
    assert cli.main([]) == 0  # it ran: failed expectations are a finding, not a failure
    assert cli.main(["--strict"]) == 2
    out = capsys.readouterr().out
    assert "every_sensor_reporting (1 missing)" in out

    monkeypatch.setattr(run, "TrinoSource", lambda s: FakeSource(s, unavailable=True))
    assert cli.main([]) == 1
    assert cli.main(["--strict"]) == 1


def test_the_schedule_goes_on_after_a_failing_run(monkeypatch):
    calls = []

    def fake_run_once(s):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")  # an unforeseen failure: logged, the loop goes on
        if len(calls) == 2:
            raise TrinoUnavailable("Trino at nowhere:1: refused")
        os.kill(os.getpid(), signal.SIGTERM)  # stop after the third run
        return {
            "run_time": "t",
            "window": {"minutes": 1},
            "source": {"queries": 0},
            "duration_s": 0,
            "success": True,
            "error": None,
            "suites": {},
        }

    monkeypatch.setattr(run, "run_once", fake_run_once)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert cli.main(["--every", "0.01"]) == 0
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert len(calls) == 3


def test_trino_unreachable_is_tried_again_soon_not_a_period_later(monkeypatch):
    """`make up` starts the schedule before Trino answers: the first Data Docs come
    within a minute, not after a whole period."""
    calls = []

    def fake_run_once(s):
        calls.append(1)
        if len(calls) == 1:
            raise TrinoUnavailable("Trino at nowhere:1: starting")
        os.kill(os.getpid(), signal.SIGTERM)
        raise TrinoUnavailable("Trino at nowhere:1: starting")

    monkeypatch.setattr(run, "run_once", fake_run_once)
    monkeypatch.setattr(cli, "RETRY_UNAVAILABLE_S", 0.01)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert cli.main(["--every", "3600"]) == 0  # would hang an hour without the retry
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert len(calls) == 2


def test_the_package_imports_nothing_of_the_platform_but_the_trino_login():
    # Its own virtualenv and image: of the platform, it has iot_common.trino_client
    # only (which imports nothing but the trino client).
    root = Path(run.__file__).parent
    for path in root.glob("*.py"):
        text = path.read_text().replace("from iot_common import trino_client", "")
        for package in ("stream_jobs", "mqtt_bridge", "iot_common", "iot_data_generator"):
            assert f"from {package}" not in text and f"import {package}" not in text, path
    client = (root.parent / "iot_common" / "trino_client.py").read_text()
    imported = {line.split()[1] for line in client.splitlines() if line.startswith("import ")}
    assert imported <= {"requests", "trino", "trino.auth"}
    assert "\nfrom " not in client.replace("from __future__", "").replace("from typing", "")


def test_trino_not_listening_is_unavailable_not_a_table_error(tmp_path):
    import socket

    from expectations.source import TrinoSource

    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = QualitySettings(_env_file=None, trino_host="127.0.0.1", trino_port=port)
    with pytest.raises(TrinoUnavailable, match=f"127.0.0.1:{port}"):
        TrinoSource(s).frame("SELECT 1")
