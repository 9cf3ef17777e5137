"""After a restart the bridge's dedup memories hold what they held before it:
the newest readings of every partition, short or long, and the newest dead
letters, so the broker's resends are recognised and nothing is doubled."""

import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from iot_common.contract import parse_reading
from iot_data_generator.readings import reading_payload
from mqtt_bridge.bridge import Bridge
from mqtt_bridge.dedup import Verdict
from mqtt_bridge.settings import BridgeSettings

pytestmark = pytest.mark.integration


def test_refill_keeps_the_newest_readings_of_a_short_partition(brokers):
    uid = uuid.uuid4().hex[:8]
    settings = BridgeSettings(
        _env_file=None,
        kafka_bootstrap_servers=brokers.bootstrap,
        kafka_topic_readings=f"{uid}.readings",
        kafka_topic_dlq=f"{uid}.readings.dlq",
        kafka_topic_sensors=f"{uid}.sensors",
        dedup_window=1000,
        dead_letter_memory=100,
        health_port=0,
    )
    Bridge(settings).prepare()  # creates the topics
    producer = Producer({"bootstrap.servers": brokers.bootstrap})
    now_ms = int(time.time() * 1000)
    base = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)

    def reading(partition: int, i: int, age_ms: int) -> bytes:
        value = reading_payload(f"p{partition}", base + timedelta(seconds=i), i)
        producer.produce(
            settings.kafka_topic_readings,
            value=value,
            key=b"k",
            partition=partition,
            timestamp=now_ms - age_ms,
        )
        return value

    # Two long partitions written earlier, then the short one's few, newest readings.
    for i in range(1500):
        reading(1, i, 60_000 - i)
        reading(2, i, 60_000 - i)
    newest = [reading(0, i, 1_000 - i) for i in range(10)]
    # Dead letters another producer wrote, with headers the refill must survive.
    for headers in ([("payload_sha256", b"\xff\xfe")], [("mqtt_topic", None)], []):
        producer.produce(settings.kafka_topic_dlq, value=None, headers=headers)
    dead = [b"broken %d" % i for i in range(150)]
    for payload in dead:
        producer.produce(
            settings.kafka_topic_dlq,
            value=payload,
            headers=[("mqtt_topic", b"sensors"), ("reason", b"not_json: x")],
        )
    assert producer.flush(30) == 0

    restarted = Bridge(settings)
    restarted.prepare()
    for value in newest:  # the broker resends them flagged DUP: recognised, dropped
        key = parse_reading(value).key
        assert restarted._recent.check(key, hash(value), True) is Verdict.REDELIVERY
    assert len(restarted._recent) == 1000
    # Without the DLQ header the digest is the payload's own; the oldest are forgotten.
    digests = [(b"sensors", hashlib.sha256(p).hexdigest()) for p in dead]
    assert all(d in restarted._dead for d in digests[-100:])
    assert not any(d in restarted._dead for d in digests[:50])
