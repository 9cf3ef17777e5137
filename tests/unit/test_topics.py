"""The topic names have one home (iot_common.topics): the files that cannot import
it must agree with it, and every service reads the same setting for each."""

from pathlib import Path

from iot_common import topics
from iot_data_generator.settings import GeneratorSettings
from mqtt_bridge.settings import BridgeSettings
from stream_jobs.settings import StreamSettings

ROOT = Path(__file__).resolve().parents[2]


def test_trino_kafka_catalog_exposes_the_readings_topic():
    props = dict(
        line.split("=", 1)
        for line in (ROOT / "trino/etc/catalog/kafka.properties").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    )
    assert topics.READINGS in props["kafka.table-names"].split(",")


def test_services_share_the_topic_and_broker_settings():
    bridge, jobs = BridgeSettings(_env_file=None), StreamSettings(_env_file=None)
    for name in ("kafka_bootstrap_servers", "kafka_topic_readings", "kafka_topic_dlq"):
        assert getattr(bridge, name) == getattr(jobs, name)
    assert (bridge.kafka_topic_readings, jobs.kafka_topic_1m) == (
        topics.READINGS,
        topics.READINGS_1M,
    )
    generator = GeneratorSettings(_env_file=None)
    assert (generator.mqtt_topic, generator.sensors_file) == (
        bridge.mqtt_topic,
        bridge.sensors_file,
    )
    assert bridge.sensors_file.is_file()


def test_a_topic_renamed_in_the_environment_is_renamed_for_every_service(monkeypatch):
    monkeypatch.setenv("KAFKA_TOPIC_READINGS", "other.readings")
    assert BridgeSettings(_env_file=None).kafka_topic_readings == "other.readings"
    assert StreamSettings(_env_file=None).kafka_topic_readings == "other.readings"
