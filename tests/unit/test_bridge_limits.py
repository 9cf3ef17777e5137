"""The bridge's pure pieces: outage horizon, dead-letter memory, settings that
mirror Mosquitto's config."""

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqtt_bridge.bridge import DELIVERY_TIMEOUT_MS, outage_horizon_s
from mqtt_bridge.dedup import RecentDigests
from mqtt_bridge.settings import BridgeSettings

ROOT = Path(__file__).resolve().parents[2]


def horizon(**overrides):
    args = {
        "max_queued_bytes": 1 << 30,
        "max_queued_messages": 0,
        "readings_per_second": 2500.0,
        "payload_bytes": 70,
        "max_in_flight": 20_000,
        "delivery_timeout_s": DELIVERY_TIMEOUT_MS / 1000,
    }
    return outage_horizon_s(**{**args, **overrides})


def test_horizon_is_bounded_by_the_brokers_queue_bytes():
    # 1 GiB / (2,500/s x 70 B) = 6,135 s, plus 8 s held in flight by the bridge.
    assert horizon() == pytest.approx((1 << 30) / 175_000 + 8)


def test_horizon_takes_the_tighter_of_the_brokers_limits_and_the_delivery_timeout():
    assert horizon(max_queued_messages=250_000) == pytest.approx(100 + 8)
    assert horizon(max_queued_bytes=0) == DELIVERY_TIMEOUT_MS / 1000
    assert horizon(readings_per_second=0.001) == DELIVERY_TIMEOUT_MS / 1000


def test_horizon_shrinks_as_the_rate_grows():
    assert horizon(readings_per_second=10_000) < horizon(readings_per_second=2_500) / 3


def test_bridge_defaults_mirror_mosquitto_conf():
    conf = (ROOT / "mosquitto" / "mosquitto.conf").read_text()

    def value(name):
        return int(re.search(rf"^{name}\s+(\d+)", conf, re.M).group(1))

    s = BridgeSettings(_env_file=None)
    assert s.broker_max_queued_bytes == value("max_queued_bytes")
    assert s.broker_max_queued_messages == value("max_queued_messages")


def test_dead_letter_memory_is_bounded_and_keyed_by_topic_and_digest():
    seen = RecentDigests(capacity=100)
    seen.remember(b"sensors", "aa")
    assert (b"sensors", "aa") in seen
    assert (b"sensors/gw", "aa") not in seen
    for i in range(150):
        seen.remember(b"t", str(i))
    assert len(seen) == 100
    assert (b"sensors", "aa") not in seen
    assert (b"t", "149") in seen


def test_an_unforeseen_exception_on_one_message_becomes_a_dead_letter(monkeypatch):
    """The handling of one message raises something nobody foresaw: the bridge
    dead-letters that message with the error text and goes on."""
    import paho.mqtt.client as mqtt

    from mqtt_bridge import bridge as bridge_module

    def explode(*_args, **_kwargs):
        raise RuntimeError("a bug nobody foresaw")

    settings = BridgeSettings(_env_file=None, kafka_bootstrap_servers="127.0.0.1:1", health_port=0)
    bridge = bridge_module.Bridge(settings)
    sent = []
    monkeypatch.setattr(bridge_module, "parse_reading", explode)
    monkeypatch.setattr(
        bridge,
        "_send",
        lambda topic, key, value, headers, *a, **k: sent.append((topic, value, dict(headers))),
    )
    msg = mqtt.MQTTMessage(mid=7, topic=b"sensors/gw")
    msg.payload = b'{"id": "Sensor 1"}'
    msg.qos = 1
    bridge._on_message(None, None, msg)  # must not raise
    assert bridge.stats.internal_errors == 1
    ((topic, value, headers),) = sent
    assert topic == settings.kafka_topic_dlq
    assert value == b'{"id": "Sensor 1"}'
    assert headers["reason"].startswith(b"internal_error: RuntimeError: a bug nobody foresaw")
    assert headers["mqtt_topic"] == b"sensors/gw"


