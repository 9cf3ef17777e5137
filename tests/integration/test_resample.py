"""Step 3a as an analyst sees it: exact 1-minute figures in hive.curated.readings_1m."""

import subprocess
import sys
import time
from datetime import datetime, timedelta

import orjson
import pytest
from confluent_kafka import Consumer

from iot_common.contract import parse_reading
from iot_data_generator.readings import reading_payload
from local.services import ROOT, wait_for
from tests.integration.harness import Pipeline, mqtt_publish, published, wait_exit

pytestmark = pytest.mark.integration

FAST = {
    "WINDOW_LATENESS_SECONDS": "2",
    "WINDOW_IDLE_SECONDS": "2",
    "WINDOW_COMMIT_SECONDS": "1",
    "ROTATE_SECONDS": "1",
}
M = datetime(2026, 2, 1, 10, 0)  # minute 0 of the series


def at(minute, second):
    return M + timedelta(minutes=minute, seconds=second)


MINUTES = """SELECT sensor_id, date_diff('minute', TIMESTAMP '2026-02-01 10:00:00', window_start),
       count, mean, min, max, out_of_range_count, revision
FROM hive.curated.readings_1m WHERE window_date = DATE '2026-02-01' ORDER BY 1, 2"""

FROM_RAW = """SELECT sensor_id, date_diff('minute', TIMESTAMP '2026-02-01 10:00:00',
                                        date_trunc('minute', ts)),
       count(*) FILTER (WHERE value BETWEEN 0 AND 45),
       avg(value) FILTER (WHERE value BETWEEN 0 AND 45),
       min(value) FILTER (WHERE value BETWEEN 0 AND 45),
       max(value) FILTER (WHERE value BETWEEN 0 AND 45),
       count(*) FILTER (WHERE NOT value BETWEEN 0 AND 45)
FROM hive.raw.readings WHERE event_date = DATE '2026-02-01' GROUP BY 1, 2 ORDER BY 1, 2"""

# Late for data quality: received more than 10 s after dt (every reading of this
# February series, published today); the 1-minute table counts what raw.readings shows.
LATE = """SELECT sensor_id, date_diff('minute', TIMESTAMP '2026-02-01 10:00:00', window_start),
       late_count
FROM hive.curated.readings_1m WHERE window_date = DATE '2026-02-01' ORDER BY 1, 2"""
LATE_FROM_RAW = """SELECT sensor_id, date_diff('minute', TIMESTAMP '2026-02-01 10:00:00',
                                        date_trunc('minute', ts)),
       count(*) FILTER (WHERE received_at > ts + INTERVAL '10' SECOND)
FROM hive.raw.readings WHERE event_date = DATE '2026-02-01' GROUP BY 1, 2 ORDER BY 1, 2"""


