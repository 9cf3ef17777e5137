"""Scale-out of the bridge: two bridges on one MQTT shared subscription share the
readings, and a kill -9 of one under load loses and doubles nothing.

Mosquitto hands each message of `$share/<group>/<topic>` to one member. A member
killed with messages in flight gets them again when its persistent session comes
back (the supervisor restarts it; here the test does); meanwhile the other member
goes on. Every published reading must be in Kafka exactly once."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from confluent_kafka import Consumer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion

from iot_data_generator.readings import reading_payload
from local.services import Stack
from tests.integration.harness import (
    TEST_PUBLISHER,
    Proc,
    _http_ok,
    add_account,
    free_port,
    wait_for,
)

pytestmark = pytest.mark.integration

N = 24_000
SENSORS = 40


def bridge(stack: Stack, work: Path, uid: str, member: int, topic: str) -> tuple[Proc, int]:
    account = add_account(
        stack, f"bridge-{uid}-{member}", (("read", topic), ("read", f"{topic}/#"))
    )
    health = free_port()
    env = {
        **stack.python_env(),
        "MQTT_TOPIC": topic,
        "MQTT_USERNAME": account.username,
        "MQTT_PASSWORD": account.password,
        "MQTT_CLIENT_ID": account.username,
        "MQTT_SHARED_GROUP": f"bridges-{uid}",
        "KAFKA_TOPIC_READINGS": f"{uid}.readings",
        "KAFKA_TOPIC_DLQ": f"{uid}.readings.dlq",
        "KAFKA_TOPIC_SENSORS": f"{uid}.sensors",
        "HEALTH_PORT": str(health),
    }
    proc = Proc(
        f"bridge-{member}", [sys.executable, "-m", "mqtt_bridge"], env, work / f"b{member}.log"
    )
    return proc, health


def read_all(bootstrap: str, topic: str) -> list[bytes]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[bytes] = []
        done = {p for p, end in ends.items() if end == 0}
        while len(done) < len(parts):
            msg = c.poll(5)
            if msg is None:
                break
            if msg.error() is None:
                out.append(msg.value())
                if msg.offset() + 1 >= ends[msg.partition()]:
                    done.add(msg.partition())
        return out
    finally:
        c.close()


def forwarded(health_port: int) -> int:
    """The bridge's own count of readings handed to Kafka (its /health)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/health", timeout=5) as r:
        return int(json.loads(r.read())["forwarded"])


def count(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "count"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        c.close()


def test_two_bridges_share_the_readings_and_a_kill_loses_and_doubles_nothing(brokers, tmp_path):
    uid = uuid.uuid4().hex[:8]
    topic = f"sensors-{uid}"
    (a, a_health), (b, b_health) = (bridge(brokers, tmp_path, uid, m, topic) for m in (1, 2))
    a.start()
    b.start()
    wait_for(lambda: _http_ok(a_health) and _http_ok(b_health), 60, "two bridges")

    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=2)
    payloads = [
        reading_payload(
            f"Sensor {i % SENSORS + 1}", start + timedelta(seconds=i // SENSORS), i % 46
        )
        for i in range(N)
    ]
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, TEST_PUBLISHER.username)
    pub.username_pw_set(TEST_PUBLISHER.username, TEST_PUBLISHER.password)
    pub.max_queued_messages_set(0)
    pub.max_inflight_messages_set(200)
    pub.connect("127.0.0.1", brokers.mqtt_port)
    pub.loop_start()

    def publish() -> None:
        infos = [pub.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(120)

    publisher = threading.Thread(target=publish)
    publisher.start()
    readings = f"{uid}.readings"
    # Under load: both members forwarding, then one is killed mid-stream.
    wait_for(lambda: count(brokers.bootstrap, readings) >= N // 4, 120, "a quarter forwarded")
    # Both members carry a share: the shared subscription splits the stream.
    assert forwarded(a_health) > 0 and forwarded(b_health) > 0
    a.kill9()
    at_kill = count(brokers.bootstrap, readings)
    publisher.join(180)
    assert not publisher.is_alive(), "the broker did not take every reading"
    pub.loop_stop()
    pub.disconnect()
    # The survivor goes on alone; the killed member's session holds what it had in
    # flight (and what the broker queued for it) until it is back.
    time.sleep(3)
    survivor_only = count(brokers.bootstrap, readings)
    assert survivor_only > at_kill, "the other member stopped forwarding"
    a.start()  # as the supervisor does
    wait_for(lambda: count(brokers.bootstrap, readings) >= N, 120, "every reading in Kafka")
    time.sleep(3)  # anything doubled would land now
    got = read_all(brokers.bootstrap, readings)
    a.stop()
    b.stop()
    assert len(got) == N, f"{len(got)} records for {N} readings"
    assert sorted(got) == sorted(payloads)