def test_a_dead_letter_keeps_a_bounded_prefix_with_size_and_hash(monkeypatch):
    import hashlib

    import paho.mqtt.client as mqtt

    from mqtt_bridge import bridge as bridge_module

    settings = BridgeSettings(_env_file=None, kafka_bootstrap_servers="127.0.0.1:1", health_port=0)
    bridge = bridge_module.Bridge(settings)
    sent = []
    monkeypatch.setattr(
        bridge,
        "_send",
        lambda topic, key, value, headers, *a, **k: sent.append((value, dict(headers))),
    )
    big = b'{"id": "Sensor 1", "pad": "' + b"x" * 2_000_000 + b'"}'
    msg = mqtt.MQTTMessage(mid=1, topic=b"sensors")
    msg.payload, msg.qos = big, 1
    bridge._on_message(None, None, msg)
    msg.dup = True  # the broker resends it after a crash: the same dead letter, dropped
    bridge._on_message(None, None, msg)
    ((value, headers),) = sent
    assert value == big[: settings.dlq_max_payload_bytes]
    assert headers["reason"].startswith(b"oversized: ")
    assert headers["payload_size"] == str(len(big)).encode()
    assert headers["payload_sha256"] == hashlib.sha256(big).hexdigest().encode()
    assert headers["truncated"] == b"true"
    assert bridge.stats.redeliveries_dropped == 1


def test_a_dead_letter_kafka_refuses_is_sent_again_without_its_payload(monkeypatch):
    import paho.mqtt.client as mqtt
    from confluent_kafka import KafkaError

    from mqtt_bridge import bridge as bridge_module

    settings = BridgeSettings(_env_file=None, kafka_bootstrap_servers="127.0.0.1:1", health_port=0)
    bridge = bridge_module.Bridge(settings)
    sent = []

    def send(topic, key, value, headers, on_done, *a, **k):
        sent.append((value, dict(headers)))
        on_done(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if len(sent) == 1 else None)

    monkeypatch.setattr(bridge, "_send", send)
    acked = []
    monkeypatch.setattr(bridge, "_ack", lambda mid, qos: acked.append(mid))
    msg = mqtt.MQTTMessage(mid=9, topic=b"sensors")
    msg.payload, msg.qos = b"not json", 1
    bridge._on_message(None, None, msg)
    (first, first_headers), (second, headers) = sent
    assert first == b"not json" and "truncated" not in first_headers
    assert second == b""
    assert headers["reason"].startswith(b"not_json: ")
    assert b"; payload not stored: " in headers["reason"]
    assert headers["truncated"] == b"true"
    assert headers["payload_size"] == b"8"
    assert acked == [9] and bridge.fatal is None


# -- flood detection and device topics (mqtt_bridge.limits) ----------------------------


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 5)), max_size=300))
def test_the_flood_guard_admits_at_most_the_limit_per_sensor_and_event_second(events):
    from collections import Counter

    from mqtt_bridge.limits import FloodGuard

    guard = FloodGuard(per_second=3)
    admitted = Counter()
    for sensor, second in events:
        if guard.admit(sensor, second * 1_000_000 + 17):
            admitted[(sensor, second)] += 1
    offered = Counter(events)
    assert admitted == Counter({k: min(3, n) for k, n in offered.items()})


def test_a_backlog_delivered_fast_passes_when_its_event_times_are_spread():
    from mqtt_bridge.limits import FloodGuard

    guard = FloodGuard(per_second=2)
    # An outage's backlog: one reading a second over an hour, handed over at once.
    assert all(guard.admit("Sensor 1", s * 1_000_000) for s in range(3600))
    assert guard.admit("Sensor 1", 3599 * 1_000_000 + 5)  # a second one in that second
    assert not guard.admit("Sensor 1", 3599 * 1_000_000 + 6)  # a third: past the limit


def test_the_flood_guard_memory_is_bounded():
    from mqtt_bridge.limits import FloodGuard

    guard = FloodGuard(per_second=1, capacity=100)
    for s in range(1000):
        guard.admit(f"spoofed {s}", 0)
    assert len(guard) == 100