def test_known_series_with_out_of_order_and_late_readings(brokers, sql, tmp_path):
    pipe = Pipeline(brokers, tmp_path, sql_services=sql, env_extra=FAST).start()
    try:
        pipe.wait_sql_ready()
        s1 = [
            (at(0, 10), 10),
            (at(0, 20), 20),
            (at(0, 30), 99),  # 99: out of range 0..45
            (at(0, 50), 30),
            (at(1, 1), 5),
            (at(0, 59), 40),  # out of order, within the 2 s lateness: on time
            (at(1, 30), 7),
            (at(2, 5), 1),
        ]  # closes minute 0 (ends 10:01:00 + 2 s) and minute 1
        mqtt_publish(
            pipe.stack.mqtt_port,
            pipe.mqtt_topic,
            [reading_payload("Sensor 1", dt, v) for dt, v in s1],
        )
        s2 = [(at(0, 1), 44), (at(3, 0), 0)]
        mqtt_publish(
            pipe.stack.mqtt_port,
            pipe.mqtt_topic,
            [reading_payload("Sensor 2", dt, v) for dt, v in s2],
        )
        wait_for(lambda: len(pipe.sql(MINUTES)) == 5, 60, "5 windows")
        # a late reading for minute 0 of Sensor 1: the window is emitted again, corrected
        mqtt_publish(
            pipe.stack.mqtt_port, pipe.mqtt_topic, [reading_payload("Sensor 1", at(0, 45), 0)]
        )
        wait_for(
            lambda: pipe.sql(MINUTES)[0][:2] == ["Sensor 1", 0] and pipe.sql(MINUTES)[0][7] == 2,
            60,
            "the corrected window",
        )
        assert pipe.sql(MINUTES) == [
            ["Sensor 1", 0, 5, 20.0, 0.0, 40.0, 1, 2],  # 10, 20, 30, 40 + late 0; 99 apart
            ["Sensor 1", 1, 2, 6.0, 5.0, 7.0, 0, 1],
            ["Sensor 1", 2, 1, 1.0, 1.0, 1.0, 0, 1],
            ["Sensor 2", 0, 1, 44.0, 44.0, 44.0, 0, 1],
            ["Sensor 2", 3, 1, 0.0, 0.0, 0.0, 0, 1],
        ]
        # The archive commits on its own schedule: the late reading reaches raw.readings
        # within a commit interval of the corrected window.
        wait_for(
            lambda: [r[:7] for r in pipe.sql(MINUTES)] == pipe.sql(FROM_RAW),
            30,
            "raw.readings' figures equal to the 1-minute table's",
        )
        assert pipe.sql(LATE) == pipe.sql(LATE_FROM_RAW)
        assert [r[2] for r in pipe.sql(LATE)] == [6, 2, 1, 1, 1]  # all of them, 99 too

        # The same figures went to Kafka, revision by revision.
        consumer = Consumer(
            {
                "bootstrap.servers": pipe.stack.bootstrap,
                "group.id": pipe.uid,
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe([pipe.env["KAFKA_TOPIC_1M"]])
        messages, deadline = [], time.monotonic() + 30
        while len(messages) < 6 and time.monotonic() < deadline:
            messages += [
                orjson.loads(m.value()) for m in consumer.consume(100, 1.0) if m.error() is None
            ]
        consumer.close()
        minute0 = sorted(
            (m["revision"], m["count"], m["mean"])
            for m in messages
            if m["sensor_id"] == "Sensor 1" and m["window_start"] == "2026-02-01T10:00:00.000000"
        )
        assert minute0 == [(1, 4, 25.0), (2, 5, 20.0)]

        # docs/consumers.md's example program keeps the newest revision of each window.
        run = subprocess.run(
            [
                sys.executable,
                str(ROOT / "docs/examples/consume_1m.py"),
                "--bootstrap",
                pipe.stack.bootstrap,
                "--topic",
                pipe.env["KAFKA_TOPIC_1M"],
                "--group",
                f"example-{pipe.uid}",
                "--from-beginning",
                "--idle",
                "5",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert "breaks the contract" not in run.stderr
        newest: dict[tuple[str, str], dict] = {}
        for line in run.stdout.splitlines():
            doc = orjson.loads(line)
            newest[(doc["sensor_id"], doc["window_start"])] = doc
        got = sorted((k[0], v["revision"], v["count"]) for k, v in newest.items())
        want = sorted((r[0], r[7], r[2]) for r in pipe.sql(MINUTES))
        assert got == want
    finally:
        pipe.stop()


def test_job_killed_mid_minute_keeps_exact_figures(brokers, sql, tmp_path):
    pipe = Pipeline(brokers, tmp_path, sql_services=sql, env_extra=FAST).start()
    try:
        pipe.wait_sql_ready()
        gen = pipe.generator(seconds=20, interval_ms=50)
        time.sleep(7)
        pipe.jobs.kill9()  # mid-minute, with open windows and emissions in flight
        pipe.jobs.start()
        assert wait_exit(gen, 60) == 0
        expected: dict[tuple[str, datetime], list[float]] = {}
        for payload in published(gen):
            r = parse_reading(payload)
            minute = datetime(1970, 1, 1) + timedelta(microseconds=r.ts_us - r.ts_us % 60_000_000)
            expected.setdefault((r.sensor_id, minute), []).append(r.value)
        last_minute = max(m for _, m in expected)
        # the last minute closes once the wall clock passes its end plus the lateness
        wait_for(lambda: datetime.utcnow() > last_minute + timedelta(seconds=63), 70, "minute")

        query = (
            "SELECT sensor_id, window_start, count, mean, min, max, out_of_range_count "
            "FROM hive.curated.readings_1m"
        )
        want = sorted(
            [s, m, len(v), sum(v) / len(v), min(v), max(v), 0] for (s, m), v in expected.items()
        )
        wait_for(lambda: len(pipe.sql(query)) == len(want), 60, "every window")
        assert sorted(pipe.sql(query)) == want
    finally:
        pipe.stop()
