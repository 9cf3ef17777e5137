"""Composition root of the stream jobs: one Faust app running the archive jobs.

Faust provides the worker (CLI, lifecycle, signals, logging) and the web
server for /health. The jobs read Kafka in batches with confluent-kafka in
their own threads: Faust's per-event stream path measured about 5,000
events/s on our 2-core machines, ten times under the archive's target (see
docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import faust
from mode import Service

from stream_jobs.archive import SESSION_TIMEOUT_MS, Placement, TopicArchiver
from stream_jobs.catalog import SqlCatalog, sql_catalog
from stream_jobs.compaction import CompactedPlacement, Compactor, Metastore
from stream_jobs.lake import Lake
from stream_jobs.resample import MinuteJob
from stream_jobs.settings import StreamSettings
from stream_jobs.tables import READINGS, REJECTED, SENSORS

log = logging.getLogger(__name__)

settings = StreamSettings()

app = faust.App(
    settings.app_id,
    broker=";".join(f"kafka://{h}" for h in settings.kafka_bootstrap_servers.split(",")),
    web_port=settings.web_port,
    web_host="0.0.0.0",
    datadir=settings.datadir,
    topic_replication_factor=1,
    # A worker that died leaves Faust's own group after this long; Faust's 60 s
    # default held every restart after a crash for a minute before the jobs began.
    broker_session_timeout=SESSION_TIMEOUT_MS / 1000,
)


@dataclass
class Jobs:
    archivers: list[TopicArchiver]
    catalog: SqlCatalog | None
    compactor: Compactor | None
    minutes: MinuteJob


def build_jobs(s: StreamSettings) -> Jobs:
    lake = Lake(s.lake_url, s.storage_options())
    catalog = sql_catalog(s, lake)
    placement: Placement = Placement()
    if s.compaction_enabled and catalog is not None and s.metastore_host:
        placement = CompactedPlacement(
            Metastore(s.metastore_host, s.metastore_port), s.raw_schema, lake, s.compact_after_days
        )
    jobs = [
        (READINGS, s.kafka_topic_readings),
        (SENSORS, s.kafka_topic_sensors),
        (REJECTED, s.kafka_topic_dlq),
    ]
    archivers = [
        TopicArchiver(
            spec,
            topic,
            lake,
            {
                "bootstrap.servers": s.kafka_bootstrap_servers,
                "group.id": f"{s.consumer_group_prefix}.{spec.name}",
            },
            rotate_rows=s.rotate_rows,
            rotate_seconds=s.rotate_seconds,
            zstd_level=s.zstd_level,
            on_partition=catalog.partition_added if catalog else None,
            placement=placement,
            bounds=s.time_bounds(),
            max_payload_bytes=s.max_payload_bytes,
        )
        for spec, topic in jobs
    ]
    compactor = None
    if catalog is not None and isinstance(placement, CompactedPlacement):
        sql_ready = catalog.ready

        def ready() -> bool:
            return sql_ready.is_set() and all(a.recovered.is_set() for a in archivers)

        compactor = Compactor(
            lake,
            placement,
            [spec for spec, _ in jobs if spec.partition_column],
            interval_s=s.compact_interval_seconds,
            grace_s=s.compact_grace_seconds,
            min_files=s.compact_min_files,
            zstd_level=s.zstd_level,
            wait_for=ready,
        )
    minutes = MinuteJob(
        lake,
        s.kafka_bootstrap_servers,
        f"{s.consumer_group_prefix}.readings_1m",
        s.kafka_topic_readings,
        s.kafka_topic_sensors,
        s.kafka_topic_1m,
        lateness_s=s.window_lateness_seconds,
        commit_s=s.window_commit_seconds,
        idle_s=s.window_idle_seconds,
        zstd_level=s.zstd_level,
        on_partition=catalog.partition_added if catalog else None,
        bounds=s.time_bounds(),
        max_payload_bytes=s.max_payload_bytes,
    )
    return Jobs(archivers, catalog, compactor, minutes)


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


@app.service
class ArchiveJobs(ThreadedJobs):
    def __init__(self, **kwargs: Any) -> None:
        jobs: list[tuple[str, Job]] = [(a.spec.name, a) for a in JOBS.archivers]
        if JOBS.catalog is not None:
            jobs.append(("sql-catalog", JOBS.catalog))
        if JOBS.compactor is not None:
            jobs.append(("compaction", JOBS.compactor))
        jobs.append(("readings-1m", JOBS.minutes))
        super().__init__(jobs, **kwargs)


@app.page("/health")
async def health(web: Any, request: Any) -> Any:
    catalog, compactor = JOBS.catalog, JOBS.compactor
    return web.json(
        {
            "healthy": True,
            "archive": {a.spec.name: a.stats.__dict__ for a in JOBS.archivers},
            "sql_catalog": "off"
            if catalog is None
            else ("ready" if catalog.ready.is_set() else "waiting"),
            "compactions": None if compactor is None else compactor.compactions,
            "readings_1m": JOBS.minutes.stats,
        }
    )
