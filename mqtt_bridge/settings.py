"""Bridge settings, read once from the environment (or an uncommitted .env)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from iot_common.settings import ContractSettings, KafkaSettings, MqttSettings, SensorListSettings

# The name the bridge reads its topics back under (at start: dedup memories, the
# sensor list); it commits nothing.
READBACK_GROUP = "iot-bridge-readback"


class BridgeSettings(ContractSettings, MqttSettings, KafkaSettings, SensorListSettings):
    """Environment variables of `python -m mqtt_bridge` (names are the upper-case fields)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # Stable id + clean session off = the broker queues for us while we are away.
    mqtt_client_id: str = "iot-mqtt-bridge"
    mqtt_keepalive: int = 60
    # Scale-out: bridges with the same group share one MQTT shared subscription
    # ($share/<group>/<topic>): the broker hands each message to one of them. Each
    # needs its own client id (and account). Empty: a subscription of its own.
    mqtt_shared_group: str = Field(default="", pattern=r"^[^/+#]*$")

    # Create the topics at start (idempotent); off where an operator owns them.
    kafka_create_topics: bool = True

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
    # Flood detection (mqtt_bridge.limits): readings of one sensor past this many in
    # one second of event time are dead letters (rate_limited). The original sends one.
    max_readings_per_sensor_second: int = Field(default=100, ge=1)
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

    # /health and /metrics; HEALTH_HOST 0.0.0.0 in a container (compose), loopback here.
    health_port: int = 8081  # 0 = no health endpoint
    health_host: str = "127.0.0.1"
