"""Generator settings: the original generator's env names, plus optional extras."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from iot_common.settings import MqttSettings, SensorListSettings


class GeneratorSettings(MqttSettings, SensorListSettings):
    """Environment variables of `python -m iot_data_generator`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # The original generator's settings: MQTT_HOST, MQTT_PORT, MQTT_TOPIC,
    # MQTT_USERNAME, MQTT_PASSWORD and LOGGING_LEVEL (iot_common.settings), and:
    interval_ms: int = Field(default=1000, ge=1)

    # Extras, all optional.
    mqtt_qos: int = Field(default=1, ge=0, le=2)
    mqtt_client_id: str = ""  # empty: a random id (the broker keeps no session for it)
    run_seconds: float = 0  # 0 = run until stopped
    # Prometheus metrics on http://METRICS_HOST:METRICS_PORT/metrics (0: none).
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    # Append every payload the broker confirmed (PUBACK at QoS 1) as a line: for tests/audits.
    published_log: Path | None = None

    # Fault injection for tests and demos: probability per reading, all off by default.
    fault_malformed: float = Field(default=0.0, ge=0, le=1)
    fault_out_of_range: float = Field(default=0.0, ge=0, le=1)
    fault_duplicate: float = Field(default=0.0, ge=0, le=1)
    fault_late: float = Field(default=0.0, ge=0, le=1)
    fault_late_seconds: float = 120.0
    fault_seed: int | None = None
    # Deterministic faults: sensors that fall silent after FAULT_SILENT_AFTER_SECONDS
    # (a comma-separated list of ids), and sensors whose clock is off, as JSON
    # {"Sensor 3": -90} (seconds; more than DT_MAX_AHEAD_SECONDS ahead is a dead letter).
    fault_silent_sensors: str = ""
    fault_silent_after_seconds: float = Field(default=0.0, ge=0)
    fault_clock_skew_seconds: dict[str, float] = Field(default_factory=dict)
