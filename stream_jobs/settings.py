"""Stream job settings, read once from the environment (or an uncommitted .env)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from iot_common.settings import ContractSettings, KafkaSettings, TrinoSettings


class StreamSettings(ContractSettings, KafkaSettings, TrinoSettings):
    """Environment variables of `python -m stream_jobs` (names are the upper-case fields)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    app_id: str = "iot-stream-jobs"  # Faust app id (its own consumer group)
    consumer_group_prefix: str = "iot-archive"
    # 1-minute means: a window closes this long after its end (event time); a later
    # reading re-emits it corrected. Checkpoints (and emissions) every commit interval.
    window_lateness_seconds: float = Field(default=5.0, ge=0)
    window_commit_seconds: float = Field(default=2.0, gt=0)
    # A Kafka partition silent this long has its event clock moved by the wall clock.
    window_idle_seconds: float = Field(default=5.0, gt=0)

    # Data quality (docs/quality.md): a sensor without `interval_ms` in its
    # sensors.json entry is expected to send one reading every this often.
    expected_interval_ms: float = Field(default=1000.0, gt=0)

    # Where the archive lives: a local directory or s3://bucket/prefix (one code path).
    lake_url: str = "data/lake"
    s3_endpoint_url: str | None = None  # e.g. http://minio:9000; unset = AWS
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_region: str = "us-east-1"

    # Each table commits its buffered rows as one Iceberg snapshot when a partition's
    # buffer holds this many rows or its first row is this old (the live view through
    # Kafka keeps "now" fresh in between; fewer commits, smaller metadata).
    rotate_rows: int = Field(default=200_000, ge=1)
    rotate_seconds: float = Field(default=10.0, gt=0)
    zstd_level: int = Field(default=3, ge=1, le=22)  # 3 was smaller and faster than 9 here

    # The Hive Metastore, where the Iceberg tables live (their metadata: the data is in the lake).
    metastore_host: str = "localhost"
    metastore_port: int = 9083

    # Trino, for the views over the tables and for snapshot expiry ("" = neither).
    # (TRINO_HOST, TRINO_PORT, TRINO_CATALOG, RAW_SCHEMA, CURATED_SCHEMA: TrinoSettings)
    trino_user: str = "iot-stream-jobs"
    # Trino's Kafka catalog for the live view raw.readings_live ("" = no live view),
    # which reads the newest readings (this many seconds) from Kafka, older from the archive.
    trino_kafka_catalog: str = "kafka"
    live_view_horizon_seconds: int = Field(default=60, ge=1)

    # Table maintenance (stream_jobs.maintenance): every interval, small files of each
    # day (today too) are compacted into files of at most COMPACT_TARGET_ROWS rows once
    # a day has COMPACT_MIN_FILES of them; snapshots older than the retention expire
    # (time travel reaches that far back); files no snapshot knows are removed once
    # older than the orphan retention (at least a minute: Trino refuses less).
    maintenance_interval_seconds: float = Field(default=300, gt=0)
    compact_target_rows: int = Field(default=2_000_000, ge=1)
    compact_min_files: int = Field(default=4, ge=2)
    snapshot_retention_seconds: int = Field(default=3600, ge=60)
    orphan_retention_seconds: int = Field(default=3600, ge=60)

    # The dead-letter watch (a Faust agent) logs a warning when one reason code
    # reaches this many dead letters in a minute.
    dead_letter_alert_per_minute: int = Field(default=100, ge=1)

    web_port: int = 6066
    # /health, /metrics, /catalogue.json; WEB_HOST 0.0.0.0 in a container (compose).
    web_host: str = "127.0.0.1"
    datadir: str = "data/stream_jobs"

    def iceberg_s3(self) -> dict[str, str]:
        """pyiceberg's FileIO settings for s3:// lakes (none for local directories)."""
        if not self.lake_url.startswith("s3://"):
            return {}
        options = {"s3.region": self.aws_region}
        if self.s3_endpoint_url:
            options["s3.endpoint"] = self.s3_endpoint_url
        if self.aws_access_key_id:
            options["s3.access-key-id"] = self.aws_access_key_id
        if self.aws_secret_access_key:
            options["s3.secret-access-key"] = self.aws_secret_access_key.get_secret_value()
        return options

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
