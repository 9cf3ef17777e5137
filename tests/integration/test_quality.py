"""Issue 11 as an operator and a BI analyst see it: each kind of fault a sensor
can have lands in curated.sensor_quality_1m with its exact count, in the
sensor's status (the view and the Kafka topic of status changes), and the
quality topic's messages keep their contract."""

import time
from datetime import UTC, datetime, timedelta

import jsonschema
import orjson
import pytest
from confluent_kafka import Consumer

from iot_common import contracts
from iot_data_generator.readings import reading_payload
from local.services import wait_for
from stream_jobs.quality import MinuteQuality
from tests.integration.harness import Pipeline, mqtt_publish

pytestmark = pytest.mark.integration

FAST = {
    "WINDOW_LATENESS_SECONDS": "2",
    "WINDOW_IDLE_SECONDS": "2",
    "WINDOW_COMMIT_SECONDS": "1",
    "ROTATE_SECONDS": "1",
}
SENSORS = {
    # Q1 declares its interval (an optional key of sensors.json): 30 readings a minute.
    "Q1": {
        "lat": 1.0,
        "lng": 2.0,
        "unit": "C",
        "type": "t",
        "range": [0, 100],
        "description": "faulty",
        "interval_ms": 2000,
    },
    "Q2": {
        "lat": 1.0,
        "lng": 2.0,
        "unit": "C",
        "type": "t",
        "range": [0, 100],
        "description": "never sends",
    },
}


def in_the_middle() -> None:
    """Wait until second 20 to 35 of a minute."""
    now = datetime.now(UTC).replace(tzinfo=None)
    if not 20 <= now.second < 35:
        time.sleep((80 - now.second) % 60)


def consume_all(bootstrap: str, topic: str, group: str, idle_s: float = 5) -> list[dict]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    out, last = [], time.monotonic()
    while time.monotonic() - last < idle_s:
        for m in consumer.consume(100, 1.0):
            if m.error() is None:
                out.append(orjson.loads(m.value()))
                last = time.monotonic()
    consumer.close()
    return out


