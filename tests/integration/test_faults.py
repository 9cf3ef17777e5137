"""Crashes, outages and bad input: nothing accepted is lost or doubled."""

import time
from collections import Counter

import pytest

from iot_data_generator.readings import reading_payload
from tests.integration.harness import Pipeline, mqtt_publish, published, start_brokers, wait_exit

pytestmark = pytest.mark.integration

LOAD = {"seconds": 12, "interval_ms": 20}  # 50 sensors x 50/s = 2,500 readings/s


def assert_exactly_once(pipeline, gen):
    assert wait_exit(gen, 90) == 0
    sent = published(gen)
    assert len(sent) > 20_000
    pipeline.wait_archived("readings", len(sent), timeout=180)
    archived = Counter(pipeline.readings_payloads())
    expected = Counter(sent)
    missing = expected - archived
    doubled = archived - expected
    assert not missing and not doubled, (len(missing), len(doubled))


def test_bridge_killed_under_load_loses_and_doubles_nothing(pipeline):
    gen = pipeline.generator(sensors_file=str(pipeline.sensors_file(50)), **LOAD)
    time.sleep(4)
    pipeline.bridge.kill9()
    time.sleep(2)
    pipeline.bridge.start()
    assert_exactly_once(pipeline, gen)


def test_stream_job_killed_under_load_loses_and_doubles_nothing(pipeline):
    gen = pipeline.generator(sensors_file=str(pipeline.sensors_file(50)), **LOAD)
    time.sleep(4)
    pipeline.jobs.kill9()
    time.sleep(1)
    pipeline.jobs.start()
    time.sleep(3)
    pipeline.jobs.kill9()  # and once more, mid-recovery
    pipeline.jobs.start()
    assert_exactly_once(pipeline, gen)


def test_kafka_outage_loses_and_doubles_nothing(sql, tmp_path):
    stack, mosquitto, kafka = start_brokers(tmp_path / "brokers")
    pipeline = Pipeline(stack, tmp_path / "pipeline", sql_services=sql)
    pipeline.work.mkdir()
    pipeline.start()
    try:
        gen = pipeline.generator(sensors_file=str(pipeline.sensors_file(50)), **LOAD)
        time.sleep(3)
        kafka.kill9()
        time.sleep(8)
        kafka.start()
        assert_exactly_once(pipeline, gen)
        assert pipeline.bridge.alive and pipeline.jobs.alive
    finally:
        pipeline.stop()
        kafka.stop()
        mosquitto.stop()


def test_malformed_messages_go_to_the_dead_letters_with_reasons(pipeline):
    def good(i):
        return reading_payload("Sensor 1", __import__("datetime").datetime(2026, 1, 1, 0, 0, i), i)

    bad = {
        b"not json at all": "not_json",
        b"\xff\xfe\x00": "not_json",
        b"[1, 2, 3]": "not_object",
        b'{"dt": "2026-01-01T00:00:00", "value": 1}': "missing_id",
        b'{"id": "Sensor 1", "value": 1}': "missing_dt",
        b'{"id": "Sensor 1", "dt": "yesterday", "value": 1}': "bad_dt",
        b'{"id": "Sensor 1", "dt": "2026-01-01T00:00:00"}': "missing_value",
        b'{"id": "Sensor 1", "dt": "2026-01-01T00:00:00", "value": "hot"}': "bad_value",
        b'{"id": "Sensor 1", "dt": "2026-01-01T00:00:00", "value": NaN}': "not_json",
        b'{"id": "Sensor 1", "dt": "2026-01-01T00:00:00", "value": 1, "pad": "'
        + b"x" * 5000
        + b'"}': "oversized",
    }
    corpus = []
    for i, payload in enumerate(bad):
        corpus += [good(i), payload]
    corpus.append(good(0))  # the same reading again: a duplicate, kept as a dead letter
    # Sensor 1's own topic: its readings pass; another sensor's reading there does not.
    device = f"{pipeline.mqtt_topic}/Sensor 1"
    impostor = reading_payload("Sensor 2", __import__("datetime").datetime(2026, 1, 1), 5)
    bad[impostor] = "topic_mismatch"
    mqtt_publish(pipeline.stack.mqtt_port, pipeline.mqtt_topic, corpus[:10])
    mqtt_publish(pipeline.stack.mqtt_port, device, [*corpus[10:], impostor])

    pipeline.wait_archived("rejected", len(bad) + 1)
    pipeline.wait_archived("readings", len(bad) - 1)
    assert sorted(pipeline.readings_payloads()) == sorted(good(i) for i in range(len(bad) - 1))

    rejected = pipeline.table("rejected").to_pylist()
    assert len(rejected) == len(bad) + 1
    by_payload = {r["payload"]: r for r in rejected if r["reason_code"] != "duplicate"}
    assert {p: r["reason_code"] for p, r in by_payload.items()} == bad
    assert all(r["reason"].startswith(r["reason_code"] + ": ") for r in rejected)
    (dup,) = [r for r in rejected if r["reason_code"] == "duplicate"]
    assert dup["payload"] == good(0)
    assert {r["mqtt_topic"] for r in rejected} == {
        pipeline.mqtt_topic,
        device,
    }


def test_a_flood_from_one_sensor_is_cut_at_the_limit_into_dead_letters(pipeline):
    from datetime import datetime

    second = datetime(2026, 1, 2, 3, 4, 5)
    limit = 100  # MAX_READINGS_PER_SENSOR_SECOND's default
    flood = [reading_payload("Flooder", second.replace(microsecond=i), i % 40) for i in range(130)]
    calm = [reading_payload("Calm", second.replace(second=s), 1) for s in range(30)]
    mqtt_publish(pipeline.stack.mqtt_port, pipeline.mqtt_topic, flood + calm)

    pipeline.wait_archived("rejected", 30)
    pipeline.wait_archived("readings", limit + len(calm))
    assert Counter(pipeline.readings_payloads()) == Counter(flood[:limit] + calm)
    rejected = pipeline.table("rejected").to_pylist()
    assert sorted(r["payload"] for r in rejected) == sorted(flood[limit:])
    assert {r["reason_code"] for r in rejected} == {"rate_limited"}
    assert pipeline.health("HEALTH_PORT")["dead_letters"] == {"rate_limited": 30}
