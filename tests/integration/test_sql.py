"""Step 2 as a BI analyst sees it: everything published is queryable in Trino, in
the iceberg catalog and under the former hive.* names; every example query of
docs/queries.sql runs and answers, time travel included."""

import math
import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from iot_common.contract import parse_reading
from iot_data_generator.readings import reading_payload
from local import trino_auth
from local.services import ROOT, wait_for
from tests.integration.harness import mqtt_publish, published, wait_exit

pytestmark = pytest.mark.integration


def wait_rows(pipe, n, table="iceberg.raw.readings", timeout=60):
    wait_for(
        lambda: pipe.sql(f"SELECT count(*) FROM {table}")[0][0] >= n,
        timeout,
        f"{n} rows in {table}",
    )


def test_published_readings_are_queryable_with_types_and_values(sql_pipeline):
    pipe = sql_pipeline
    gen = pipe.generator(seconds=3, interval_ms=50)
    assert wait_exit(gen, 60) == 0
    sent = [parse_reading(p) for p in published(gen)]
    wait_rows(pipe, len(sent))
    rows = pipe.sql("SELECT sensor_id, ts, value FROM iceberg.raw.readings")
    got = sorted((sid, ts, value) for sid, ts, value in rows)
    epoch = datetime(1970, 1, 1)
    want = sorted((r.sensor_id, epoch + timedelta(microseconds=r.ts_us), r.value) for r in sent)
    assert got == want  # exactly once, microseconds kept
    assert any(ts.microsecond % 1000 for _, ts, _ in got)  # more than milliseconds

    columns = dict(
        pipe.sql(
            "SELECT column_name, data_type FROM iceberg.information_schema.columns "
            f"WHERE table_schema = 'raw_{pipe.uid}' AND table_name = 'readings'"
        )
    )
    assert columns["ts"] == "timestamp(6)" and columns["received_at"] == "timestamp(6)"
    assert columns["value"] == "double" and columns["event_date"] == "date"
    comments = {r[0]: r[3] for r in pipe.sql(f"SHOW COLUMNS FROM iceberg.raw_{pipe.uid}.readings")}
    assert "UTC" in comments["ts"]

    current = pipe.sql(
        "SELECT sensor_id, unit, description FROM iceberg.raw.sensors_current ORDER BY sensor_id"
    )
    assert [c[0] for c in current] == [f"Sensor {i}" for i in range(1, 6)]
    assert current[0][1:] == ["C", "Main Entrance"]
    enriched = pipe.sql(
        "SELECT count(*), count_if(unit = 'C'), count_if(in_range) "
        "FROM iceberg.curated.readings_enriched"
    )
    assert enriched == [[len(sent), len(sent), len(sent)]]

    # The former names: the hive catalog redirects its tables to the iceberg catalog.
    assert sorted(pipe.sql("SELECT sensor_id, ts, value FROM hive.raw.readings")) == sorted(rows)
    assert pipe.sql("SELECT count(*) FROM hive.curated.readings_enriched") == [[len(sent)]]
    files = 'SELECT count(*) FROM {}.raw."readings$files"'
    assert pipe.sql(files.format("hive")) == pipe.sql(files.format("iceberg"))
    # A second ago: Trino refuses a pointer that is not in the past.
    now = (
        "SELECT count(*) FROM hive.raw.readings "
        "FOR TIMESTAMP AS OF current_timestamp - INTERVAL '1' SECOND"
    )
    wait_for(lambda: pipe.sql(now) == [[len(sent)]], 15, "every reading as of a second ago")


def named_queries():
    text = (ROOT / "docs" / "queries.sql").read_text()
    return dict(re.findall(r"-- name: (\w+)\n(.*?);", text, flags=re.S))


TIME_TRAVEL, A_MINUTE = "readings_a_minute_ago", "INTERVAL '1' MINUTE"


