"""Bridge settings, read once from the environment (or an uncommitted .env)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from mqtt_bridge.contract import (
    DEFAULT_DT_FLOOR,
    DEFAULT_DT_MAX_AHEAD_S,
    DEFAULT_MAX_PAYLOAD_BYTES,
    TimeBounds,
)

DEFAULT_SENSORS_FILE = (
    Path(__file__).resolve().parent.parent / "iot_data_generator" / "sensors.json"
)


class ContractSettings(BaseSettings):
    """The reading contract's settings, declared once: the bridge judges messages by
    them and the stream jobs judge records by them again, so both read the same
    environment variables (MAX_PAYLOAD_BYTES, DT_FLOOR, DT_MAX_AHEAD_SECONDS)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    max_payload_bytes: int = Field(default=DEFAULT_MAX_PAYLOAD_BYTES, ge=1)
    # dt before DT_FLOOR is dt_too_old; more than DT_MAX_AHEAD_SECONDS after its
    # receive time is dt_in_future.
    dt_floor: datetime = DEFAULT_DT_FLOOR
    dt_max_ahead_seconds: float = Field(default=DEFAULT_DT_MAX_AHEAD_S, ge=0)

    def time_bounds(self) -> TimeBounds:
        return TimeBounds.of(self.dt_floor, self.dt_max_ahead_seconds)


class BridgeSettings(ContractSettings):
    """Environment variables of `python -m mqtt_bridge` (names are the upper-case fields)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    mqtt_host: str = "localhost"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    # The bridge subscribes to MQTT_TOPIC and MQTT_TOPIC/# (the generator publishes to the first).
    mqtt_topic: str = "sensors"
    # Stable id + clean session off = the broker queues for us while we are away.
    mqtt_client_id: str = "iot-mqtt-bridge"
    mqtt_keepalive: int = 60

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_topic_readings: str = "iot.readings"
    kafka_topic_dlq: str = "iot.readings.dlq"
    kafka_topic_sensors: str = "iot.sensors"
    kafka_readings_partitions: int = 3
    # Create the topics at start (idempotent); off where an operator owns them.
    kafka_create_topics: bool = True

    sensors_file: Path = DEFAULT_SENSORS_FILE
    sensors_poll_seconds: float = 5.0

    # Readings remembered to catch MQTT redeliveries and repeated readings;
    # the same number of tail records per partition is re-read at start.
    dedup_window: int = Field(default=100_000, ge=1000)
    # Dead letters remembered (by MQTT topic and payload hash) to drop the broker's
    # resends of a message already dead-lettered; refilled from the DLQ's tail at start.
    dead_letter_memory: int = Field(default=10_000, ge=100)
    # A dead letter keeps at most this much of its payload (a prefix, with the full
    # size and SHA-256 in headers): far below Kafka's 1 MB record limit.
    dlq_max_payload_bytes: int = Field(default=65_536, ge=256, le=900_000)
    # Records handed to Kafka but not yet confirmed; above it the MQTT loop waits.
    max_in_flight: int = Field(default=20_000, ge=1)

    # How long Kafka may be away with nothing lost: Mosquitto queues for the bridge
    # up to its max_queued_bytes / max_queued_messages (these mirror
    # mosquitto/mosquitto.conf: keep them equal), at the planned reading rate.
    # Computed, logged at start and shown on /health (docs/architecture.md).
    broker_max_queued_bytes: int = Field(default=1_073_741_824, ge=0)
    broker_max_queued_messages: int = Field(default=0, ge=0)  # 0 = no limit
    planned_readings_per_second: float = Field(default=2_500.0, gt=0)
    planned_payload_bytes: int = Field(default=70, gt=0)  # the original format: ~67 B

    health_port: int = 8081  # 0 = no health endpoint
    logging_level: str = "INFO"
