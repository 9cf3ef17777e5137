"""Portal settings, read once from the environment (or an uncommitted .env)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from iot_common.settings import KafkaSettings, TrinoSettings


class PortalSettings(KafkaSettings, TrinoSettings):
    """Environment variables of `python -m portal` (names are the upper-case fields).

    PORTAL_HOST, PORTAL_PORT       where the pages are served (127.0.0.1:8090)
    STREAM_JOBS_URL                the stream jobs' web server, whose /catalogue.json
                                   is the catalogue (refetched every CATALOGUE_REFRESH_SECONDS;
                                   the last copy is kept while it is unreachable)
    TRINO_HOST, TRINO_PORT, TRINO_USER, TRINO_CATALOG, RAW_SCHEMA, CURATED_SCHEMA
                                   where the live facts and the quality figures come from
                                   (TRINO_HOST empty: none)
    TRINO_TIMEOUT_SECONDS          a page's query gives up after this long
    FACTS_CACHE_SECONDS            live facts and pages' data are reused this long
    KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC_*
                                   the topics' offsets on their catalogue pages
                                   (KAFKA_BOOTSTRAP_SERVERS empty: none)
    QUALITY_DOCS_DIR               Great Expectations' Data Docs, served at /quality/docs/
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    portal_host: str = "127.0.0.1"
    portal_port: int = Field(default=8090, ge=1, le=65535)

    stream_jobs_url: str = "http://localhost:6066"
    catalogue_refresh_seconds: float = Field(default=60.0, gt=0)

    trino_user: str = "iot-portal"  # the rest of Trino's settings: TrinoSettings
    trino_timeout_seconds: float = Field(default=20.0, gt=0)
    facts_cache_seconds: float = Field(default=15.0, ge=0)

    quality_docs_dir: Path = Path("data/quality/data_docs")