def between_the_last_two_commits(pipe, query):
    """`query` going back to a second or two before the readings' last commit instead
    of a minute (the test's table is younger than a minute); the commit before it
    came more than 4 s earlier."""
    ((last,),) = pipe.sql('SELECT max(committed_at) FROM iceberg.raw."readings$snapshots"')
    seconds = math.ceil((datetime.now(UTC) - last).total_seconds()) + 2
    assert A_MINUTE in query
    return query.replace(A_MINUTE, f"INTERVAL '{seconds}' SECOND")


def test_every_example_query_runs_and_answers(sql_pipeline):
    pipe = sql_pipeline
    now = datetime.utcnow()
    first = [
        reading_payload(f"Sensor {i}", now - timedelta(seconds=10 - j), 10 * i + j)
        for j in range(3)
        for i in (1, 2)
    ]
    mqtt_publish(pipe.stack.mqtt_port, pipe.mqtt_topic, [*first, b"not json"])
    wait_rows(pipe, len(first))
    wait_rows(pipe, 1, "iceberg.raw.rejected")
    time.sleep(4.5)  # the last reading in a commit of its own, seconds after the others
    last = reading_payload("Sensor 1", now, 99)  # out of range 0..45
    mqtt_publish(pipe.stack.mqtt_port, pipe.mqtt_topic, [last])
    wait_rows(pipe, len(first) + 1)

    queries = named_queries()
    assert set(queries) >= {
        "latest_value_per_sensor",
        "sensor_history",
        "daily_stats",
        "sensor_minutes",
        TIME_TRAVEL,
        "recent_commits",
        "files_per_day",
    }
    # As an analyst runs them: the BI login, in its read-only catalog.
    bi = trino_auth.BI_USER
    results = {TIME_TRAVEL: pipe.sql(between_the_last_two_commits(pipe, queries[TIME_TRAVEL]), bi)}
    results |= {name: pipe.sql(sql, bi) for name, sql in queries.items() if name != TIME_TRAVEL}
    latest = {r[0]: r[2] for r in results["latest_value_per_sensor"]}
    assert latest == {"Sensor 1": 99.0, "Sensor 2": 22.0}
    assert [r[1] for r in results["sensor_history"]] == [10.0, 11.0, 12.0, 99.0]
    daily = {r[0]: r[2:] for r in results["daily_stats"]}
    assert daily["Sensor 2"] == [20.0, 21.0, 22.0, 3]
    assert [r[2] for r in results["readings_out_of_range"]] == [99.0]
    assert [r[1:] for r in results["rejected_by_reason"]] == [["not_json", 1]]
    assert results[TIME_TRAVEL] == [[len(first) + 1, len(first)]]  # now, and before the last
    commits = results["recent_commits"]
    assert {c[2] for c in commits} == {"append"}
    assert sum(c[3] for c in commits) == len(first) + 1 == commits[0][6]
    assert sum(c[4] for c in commits) == sum(f[1] for f in results["files_per_day"])
    assert sum(f[2] for f in results["files_per_day"]) == len(first) + 1

    # Time travel by snapshot id: the table as of each commit holds that commit's total.
    for _, snapshot_id, _, _, _, _, total in commits:
        assert pipe.sql(
            f"SELECT count(*) FROM iceberg.raw.readings FOR VERSION AS OF {snapshot_id}"
        ) == [[total]]


def test_metastore_keeps_the_tables_across_a_restart(sql_pipeline, sql):
    pipe = sql_pipeline
    mqtt_publish(
        pipe.stack.mqtt_port,
        pipe.mqtt_topic,
        [reading_payload("Sensor 3", datetime(2026, 1, 2, 3, 4, 5, 6), 7)],
    )
    wait_rows(pipe, 1)
    sql.restart()
    assert pipe.sql("SELECT sensor_id, ts, value, event_date FROM iceberg.raw.readings") == [
        ["Sensor 3", datetime(2026, 1, 2, 3, 4, 5, 6), 7.0, datetime(2026, 1, 2).date()]
    ]
    assert len(pipe.sql("SELECT * FROM iceberg.raw.sensors_current")) == 5
