"""Stream job settings, read once from the environment (or an uncommitted .env)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from mqtt_bridge.settings import ContractSettings


class StreamSettings(ContractSettings):
    """Environment variables of `python -m stream_jobs` (names are the upper-case fields)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    app_id: str = "iot-stream-jobs"  # Faust app id (its own consumer group)
    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_topic_readings: str = "iot.readings"
    kafka_topic_dlq: str = "iot.readings.dlq"
    kafka_topic_sensors: str = "iot.sensors"
    kafka_topic_1m: str = "iot.readings.1m"
    consumer_group_prefix: str = "iot-archive"
    # 1-minute means: a window closes this long after its end (event time); a later
    # reading re-emits it corrected. Checkpoints (and emissions) every commit interval.
    window_lateness_seconds: float = Field(default=5.0, ge=0)
    window_commit_seconds: float = Field(default=2.0, gt=0)
    # A Kafka partition silent this long has its event clock moved by the wall clock.
    window_idle_seconds: float = Field(default=5.0, gt=0)

    # Where the archive lives: a local directory or s3://bucket/prefix (one code path).
    lake_url: str = "data/lake"
    s3_endpoint_url: str | None = None  # e.g. http://minio:9000; unset = AWS
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_region: str = "us-east-1"

    # A file is closed when it holds this many rows or its first row is this old.
    rotate_rows: int = Field(default=200_000, ge=1)
    rotate_seconds: float = Field(default=5.0, gt=0)
    zstd_level: int = Field(default=3, ge=1, le=22)  # 3 was smaller and faster than 9 here

    # Trino, to create the SQL tables and register new partitions ("" = no SQL catalog).
    trino_host: str = "localhost"
    trino_port: int = 8080
    trino_user: str = "iot-stream-jobs"
    trino_catalog: str = "hive"
    raw_schema: str = "raw"  # SQL schemas of the raw tables and of the curated views
    curated_schema: str = "curated"
    # Trino's Kafka catalog for the live view raw.readings_live ("" = no live view),
    # which reads the newest readings (this many seconds) from Kafka, older from the archive.
    trino_kafka_catalog: str = "kafka"
    live_view_horizon_seconds: int = Field(default=60, ge=1)

    # Compaction of closed days, off by default: it can double a day for good (a crash
    # right after its partition switch, a wall-clock step back, or a grace period longer
    # than its interval). Tables move to Iceberg next, which replaces it.
    compaction_enabled: bool = False
    # The Hive Metastore, for compaction's atomic partition switch ("" = no compaction).
    metastore_host: str = "localhost"
    metastore_port: int = 9083
    # A day is closed (compactable) once it is this many days old: 1 = yesterday and before.
    compact_after_days: int = Field(default=1, ge=0)
    compact_interval_seconds: float = Field(default=600, gt=0)
    # Old small files stay this long after the switch, for queries that planned with them.
    compact_grace_seconds: float = Field(default=600, ge=0)
    compact_min_files: int = Field(default=2, ge=2)

    web_port: int = 6066
    datadir: str = "data/stream_jobs"
    logging_level: str = "INFO"

    def storage_options(self) -> dict[str, object]:
        """fsspec options for s3:// lakes (ignored for local directories)."""
        if not self.lake_url.startswith("s3://"):
            return {}
        options: dict[str, object] = {"client_kwargs": {"region_name": self.aws_region}}
        if self.s3_endpoint_url:
            options["endpoint_url"] = self.s3_endpoint_url
        if self.aws_access_key_id:
            options["key"] = self.aws_access_key_id
        if self.aws_secret_access_key:
            options["secret"] = self.aws_secret_access_key.get_secret_value()
        return options
