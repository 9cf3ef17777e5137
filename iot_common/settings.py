"""Settings that several services read, declared once. Each service's settings
class (one frozen object per service, read once at start-up) inherits the groups
it uses, so an environment variable has one name, one type and one default
wherever it is read. Names are the upper-case field names."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from iot_common import topics
from iot_common.contract import (
    DEFAULT_DT_FLOOR,
    DEFAULT_DT_MAX_AHEAD_S,
    DEFAULT_MAX_PAYLOAD_BYTES,
    TimeBounds,
)
from iot_common.logs import LogFormat

# The sensor list is the generator's file (the challenge's contract); the bridge
# publishes it to Kafka. Found from this checkout unless SENSORS_FILE says otherwise.
DEFAULT_SENSORS_FILE = (
    Path(__file__).resolve().parent.parent / "iot_data_generator" / "sensors.json"
)


class CommonSettings(BaseSettings):
    """The base of every service's settings: read from the environment, then `.env`,
    then (with `load`) SECRETS_DIR."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    @classmethod
    def load(cls) -> Self:
        """The settings, read once at start-up: the environment, `.env`, then the
        files of SECRETS_DIR when set (one file per setting, named after it, e.g.
        `mqtt_password`: how compose hands a service its secrets, out of `env`)."""
        return cls(_secrets_dir=os.environ.get("SECRETS_DIR") or None)

    logging_level: str = "INFO"
    # One JSON object a line (json) or plain text (text): iot_common.logs.
    log_format: LogFormat = "json"


class ContractSettings(CommonSettings):
    """The reading contract: the bridge judges messages by it and the stream jobs
    judge records by it again (MAX_PAYLOAD_BYTES, DT_FLOOR, DT_MAX_AHEAD_SECONDS)."""

    max_payload_bytes: int = Field(default=DEFAULT_MAX_PAYLOAD_BYTES, ge=1)
    # dt before DT_FLOOR is dt_too_old; more than DT_MAX_AHEAD_SECONDS after its
    # receive time is dt_in_future.
    dt_floor: datetime = DEFAULT_DT_FLOOR
    dt_max_ahead_seconds: float = Field(default=DEFAULT_DT_MAX_AHEAD_S, ge=0)

    def time_bounds(self) -> TimeBounds:
        return TimeBounds.of(self.dt_floor, self.dt_max_ahead_seconds)


class MqttSettings(CommonSettings):
    """The broker the generator publishes to and the bridge subscribes to."""

    mqtt_host: str = "localhost"
    mqtt_port: int = 1883
    # The generator publishes to MQTT_TOPIC; the bridge subscribes to it and MQTT_TOPIC/#.
    mqtt_topic: str = "sensors"
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None


class SensorListSettings(CommonSettings):
    sensors_file: Path = DEFAULT_SENSORS_FILE


class KafkaSettings(CommonSettings):
    """Kafka and our topics' names (defaults: iot_common.topics)."""

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_topic_readings: str = topics.READINGS
    kafka_topic_dlq: str = topics.DEAD_LETTERS
    kafka_topic_sensors: str = topics.SENSORS
    kafka_topic_1m: str = topics.READINGS_1M
    kafka_topic_quality_1m: str = topics.QUALITY_1M
    kafka_topic_quality_status: str = topics.QUALITY_STATUS
    kafka_readings_partitions: int = Field(default=topics.READINGS_PARTITIONS, ge=1)


class TrinoSettings(CommonSettings):
    """Trino and the SQL names of our tables (TRINO_HOST empty: no SQL). Each service
    names itself in Trino's query list by its own TRINO_USER default."""

    trino_host: str = "localhost"
    # Trino's HTTPS port when TRINO_PASSWORD is set (its plain HTTP port refuses logins)
    trino_port: int = 8443
    trino_user: str = "iot"
    # Empty: no login (a Trino without authentication, over plain HTTP).
    trino_password: SecretStr | None = None
    # The certificate to trust (Trino's own, self-signed: local/trino_auth.py); empty:
    # the system's trust store.
    trino_ca_file: str = ""
    trino_catalog: str = "iceberg"
    raw_schema: str = "raw"  # SQL schemas of the raw tables and of the curated ones
    curated_schema: str = "curated"

    def trino_login(self) -> dict[str, Any]:
        """The host, port, user and credentials for iot_common.trino_client.connect."""
        password = self.trino_password.get_secret_value() if self.trino_password else None
        return {
            "host": self.trino_host,
            "port": self.trino_port,
            "user": self.trino_user,
            "password": password,
            "ca_file": self.trino_ca_file or None,
        }
