"""Generator settings: the original generator's env names, plus optional extras."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SENSORS_FILE = Path(__file__).resolve().parent / "sensors.json"


class GeneratorSettings(BaseSettings):
    """Environment variables of `python -m iot_data_generator`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # The original generator's settings.
    mqtt_host: str = "localhost"
    mqtt_port: int = 1883
    mqtt_topic: str = "sensors"
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    interval_ms: int = Field(default=1000, ge=1)
    logging_level: str = "INFO"

    # Extras, all optional.
    mqtt_qos: int = Field(default=1, ge=0, le=2)
    mqtt_client_id: str = ""  # empty: a random id (the broker keeps no session for it)
    sensors_file: Path = DEFAULT_SENSORS_FILE
    run_seconds: float = 0  # 0 = run until stopped
    # Append every payload the broker confirmed (PUBACK at QoS 1) as a line: for tests/audits.
    published_log: Path | None = None

    # Fault injection for tests and demos: probability per reading, all off by default.
    fault_malformed: float = Field(default=0.0, ge=0, le=1)
    fault_out_of_range: float = Field(default=0.0, ge=0, le=1)
    fault_duplicate: float = Field(default=0.0, ge=0, le=1)
    fault_late: float = Field(default=0.0, ge=0, le=1)
    fault_late_seconds: float = 120.0
    fault_seed: int | None = None
