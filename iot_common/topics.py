"""The Kafka topics, declared once: their default names (each overridable by the
setting named beside it, iot_common.settings.KafkaSettings), partitions and
configuration. The bridge and the stream jobs create them from here, the local
stack and Trino's Kafka catalog name them from here (a test checks
trino/etc/catalog/kafka.properties against this file)."""

from __future__ import annotations

from dataclasses import dataclass, field

READINGS = "iot.readings"  # KAFKA_TOPIC_READINGS: accepted readings, keyed by sensor id
DEAD_LETTERS = "iot.readings.dlq"  # KAFKA_TOPIC_DLQ: what the bridge could not accept
SENSORS = "iot.sensors"  # KAFKA_TOPIC_SENSORS: the sensor list, compacted, keyed by id
READINGS_1M = "iot.readings.1m"  # KAFKA_TOPIC_1M: 1-minute figures (with revisions)
QUALITY_1M = "iot.quality.1m"  # KAFKA_TOPIC_QUALITY_1M: quality per sensor-minute (revisions)
QUALITY_STATUS = "iot.quality.status"  # KAFKA_TOPIC_QUALITY_STATUS: status changes, compacted

READINGS_PARTITIONS = 3  # KAFKA_READINGS_PARTITIONS: the stream jobs' parallelism
READINGS_1M_PARTITIONS = 3
QUALITY_1M_PARTITIONS = 1  # one quality job reads the 1-minute figures and dead letters whole


@dataclass(frozen=True)
class TopicSpec:
    """A topic as we create it (an existing one is left as it is)."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def readings_spec(name: str, partitions: int, max_ahead_s: float) -> TopicSpec:
    """iot.readings: the broker refuses record timestamps more than the contract's
    skew ahead of its clock, so no producer can forge a receive time far ahead."""
    ahead_ms = str(max(60_000, int(max_ahead_s * 1000)))
    return TopicSpec(name, partitions, {"message.timestamp.after.max.ms": ahead_ms})


def dead_letters_spec(name: str) -> TopicSpec:
    return TopicSpec(name, 1)


def sensors_spec(name: str) -> TopicSpec:
    return TopicSpec(name, 1, {"cleanup.policy": "compact"})


def readings_1m_spec(name: str) -> TopicSpec:
    return TopicSpec(name, READINGS_1M_PARTITIONS)


def quality_1m_spec(name: str) -> TopicSpec:
    return TopicSpec(name, QUALITY_1M_PARTITIONS)


def quality_status_spec(name: str) -> TopicSpec:
    """The latest status of every sensor stays (compacted), the changes in order."""
    return TopicSpec(name, 1, {"cleanup.policy": "compact"})
