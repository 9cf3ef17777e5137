"""Step 1 as a user sees it: what the generator published is in the archive, once."""

from collections import Counter

import pytest

from tests.integration.harness import published, wait_exit

pytestmark = pytest.mark.integration


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
