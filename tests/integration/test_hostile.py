"""Hostile input, as an attacker or a broken device would send it: every message,
key, header and clock is untrusted. The valid readings arrive, each hostile one
is a dead letter with its reason, the other sensors' 1-minute windows are
emitted once each and exact, and no service restarts."""

import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import KafkaError, Producer

from iot_common.contract import parse_reading
from iot_common.kafka_io import ensure_topics
from iot_data_generator.readings import reading_payload
from local.services import wait_for
from mqtt_bridge.bridge import topic_specs
from mqtt_bridge.settings import BridgeSettings
from tests.integration.harness import FAST_WINDOWS, Pipeline, mqtt_publish

pytestmark = pytest.mark.integration

GOOD = ("Sensor 1", "Sensor 2", "Sensor 3")  # in the default sensors.json, ranges known


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def payload(sensor: str, dt: str, value: float = 1) -> bytes:
    return b'{"id": "%s", "dt": "%s", "value": %r}' % (sensor.encode(), dt.encode(), value)


def produce_direct(bootstrap: str, topic: str, records: list[dict]) -> list[KafkaError | None]:
    """Write records straight to Kafka, bypassing the bridge; return each one's outcome."""
    producer = Producer({"bootstrap.servers": bootstrap})
    outcomes: list[KafkaError | None] = [None] * len(records)

    def done(i):
        return lambda err, _msg: outcomes.__setitem__(i, err)

    for i, rec in enumerate(records):
        producer.produce(topic, on_delivery=done(i), **rec)
    assert producer.flush(30) == 0
    return outcomes


def test_hostile_messages_become_dead_letters_and_stop_nothing(brokers, sql, tmp_path):
    pipe = Pipeline(brokers, tmp_path, env_extra=FAST_WINDOWS, sql_services=sql)
    env = pipe.env
    settings = BridgeSettings(
        _env_file=None,
        kafka_bootstrap_servers=brokers.bootstrap,
        kafka_topic_readings=env["KAFKA_TOPIC_READINGS"],
        kafka_topic_dlq=env["KAFKA_TOPIC_DLQ"],
        kafka_topic_sensors=env["KAFKA_TOPIC_SENSORS"],
    )
    ensure_topics(brokers.bootstrap, topic_specs(settings))
    # The sensor list's topic holds a key that is not UTF-8 (read by the bridge at
    # start and by the 1-minute job), and an entry whose range is not a range.
    produce_direct(
        brokers.bootstrap,
        settings.kafka_topic_sensors,
        [
            {"key": b"\xff\xfeSensor", "value": b'{"range": [0, 10]}'},
            {"key": b"Odd sensor", "value": b'{"range": "wide"}'},
            {"key": b"\xc3\x28", "value": b"\xff not json"},
        ],
    )
    pipe.start()
    try:
        _run(pipe, settings)
    finally:
        pipe.stop()


