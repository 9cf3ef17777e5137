"""Composition root of the stream jobs: one Faust app running the archive jobs.

Faust provides the worker (CLI, lifecycle, signals, logging) and the web
server for /health. The jobs read Kafka in batches with confluent-kafka in
their own threads: Faust's per-event stream path measured about 5,000
events/s on our 2-core machines, ten times under the archive's target (see
docs/benchmarks.md).

Several processes of the app may run with the same settings (scale-out): each job's
consumer group splits the readings' partitions between them, and each table is
written partition by partition by the member that owns them
(stream_jobs.checkpoint: claims and conditional commits); the quality job runs in
one member at a time (stream_jobs.scoring). Give each process its own WEB_PORT and
DATADIR. The agents of stream_jobs.agents see only the partitions Faust assigns
their process (its /health says so much of them).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import faust
from confluent_kafka import Producer
from mode import Service

from iot_common.kafka_io import SESSION_TIMEOUT_MS, read_all, read_partitions
from iot_common.logs import dict_config
from iot_common.metrics import (
    CONTENT_TYPE,
    CountersCollector,
    GaugeFunction,
    render,
    service_registry,
)
from stream_jobs.agents import DeadLetterWatch, SensorDirectory, register
from stream_jobs.archive import TopicArchiver
from stream_jobs.catalog import NoSqlCatalog, SqlCatalog, sql_catalog
from stream_jobs.catalogue import datasets
from stream_jobs.iceberg import IcebergTable, connect
from stream_jobs.lake import Lake
from stream_jobs.maintenance import Maintenance, MaintenancePolicy
from stream_jobs.migrate import migrate
from stream_jobs.records import build_readings, build_rejected, build_sensors
from stream_jobs.resample import MinuteJob, SensorRanges, WindowPolicy
from stream_jobs.scoring import QualityJob, SensorList
from stream_jobs.settings import StreamSettings
from stream_jobs.tables import (
    READINGS,
    READINGS_1M_REVISIONS,
    REJECTED,
    SENSOR_QUALITY_1M_REVISIONS,
    SENSORS,
    TABLES,
    TableSpec,
)

log = logging.getLogger(__name__)

# The name the jobs read the sensor list back under; it commits nothing.
READBACK_GROUP = "iot-stream-jobs-readback"

settings = StreamSettings.load()  # the environment, .env, then SECRETS_DIR (compose)

app = faust.App(
    settings.app_id,
    broker=";".join(f"kafka://{h}" for h in settings.kafka_bootstrap_servers.split(",")),
    web_port=settings.web_port,
    web_host=settings.web_host,
    web_bind=settings.web_host,  # where it listens (web_host only names it in URLs)
    # Our format (JSON lines by default) instead of Faust's coloured text.
    logging_config=dict_config(settings.logging_level, settings.log_format),
    datadir=settings.datadir,
    topic_replication_factor=1,
    # A worker that died leaves Faust's own group after this long; Faust's 60 s
    # default held every restart after a crash for a minute before the jobs began.
    broker_session_timeout=SESSION_TIMEOUT_MS / 1000,
    # Faust's leader election is not used (no leader topic): the quality job picks
    # its one member through its own consumer group (stream_jobs.scoring).
    topic_disable_leader=True,
)


class Migration:
    """Moves an archive of the former layout (Hive tables) into the Iceberg tables
    before any writer starts (stream_jobs.migrate); the writers wait for `done`.
    Retried until it succeeds: a metastore that is not up yet, or a refusal (logged:
    an operator must look), keeps the writers waiting rather than risk a double."""

    def __init__(self, run: Callable[[], dict[str, int]]) -> None:
        self._run = run
        self.done = threading.Event()
        self.status = "waiting"

    def run(self, stop: threading.Event, retry_s: float = 5.0) -> None:
        while not stop.is_set():
            try:
                migrated = self._run()
            except Exception as exc:  # noqa: BLE001 - wait and retry, never write around it
                self.status = f"failed: {type(exc).__name__}: {exc}"[:500]
                log.error("migration of the former tables: %s; retrying", self.status)
                stop.wait(retry_s)
                continue
            self.status = f"migrated {migrated}" if migrated else "nothing to migrate"
            self.done.set()
            return


@dataclass
class Jobs:
    migration: Migration
    archivers: list[TopicArchiver]
    minutes: MinuteJob
    quality: QualityJob
    catalog: SqlCatalog | NoSqlCatalog
    maintenance: Maintenance


def build_jobs(s: StreamSettings) -> Jobs:
    lake = Lake(s.lake_url, s.storage_options())
    namespaces = {"raw": s.raw_schema, "curated": s.curated_schema}

    migrated = threading.Event()

    def table(spec: TableSpec, gate: threading.Event | None = migrated) -> IcebergTable:
        """A table handle of its own (a Thrift connection is not shared by threads);
        writers wait for the migration (`gate`)."""
        return IcebergTable(
            spec,
            catalog=connect(
                f"thrift://{s.metastore_host}:{s.metastore_port}", lake, s.iceberg_s3()
            ),
            lake=lake,
            namespaces=namespaces,
            zstd_level=s.zstd_level,
            gate=gate,
        )

    migration = Migration(lambda: migrate(s, lake, lambda spec: table(spec, gate=None)))
    migration.done = migrated

    def consumer(name: str) -> dict[str, object]:
        return {
            "bootstrap.servers": s.kafka_bootstrap_servers,
            "group.id": f"{s.consumer_group_prefix}.{name}",
        }

    common = {
        "rotate_rows": s.rotate_rows,
        "rotate_seconds": s.rotate_seconds,
        "bounds": s.time_bounds(),
        "max_payload_bytes": s.max_payload_bytes,
    }
    archivers = [
        TopicArchiver(
            table(READINGS),
            s.kafka_topic_readings,
            build=build_readings,
            consumer_config=consumer(READINGS.name),
            rejected=table(REJECTED),
            **common,  # type: ignore[arg-type]
        ),
        TopicArchiver(
            table(SENSORS),
            s.kafka_topic_sensors,
            build=build_sensors,
            consumer_config=consumer(SENSORS.name),
            **common,  # type: ignore[arg-type]
        ),
        TopicArchiver(
            table(REJECTED),
            s.kafka_topic_dlq,
            build=build_rejected,
            consumer_config=consumer(REJECTED.name),
            **common,  # type: ignore[arg-type]
        ),
    ]
    kafka = {"bootstrap.servers": s.kafka_bootstrap_servers}

    def emitter() -> Producer:
        """A producer of a job's emissions (each job its own: flushes do not mix)."""
        return Producer({**kafka, "enable.idempotence": True, "acks": "all", "linger.ms": 20})

    def sensor_list() -> Iterator[tuple[bytes | None, bytes | None]]:
        """iot.sensors read whole, as the jobs that need the sensor list read it."""
        return read_partitions(
            s.kafka_bootstrap_servers, s.kafka_topic_sensors, group=READBACK_GROUP
        )

    minutes = MinuteJob(
        table(READINGS_1M_REVISIONS),
        consumer_config={**kafka, "group.id": f"{s.consumer_group_prefix}.readings_1m"},
        producer=emitter(),
        ranges=SensorRanges(sensor_list, s.kafka_topic_sensors),
        readings_topic=s.kafka_topic_readings,
        out_topic=s.kafka_topic_1m,
        policy=WindowPolicy(
            lateness_s=s.window_lateness_seconds,
            commit_s=s.window_commit_seconds,
            idle_s=s.window_idle_seconds,
        ),
        bounds=s.time_bounds(),
        max_payload_bytes=s.max_payload_bytes,
    )

    quality = QualityJob(
        table(SENSOR_QUALITY_1M_REVISIONS),
        consumer_config={**kafka, "group.id": f"{s.consumer_group_prefix}.sensor_quality_1m"},
        producer=emitter(),
        sensors=SensorList(sensor_list, s.expected_interval_ms),
        minutes_topic=s.kafka_topic_1m,
        dlq_topic=s.kafka_topic_dlq,
        out_topic=s.kafka_topic_quality_1m,
        status_topic=s.kafka_topic_quality_status,
        commit_s=s.window_commit_seconds,
        bounds=s.time_bounds(),
    )

    def tables_ready() -> bool:
        return (
            all(a.recovered.is_set() for a in archivers)
            and minutes.recovered.is_set()
            and quality.recovered.is_set()
        )

    catalog = sql_catalog(s, wait_for=tables_ready)
    maintenance = Maintenance(
        [table(spec) for spec in TABLES],
        sql=catalog.execute,
        policy=MaintenancePolicy(
            interval_s=s.maintenance_interval_seconds,
            target_rows=s.compact_target_rows,
            min_files=s.compact_min_files,
            snapshot_retention_s=s.snapshot_retention_seconds,
            orphan_retention_s=s.orphan_retention_seconds,
        ),
        catalog=s.trino_catalog,
        wait_for=tables_ready,
    )
    return Jobs(migration, archivers, minutes, quality, catalog, maintenance)


