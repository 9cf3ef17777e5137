"""Great Expectations end to end: readings with planted faults go through the real
pipeline into the Iceberg tables, and `python -m expectations` (in its own
virtualenv, .venv-quality) reads them back through Trino and reports the faults
in latest.json and in the Data Docs.

Planted: an out-of-range value (published over MQTT: the bridge accepts it), a
repeated reading over MQTT (the bridge dead-letters it as `duplicate`), and one
reading written twice straight to the readings topic, around the bridge, as
another producer could (the archive keeps both: (sensor_id, ts) is no longer unique).
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer
from trino.exceptions import TrinoUserError

from iot_data_generator.readings import reading_payload
from local import trino_auth
from local.services import ROOT, wait_for
from tests.integration.harness import mqtt_publish

pytestmark = pytest.mark.integration

QUALITY_PYTHON = ROOT / ".venv-quality" / "bin" / "python"
SENSORS = [f"Sensor {i}" for i in range(1, 6)]  # iot_data_generator/sensors.json: [0, 45]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def produce_twice(bootstrap: str, topic: str, payload: bytes, received: datetime) -> None:
    """One reading written twice to the readings topic, with the bridge's headers."""
    producer = Producer({"bootstrap.servers": bootstrap})
    headers = [
        ("mqtt_topic", b"elsewhere"),
        ("received_at", received.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()),
    ]
    for _ in range(2):
        producer.produce(topic, key=b"Sensor 1", value=payload, headers=headers)
    assert producer.flush(30) == 0


@pytest.mark.skipif(
    not QUALITY_PYTHON.exists(),
    reason="no .venv-quality (the quality virtualenv, from expectations/requirements.txt; "
    "`make quality` creates it)",
)
def test_expectations_report_the_planted_faults_read_through_trino(sql_pipeline, tmp_path):
    p = sql_pipeline
    now = utcnow()
    good = [
        reading_payload(sensor, now - timedelta(milliseconds=100 * k), 10 + k)
        for k in range(10)
        for sensor in SENSORS
    ]
    out_of_range = reading_payload("Sensor 2", now - timedelta(seconds=2), 99)
    repeated = reading_payload("Sensor 3", now - timedelta(seconds=2), 20)
    mqtt_publish(p.stack.mqtt_port, p.mqtt_topic, [*good, out_of_range, repeated, repeated])
    direct = reading_payload("Sensor 1", now - timedelta(seconds=3), 21)
    produce_twice(p.stack.bootstrap, p.env["KAFKA_TOPIC_READINGS"], direct, utcnow())

    readings = len(good) + 2 + 2  # the out-of-range one, one of the repeats, the direct pair

    def archived() -> bool:
        try:
            counts = p.sql(
                "SELECT (SELECT count(*) FROM iceberg.raw.readings),"
                " (SELECT count(*) FROM iceberg.raw.rejected),"
                " (SELECT count(*) FROM iceberg.raw.sensors_current)"
            )
        except TrinoUserError:  # a table not created yet
            return False
        return counts == [[readings, 1, len(SENSORS)]]

    wait_for(archived, 120, "the readings, the dead letter and the sensors in Trino")

    docs = tmp_path / "quality" / "data_docs"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        **p.sql_services.bi_env(trino_auth.QUALITY_USER),
        "RAW_SCHEMA": p.env["RAW_SCHEMA"],
        "CURATED_SCHEMA": p.env["CURATED_SCHEMA"],
        "QUALITY_DOCS_DIR": str(docs),
        "QUALITY_WINDOW_MINUTES": "60",
    }
    # Not from the checkout: a developer's .env there must not point it elsewhere.
    done = subprocess.run(
        [str(QUALITY_PYTHON), "-m", "expectations"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr  # it ran (and found faults)
    assert "FAILED" in done.stdout

    latest = json.loads((tmp_path / "quality" / "latest.json").read_text())
    assert latest["success"] is False and latest["error"] is None
    assert latest["source"]["raw_schema"] == p.env["RAW_SCHEMA"]
    suite = latest["suites"]["raw.readings"]
    assert suite["rows"] == readings
    failed = {f["check"]: f for f in suite["failed"]}
    assert {"value_in_range", "unique_sensor_ts"} <= set(failed), suite["failed"]
    (row,) = failed["value_in_range"]["observed"]["partial_unexpected_index_list"]
    assert (row["sensor_id"], row["value"]) == ("Sensor 2", 99.0)
    pair = failed["unique_sensor_ts"]["observed"]["partial_unexpected_index_list"]
    assert [r["sensor_id"] for r in pair] == ["Sensor 1", "Sensor 1"]
    assert "every_sensor_reporting" not in failed
    # One dead letter against 54 readings: above the 1% allowed.
    rejected = latest["suites"]["raw.rejected"]
    assert rejected["rows"] == 1
    assert [f["check"] for f in rejected["failed"]] == ["dead_letter_rate"]

    index = (docs / "index.html").read_text()
    assert f'href="{suite["docs"]}"' in index
    page = (docs / suite["docs"]).read_text()
    assert "value_in_range: value is within [0, 45]" in page
    assert "unique_sensor_ts: (sensor_id, ts) is unique" in page