def test_a_reading_on_a_device_topic_must_name_that_device():
    from mqtt_bridge.limits import topic_mismatch

    prefix = b"sensors/"
    assert not topic_mismatch(b"sensors", prefix, "Sensor 1")  # the shared topic: any id
    assert not topic_mismatch(b"sensors/Sensor 1", prefix, "Sensor 1")
    assert topic_mismatch(b"sensors/Sensor 1", prefix, "Sensor 2")
    assert topic_mismatch(b"sensors/Sensor 1/x", prefix, "Sensor 1")


def bridge_sending_to_a_list(monkeypatch, **overrides):
    from mqtt_bridge import bridge as bridge_module

    settings = BridgeSettings(
        _env_file=None, kafka_bootstrap_servers="127.0.0.1:1", health_port=0, **overrides
    )
    bridge = bridge_module.Bridge(settings)
    sent = []
    acked = []

    def send(topic, key, value, headers, on_done, *a, **k):
        sent.append((topic, value, dict(headers)))
        on_done(None)  # Kafka confirms at once

    monkeypatch.setattr(bridge, "_send", send)
    monkeypatch.setattr(bridge, "_ack", lambda mid, qos: acked.append(mid))
    return bridge, sent, acked


def message(mid, payload, topic=b"sensors", dup=False):
    import paho.mqtt.client as mqtt

    msg = mqtt.MQTTMessage(mid=mid, topic=topic)
    msg.payload, msg.qos, msg.dup = payload, 1, dup
    return msg


def test_a_flood_becomes_rate_limited_dead_letters_and_a_restart_keeps_each_once(monkeypatch):
    from datetime import datetime

    from iot_data_generator.readings import reading_payload

    bridge, sent, acked = bridge_sending_to_a_list(monkeypatch, max_readings_per_sensor_second=5)
    second = datetime(2026, 12, 1, 0, 0, 0)
    flood = [reading_payload("Sensor 1", second.replace(microsecond=i), i) for i in range(8)]
    for i, p in enumerate(flood):
        bridge._on_message(None, None, message(i, p))
    topics = [t for t, _, _ in sent]
    assert topics.count(bridge.s.kafka_topic_readings) == 5
    dead = [h for t, _, h in sent if t == bridge.s.kafka_topic_dlq]
    assert len(dead) == 3 and all(h["reason"].startswith(b"rate_limited: ") for h in dead)
    assert bridge.stats.dead_letters == {"rate_limited": 3}
    assert sorted(acked) == list(range(8))

    # A restart: the memories are refilled from the topics' tails (here: copied), and
    # the broker resends what it saw no ack for, flagged DUP. The readings stay
    # readings and the dead letters stay dead letters, each once.
    again, sent2, _ = bridge_sending_to_a_list(monkeypatch, max_readings_per_sensor_second=5)
    again._dead = bridge._dead
    for key, digest in list(bridge._recent._digests.items())[:5]:  # the readings' tail
        again._recent.remember(key, digest)
    for i, p in enumerate(flood):
        again._on_message(None, None, message(100 + i, p, dup=True))
    assert sent2 == []
    assert again.stats.redeliveries_dropped == 8


def test_a_reading_naming_another_device_is_a_dead_letter(monkeypatch):
    from datetime import datetime

    from iot_data_generator.readings import reading_payload

    bridge, sent, acked = bridge_sending_to_a_list(monkeypatch)
    p = reading_payload("Sensor 2", datetime(2026, 12, 1), 3)
    bridge._on_message(None, None, message(1, p, topic=b"sensors/Sensor 1"))
    bridge._on_message(None, None, message(2, p, topic=b"sensors/Sensor 2"))
    ((t1, _, h1), (t2, _, _)) = sent
    assert t1 == bridge.s.kafka_topic_dlq and h1["reason"].startswith(b"topic_mismatch: ")
    assert t2 == bridge.s.kafka_topic_readings
    assert acked == [1, 2]
