"""Step 1 as a user sees it: what the generator published is in the archive, once."""

from collections import Counter

import orjson
import pytest

from iot_common import contracts
from iot_common.kafka_io import read_all
from local.services import ROOT
from tests.integration.harness import Pipeline, published, wait_exit

pytestmark = pytest.mark.integration


def valid(subject, doc):
    from jsonschema import Draft202012Validator

    return Draft202012Validator(contracts.schema(subject)).is_valid(doc)


def test_every_published_reading_is_archived_exactly_once(pipeline):
    gen = pipeline.generator(seconds=5, interval_ms=20)
    assert wait_exit(gen, 60) == 0
    sent = published(gen)
    assert len(sent) >= 5 * 5 * 40 * 0.9  # 5 sensors, 50 readings/s each, ~5 s
    pipeline.wait_archived("readings", len(sent))
    assert Counter(pipeline.readings_payloads()) == Counter(sent)

    readings = pipeline.table("readings")
    row = readings.slice(0, 1).to_pylist()[0]
    assert row["mqtt_topic"] == pipeline.mqtt_topic
    assert row["ts"].microsecond or row["payload"].count(".") == 0  # microseconds kept
    sensors = pipeline.table("sensors").to_pylist()
    assert sorted(s["sensor_id"] for s in sensors) == [f"Sensor {i}" for i in range(1, 6)]
    assert {s["description"] for s in sensors} >= {"Main Entrance", "Assemlby Floor"}

    # The topics' data contracts accept what is really on them.
    env = pipeline.env
    readings_topic = read_all(pipeline.stack.bootstrap, env["KAFKA_TOPIC_READINGS"], group="t")
    assert len(readings_topic) == len(sent)
    for rec in readings_topic:
        assert valid("iot.readings", orjson.loads(rec.value)), rec.value
        headers = {k: (v or b"").decode() for k, v in rec.headers.items()}
        assert valid("iot.readings.headers", headers), headers
    for rec in read_all(pipeline.stack.bootstrap, env["KAFKA_TOPIC_SENSORS"], group="t"):
        assert valid("iot.sensors", orjson.loads(rec.value)), rec.value


def test_sensor_list_changes_are_archived_as_new_versions(brokers, sql, tmp_path):
    path = tmp_path / "sensors.json"
    original = orjson.loads((ROOT / "iot_data_generator" / "sensors.json").read_bytes())
    path.write_bytes(orjson.dumps(original))
    env = {"SENSORS_FILE": str(path), "SENSORS_POLL_SECONDS": "0.5"}
    pipe = Pipeline(brokers, tmp_path, env_extra=env, sql_services=sql).start()
    try:
        pipe.wait_archived("sensors", 5)
        changed = {**original, "Sensor 6": {**original["Sensor 1"], "description": "Roof"}}
        changed["Sensor 2"] = {**original["Sensor 2"], "description": "Canteen"}
        del changed["Sensor 3"]
        path.write_bytes(orjson.dumps(changed))
        pipe.wait_archived("sensors", 8)
        rows = pipe.table("sensors").to_pylist()
    finally:
        pipe.stop()
    versions = sorted((r["sensor_id"], r["description"] or "", r["deleted"]) for r in rows)
    assert versions == sorted(
        [
            *[(f"Sensor {i}", original[f"Sensor {i}"]["description"], False) for i in range(1, 6)],
            ("Sensor 2", "Canteen", False),
            ("Sensor 3", "", True),
            ("Sensor 6", "Roof", False),
        ]
    )


def test_a_silent_sensor_and_skewed_clocks_as_the_archive_sees_them(pipeline):
    """The generator's deterministic faults: a sensor that falls silent publishes
    nothing, a clock 10 minutes ahead makes dead letters (dt_in_future), a clock
    30 s behind makes readings 30 s older than their receive time."""
    gen = pipeline.generator(
        seconds=3,
        interval_ms=100,
        fault_silent_sensors="Sensor 5",
        fault_clock_skew_seconds='{"Sensor 4": 600, "Sensor 3": -30}',
    )
    assert wait_exit(gen, 60) == 0
    sent = [orjson.loads(p) for p in published(gen)]
    by_sensor = Counter(m["id"] for m in sent)
    assert "Sensor 5" not in by_sensor and by_sensor["Sensor 4"] >= 20
    ahead = by_sensor["Sensor 4"]
    pipeline.wait_archived("readings", len(sent) - ahead)
    pipeline.wait_archived("rejected", ahead)
    readings = pipeline.table("readings").to_pylist()
    assert Counter(r["sensor_id"] for r in readings) == {
        k: v for k, v in by_sensor.items() if k != "Sensor 4"
    }
    rejected = pipeline.table("rejected").to_pylist()
    assert Counter(r["reason_code"] for r in rejected) == {"dt_in_future": ahead}
    behind = [
        (r["received_at"] - r["ts"]).total_seconds()
        for r in readings
        if r["sensor_id"] == "Sensor 3"
    ]
    assert behind and all(29 < s < 35 for s in behind)
