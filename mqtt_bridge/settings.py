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


class BridgeSettings(BaseSettings):
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

    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    # The reading contract's event-time bounds (the bridge and the stream jobs must
    # agree): dt before DT_FLOOR is dt_too_old, more than DT_MAX_AHEAD_SECONDS after
    # its receive time is dt_in_future.
    dt_floor: datetime = DEFAULT_DT_FLOOR
    dt_max_ahead_seconds: float = Field(default=DEFAULT_DT_MAX_AHEAD_S, ge=0)
    # Readings remembered to catch MQTT redeliveries and repeated readings;
    # the same number of tail records per partition is re-read at start.
    dedup_window: int = Field(default=100_000, ge=1000)
    # Records handed to Kafka but not yet confirmed; above it the MQTT loop waits.
    max_in_flight: int = Field(default=20_000, ge=1)

    health_port: int = 8081  # 0 = no health endpoint
    logging_level: str = "INFO"

    def time_bounds(self) -> TimeBounds:
        return TimeBounds.of(self.dt_floor, self.dt_max_ahead_seconds)