@pytest.mark.timeout(600)  # two minutes of publishing, then the silent minute closes
def test_each_fault_is_counted_exactly_and_shows_in_the_status(brokers, sql, tmp_path):
    sensors_file = tmp_path / "sensors.json"
    sensors_file.write_bytes(orjson.dumps(SENSORS))
    pipe = Pipeline(
        brokers, tmp_path, sql_services=sql, env_extra={**FAST, "SENSORS_FILE": str(sensors_file)}
    ).start()
    try:
        pipe.wait_sql_ready()
        # Publish between seconds 20 and 35 of a minute: on-time readings (dt a
        # second before now) and late ones (dt at second 1) fall in the same minute.
        # First a clean minute: a sensor's first minute is partial by nature and
        # does not count toward its status; the faulty one after it does.
        in_the_middle()
        start = datetime.now(UTC).replace(tzinfo=None)
        clean = [start - timedelta(seconds=1, milliseconds=10 * i) for i in range(30)]
        mqtt_publish(
            pipe.stack.mqtt_port,
            pipe.mqtt_topic,
            [reading_payload("Q1", dt, 50) for dt in clean],
        )
        time.sleep(40)
        in_the_middle()
        now = datetime.now(UTC).replace(tzinfo=None)
        minute = now.replace(second=0, microsecond=0)
        on_time = [now - timedelta(seconds=1, milliseconds=10 * i) for i in range(23)]
        late = [minute + timedelta(seconds=1, milliseconds=10 * i) for i in range(4)]
        payloads = [reading_payload("Q1", dt, 50) for dt in on_time[:20]]
        payloads += [reading_payload("Q1", dt, 500) for dt in on_time[20:]]  # out of range
        payloads += [reading_payload("Q1", dt, 60) for dt in late]  # late
        payloads += [reading_payload("Q1", on_time[0], 51)]  # duplicate (sensor, dt)
        payloads += [reading_payload("Q1", late[0], 61)]  # duplicate of a late one
        # malformed: attributed by its id and dt
        payloads += [orjson.dumps({"id": "Q1", "dt": now.isoformat(), "value": "hot"})]
        # clock skew (dt 10 min ahead: dt_in_future), attributed to its receive minute
        payloads += [reading_payload("Q1", now + timedelta(minutes=10), 50)]
        payloads += [b"\xff not even json"]  # names no sensor: not attributed
        mqtt_publish(pipe.stack.mqtt_port, pipe.mqtt_topic, payloads)
        published_at = datetime.now(UTC).replace(tzinfo=None)
        assert published_at < minute + timedelta(seconds=58), "published across the minute"

        query = f"""SELECT expected, received, valid, out_of_range, duplicates, late, rejected,
                           score
                    FROM iceberg.curated.sensor_quality_1m
                    WHERE sensor_id = 'Q1' AND window_start = TIMESTAMP '{minute}'
                      AND window_date = DATE '{minute.date()}'"""
        want = MinuteQuality(
            expected=30, received=29, duplicates=2, out_of_range=3, late=4, rejected=2
        )
        wanted = [30.0, 29, 24, 3, 2, 4, 2]

        def exact() -> bool:
            rows = pipe.sql(query)
            return bool(rows) and rows[0][:7] == wanted

        wait_for(exact, 150, "Q1's minute with every fault counted")
        (row,) = pipe.sql(query)
        assert row[7] == pytest.approx(want.score)
        assert want.score == pytest.approx(0.9 * (24 / 31) * (1 - 0.5 * 4 / 27))

        # The sensor that never sent has minutes of nothing once they closed.
        # Q1 then falls silent: the minute after its faults closes (CLOSE_AFTER_S past
        # its end, by the wall clock) with nothing received. Q2 never sent: no rows.
        after = minute + timedelta(minutes=1)
        silent = f"""SELECT received, score FROM iceberg.curated.sensor_quality_1m
                     WHERE sensor_id = 'Q1' AND window_start = TIMESTAMP '{after}'"""
        status_now = "SELECT sensor_id, status FROM iceberg.curated.sensor_status"
        status = dict((r[0], r[1]) for r in pipe.sql(status_now))
        assert status == {"Q1": "degraded", "Q2": "silent"}
        wait_for(lambda: bool(pipe.sql(silent)), 120, "Q1's silent minute")
        assert pipe.sql(silent) == [[0, 0.0]]
        assert pipe.sql("SELECT count(*) FROM iceberg.curated.sensor_quality_1m "
                        "WHERE sensor_id = 'Q2'") == [[0]]  # fmt: skip

        # The same, on Kafka, in the shape the contracts promise.
        quality = consume_all(pipe.stack.bootstrap, pipe.env["KAFKA_TOPIC_QUALITY_1M"], pipe.uid)
        for doc in quality:
            jsonschema.validate(doc, contracts.schema("iot.quality.1m"))
        newest = max(
            (
                d
                for d in quality
                if d["sensor_id"] == "Q1" and d["window_start"].startswith(minute.isoformat())
            ),
            key=lambda d: d["revision"],
        )
        assert [newest[k] for k in ("received", "valid", "duplicates", "late", "rejected")] == [
            29,
            24,
            2,
            4,
            2,
        ]
        changes = consume_all(
            pipe.stack.bootstrap, pipe.env["KAFKA_TOPIC_QUALITY_STATUS"], pipe.uid + "s"
        )
        for doc in changes:
            jsonschema.validate(doc, contracts.schema("iot.quality.status"))
        latest = {d["sensor_id"]: d["status"] for d in changes}
        assert latest["Q2"] == "silent"
        # Q1 turned degraded (and may be silent by now: its last reading is 2 min old)
        assert "degraded" in [d["status"] for d in changes if d["sensor_id"] == "Q1"]
        assert pipe.health()["sensor_quality_1m"]["unattributed"] == 1
    finally:
        pipe.stop()
