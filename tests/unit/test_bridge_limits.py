"""The bridge's pure pieces: outage horizon, dead-letter memory, settings that
mirror Mosquitto's config."""

import re
from pathlib import Path

import pytest

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