def _run(pipe: Pipeline, settings: BridgeSettings) -> None:
    bridge_pid, jobs_pid = pipe.bridge.p.pid, pipe.jobs.p.pid
    now = utcnow()
    big = payload("Sensor 1", now.isoformat()) + b" " * (2 * 1024 * 1024)  # over Kafka's 1 MB
    hostile_mqtt = {
        payload("Sensor 1", "0001-01-01T00:30:00+01:00"): "bad_dt",
        payload("Sensor 1", "9999-12-31T23:30:00-01:00"): "bad_dt",
        payload("Sensor 1", "9999-01-01T00:00:00"): "dt_in_future",
        payload("Sensor 1", "1970-01-01T00:00:00"): "dt_too_old",
        payload("Sensor 1", "2026-02-30T00:00:00"): "bad_dt",
        big: "oversized",
        b"\xff\xfe\xfd": "not_json",
    }
    # A device sending local time three hours ahead: every reading is refused.
    for i in range(5):
        dt = (now + timedelta(hours=3, seconds=i)).isoformat()
        hostile_mqtt[payload("Clock ahead 3h", dt, i)] = "dt_in_future"

    # Straight to Kafka, as another producer could: hostile keys, headers, values.
    readings_topic = settings.kafka_topic_readings
    direct_ok = payload("Direct 1", utcnow().isoformat(), 3)
    hostile_direct = {
        payload("Direct 1", "9999-01-01T00:00:00"): "dt_in_future",
        payload("Direct 1", "0001-01-01T00:30:00+01:00"): "bad_dt",
        b'{"id": "Direct 1", "dt": 1, "value": 1}': "bad_dt",
        b"\x00\xff binary": "not_json",
    }
    records = [
        {
            "key": b"\xff\xfe",
            "value": v,
            "headers": [("received_at", b"\xff\xfe"), ("mqtt_topic", b"\xc3\x28")],
        }
        for v in [direct_ok, *hostile_direct]
    ]
    outcomes = produce_direct(pipe.stack.bootstrap, readings_topic, records)
    assert outcomes == [None] * len(records)
    # A receive time forged a day ahead: the broker refuses it (topic config).
    forged = {"value": direct_ok, "timestamp": int((time.time() + 86_400) * 1000)}
    (outcome,) = produce_direct(pipe.stack.bootstrap, readings_topic, [forged])
    assert outcome is not None and outcome.code() == KafkaError.INVALID_TIMESTAMP

    # Good sensors report in real time across a minute boundary; sensors with
    # wrong clocks (within the accepted skew, or hours behind) report among them.
    start = utcnow()
    boundary = (start + timedelta(seconds=20)).replace(second=0, microsecond=0) + timedelta(
        minutes=1
    )
    good: list[bytes] = []
    accepted_odd: list[bytes] = []
    hostile_batches = [list(hostile_mqtt)[i::6] for i in range(6)]
    i = 0
    while utcnow() < boundary + timedelta(seconds=4):
        t = utcnow()
        batch = [
            reading_payload(s, t - timedelta(milliseconds=5 * k), i % 40)
            for k, s in enumerate(GOOD)
        ]
        good += batch
        odd = [
            reading_payload("Clock ahead 4m", t + timedelta(minutes=4), i),
            reading_payload("Clock behind 2h", t - timedelta(hours=2), i),
        ]
        accepted_odd += odd
        extra = hostile_batches[i] if i < len(hostile_batches) else []
        mqtt_publish(pipe.stack.mqtt_port, pipe.mqtt_topic, batch + odd + extra)
        i += 1
        time.sleep(0.25)

    # Every dead letter, with its reason.
    expected_dead = len(hostile_mqtt) + len(hostile_direct)
    pipe.wait_archived("rejected", expected_dead, timeout=120)
    rejected = pipe.table("rejected").to_pylist()
    assert len(rejected) == expected_dead, [r["reason"] for r in rejected]
    by_payload = {r["payload"]: r for r in rejected}
    small = {p: code for p, code in {**hostile_mqtt, **hostile_direct}.items() if p != big}
    assert {p: by_payload[p]["reason_code"] for p in small} == small
    (oversized,) = [r for r in rejected if r["reason_code"] == "oversized"]
    assert oversized["payload"] == big[: settings.dlq_max_payload_bytes]
    direct = [r for r in rejected if r["payload"] in hostile_direct]
    assert {r["kafka_topic"] for r in direct} == {readings_topic}

    # Every valid reading, once.
    want = sorted([*good, *accepted_odd, direct_ok])
    pipe.wait_archived("readings", len(want), timeout=120)
    assert sorted(pipe.readings_payloads()) == want

    # The good sensors' windows that closed: emitted once each, exact.
    expected: dict[tuple[str, datetime], list[float]] = defaultdict(list)
    for p in good:
        r = parse_reading(p)
        minute = datetime(1970, 1, 1) + timedelta(microseconds=r.ts_us - r.ts_us % 60_000_000)
        if minute + timedelta(minutes=1) <= boundary:
            expected[(r.sensor_id, minute)].append(r.value)
    assert len(expected) >= len(GOOD)

    def emissions():
        rows = pipe.table("readings_1m_revisions").to_pylist()
        return [r for r in rows if r["sensor_id"] in GOOD]

    def closed_ones():
        return [r for r in emissions() if (r["sensor_id"], r["window_start"]) in expected]

    wait_for(lambda: len(closed_ones()) >= len(expected), 60, "the closed windows")
    time.sleep(3)  # a second emission would come within a commit or two
    got = {}
    for r in closed_ones():
        key = (r["sensor_id"], r["window_start"])
        assert key not in got, f"{key} emitted twice"
        got[key] = r
    for key, values in expected.items():
        row = got[key]
        assert row["revision"] == 1
        assert row["count"] == len(values), key
        assert row["sum"] == pytest.approx(sum(values))
        assert (row["min"], row["max"]) == (min(values), max(values))
    assert all(r["revision"] == 1 for r in emissions())

    # Nothing restarted.
    assert pipe.bridge.alive and pipe.bridge.p.pid == bridge_pid
    assert pipe.jobs.alive and pipe.jobs.p.pid == jobs_pid
    # ... and each stage counted what it turned away.
    bridge = pipe.health("HEALTH_PORT")
    assert bridge["dead_lettered"] == len(hostile_mqtt)
    assert (bridge["internal_errors"], bridge["untraceable"]) == (0, 0)
    jobs = pipe.health()
    assert jobs["archive"]["readings"]["rejected"] == len(hostile_direct)
    assert jobs["readings_1m"]["skipped_invalid"] == len(hostile_direct)
    assert jobs["readings_1m"]["errors"] == 0
    # The stream jobs' Faust agents: the dead-letter watch counted the bridge's dead
    # letters by reason code, and the sensor directory holds the published list.
    codes = dict(Counter(hostile_mqtt.values()))
    wait_for(lambda: pipe.health()["dead_letters"]["total"] == codes, 30, "the dead-letter watch")
    sensors = pipe.health()["sensors"]
    assert sensors["known"] >= len(GOOD) + 2  # the odd keys too (their ranges are not used)
    assert sensors["skipped"] == 1  # the entry that is not JSON, counted, not fatal
    # The dead letters' contract accepts every dead letter the bridge wrote.
    from jsonschema import Draft202012Validator

    from iot_common import contracts
    from iot_common.kafka_io import read_all

    schema = Draft202012Validator(contracts.schema("iot.readings.dlq.headers"))
    dead = read_all(pipe.stack.bootstrap, settings.kafka_topic_dlq, group="t")
    assert len(dead) == len(hostile_mqtt)
    for rec in dead:
        headers = {k: (v or b"").decode("utf-8", "replace") for k, v in rec.headers.items()}
        assert schema.is_valid(headers), headers
    # One worker: Faust's leader election is off, so it made no leader topic.
    from confluent_kafka.admin import AdminClient

    listed = AdminClient({"bootstrap.servers": pipe.stack.bootstrap}).list_topics(timeout=10)
    assert not [t for t in listed.topics if t.startswith(pipe.env["APP_ID"])]
