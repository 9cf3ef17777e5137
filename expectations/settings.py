"""Settings of `python -m expectations`, read once from the environment (or an
uncommitted `.env`): one frozen object. Names are the upper-case field names; the
Trino and schema names are the ones the stream jobs read, so one `.env` serves both
(except TRINO_USER, whose default names this process in Trino's query list)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class QualitySettings(BaseSettings):
    """Environment variables of `python -m expectations`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    trino_host: str = "localhost"
    # Trino's HTTPS port when TRINO_PASSWORD is set (iot_common.trino_client)
    trino_port: int = Field(default=8443, ge=1, le=65535)
    trino_user: str = "iot-quality"
    trino_password: SecretStr | None = None  # empty: no login, plain HTTP
    trino_ca_file: str = ""  # the certificate to trust; empty: the system's
    # A BI login's catalog: the tables, read-only (local/trino_auth.py)
    trino_catalog: str = "lake"
    raw_schema: str = "raw"
    curated_schema: str = "curated"
    # What is validated: the last this many minutes of event time, up to the run's start.
    quality_window_minutes: int = Field(default=60, ge=1)
    # GX's Data Docs (index.html at its root). Its parent holds the run summary
    # (latest.json) and GX's own project folder (gx/: suites, validation results).
    quality_docs_dir: Path = Path("data/quality/data_docs")
    # Run every this many seconds (0: once); `--every` on the command line wins.
    quality_every_seconds: float = Field(default=0, ge=0)
    logging_level: str = "INFO"

    @property
    def docs_dir(self) -> Path:
        # Absolute: GX resolves a relative site directory against its own folder.
        return self.quality_docs_dir.resolve()

    @property
    def home(self) -> Path:
        """The folder of latest.json and gx/."""
        return self.docs_dir.parent

    @property
    def summary_path(self) -> Path:
        return self.home / "latest.json"