class Job(Protocol):
    def run(self, stop: threading.Event) -> None: ...


class ThreadedJobs(Service):
    """Runs blocking jobs in threads; a job that dies crashes the worker (and the
    supervisor restarts it) rather than leaving a silent gap."""

    def __init__(self, jobs: list[tuple[str, Job]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.jobs = jobs
        self._stop_jobs = threading.Event()
        self._threads: list[threading.Thread] = []

    async def on_start(self) -> None:
        loop = asyncio.get_running_loop()
        for name, job in self.jobs:
            t = threading.Thread(target=self._run, args=(name, job, loop), name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self, name: str, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        try:
            job.run(self._stop_jobs)
        except Exception as exc:
            log.exception("job %s failed", name)
            asyncio.run_coroutine_threadsafe(self.crash(exc), loop)

    async def on_stop(self) -> None:
        self._stop_jobs.set()
        loop = asyncio.get_running_loop()
        for t in self._threads:
            await loop.run_in_executor(None, t.join, 60)


JOBS = build_jobs(settings)
DIRECTORY = SensorDirectory()
WATCH = DeadLetterWatch(settings.dead_letter_alert_per_minute)
register(
    app,
    sensors_topic=settings.kafka_topic_sensors,
    dlq_topic=settings.kafka_topic_dlq,
    directory=DIRECTORY,
    load_sensors=lambda: (
        (r.partition, r.offset, r.key, r.value)
        for r in read_all(
            settings.kafka_bootstrap_servers, settings.kafka_topic_sensors, group=READBACK_GROUP
        )
    ),
    watch=WATCH,
)


class ArchiveJobs(ThreadedJobs):
    def __init__(self, **kwargs: Any) -> None:
        jobs: list[tuple[str, Job]] = [("migration", JOBS.migration)]
        jobs += [(a.spec.name, a) for a in JOBS.archivers]
        jobs.append(("readings-1m", JOBS.minutes))
        jobs.append(("sensor-quality-1m", JOBS.quality))
        jobs.append(("sql-views", JOBS.catalog))
        jobs.append(("maintenance", JOBS.maintenance))
        super().__init__(jobs, **kwargs)


# A dependency of the app itself, not an `@app.service`: Faust starts those only once
# its own consumer group has an assignment and its table recovery is done, and a
# rebalance that stalls after a crash (a known Faust failure) would hold every job
# back. These jobs use their own Kafka consumers; they start with the app and stop
# with it (a job that dies still crashes the worker).
app.add_dependency(ArchiveJobs())


@app.page("/health")
async def health(web: Any, request: Any) -> Any:
    return web.json(
        {
            "healthy": True,
            "migration": JOBS.migration.status,
            "archive": {a.spec.name: a.stats.as_dict() for a in JOBS.archivers},
            "sql_views": JOBS.catalog.status,
            "maintenance": JOBS.maintenance.stats.as_dict(),
            "readings_1m": JOBS.minutes.stats.as_dict(),
            "sensor_quality_1m": JOBS.quality.stats.as_dict(),
            "sensors": DIRECTORY.summary(),
            "dead_letters": WATCH.summary(),
        }
    )


def _freshness() -> list[tuple[list[str], float]]:
    now = time.time()
    return [
        ([a.spec.name], now - a.stats.newest_event_unix)
        for a in JOBS.archivers
        if a.stats.newest_event_unix
    ]


METRICS = service_registry(
    CountersCollector(
        "iot_jobs_archive", lambda: [({"table": a.spec.name}, a.stats) for a in JOBS.archivers]
    ),
    CountersCollector("iot_jobs_readings_1m", lambda: [({}, JOBS.minutes.stats)]),
    CountersCollector("iot_jobs_quality_1m", lambda: [({}, JOBS.quality.stats)]),
    CountersCollector("iot_jobs_maintenance", lambda: [({}, JOBS.maintenance.stats)]),
    CountersCollector("iot_jobs", lambda: [({}, WATCH.counts())]),
    GaugeFunction(
        "iot_jobs_freshness_seconds",
        "now minus the newest event time archived in the table",
        ["table"],
        _freshness,
    ),
)


@app.page("/metrics")
async def metrics(web: Any, request: Any) -> Any:
    # aiohttp refuses a content_type with a charset in it: set the header itself.
    return web.bytes(render(METRICS), headers={"Content-Type": CONTENT_TYPE})


@app.page("/catalogue.json")
async def catalogue_json(web: Any, request: Any) -> Any:
    """The data catalogue (stream_jobs.catalogue) for the portal and for machines."""
    return web.json([d.as_dict() for d in datasets()])
