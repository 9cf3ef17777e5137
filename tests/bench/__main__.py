"""`make bench`: throughput, freshness and latency of the pipeline on this machine, printed.

Stages, each against the real services started on free ports:
  archiver alone  a pre-filled Kafka topic -> Parquet (in-process TopicArchiver)
  bridge alone    MQTT publish (mosquitto_pub, C, QoS 1) -> bridge -> Kafka
  end to end      MQTT publish -> bridge -> Kafka -> stream_jobs -> Parquet, verified exact
  freshness       MQTT publish -> visible in Trino: raw.readings, and the live view
  queries         one sensor-day and a month of daily means over a backfilled history
  minutes         the 1-minute job alone (pre-filled topic), and end of a minute ->
                  its row in curated.readings_1m through the whole pipeline
Rates are given overall (first publish to last row, including the last file's
rotation wait) and steady (between 10% and 90% of the readings).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow.dataset as ds
from confluent_kafka import Consumer, Producer, TopicPartition

from iot_data_generator.readings import reading_payload
from local.services import Stack
from mqtt_bridge.kafka_io import TopicSpec, ensure_topics
from stream_jobs.archive import TopicArchiver
from stream_jobs.lake import Lake
from stream_jobs.resample import MinuteJob
from stream_jobs.settings import StreamSettings
from stream_jobs.tables import READINGS
from tests.integration.harness import (
    LIVE_UID,
    Pipeline,
    SqlServices,
    start_brokers,
    start_sql,
)

SENSORS = 100
DEFAULTS = StreamSettings(_env_file=None)  # type: ignore[call-arg]


def payloads(n: int, start: datetime) -> list[bytes]:
    """n readings of SENSORS sensors, one per sensor and second, like the generator's."""
    out = []
    for i in range(n):
        dt = start + timedelta(seconds=i // SENSORS, microseconds=(i * 7919) % 1_000_000)
        out.append(reading_payload(f"Sensor {i % SENSORS + 1}", dt, (i * 31) % 46))
    return out


def steady_rate(count: Callable[[], int], n: int, timeout: float = 1200) -> float:
    """Wait until count() reaches n; return the rate between its first and its
    second-to-last change. That leaves out start-up and the last file's rotation
    wait, which a stream that goes on never sees."""
    changes: list[tuple[float, int]] = []
    deadline = time.perf_counter() + timeout
    while True:
        done = count()
        now = time.perf_counter()
        if not changes or done != changes[-1][1]:
            changes.append((now, done))
        if done >= n:
            if len(changes) < 4:
                return float("nan")
            (t1, c1), (t2, c2) = changes[1], changes[-2]
            return (c2 - c1) / (t2 - t1)
        if now > deadline:
            raise TimeoutError(f"only {done} of {n} after {timeout:.0f} s")
        time.sleep(0.05)


def lake_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "raw" / "readings").rglob("*.parquet"))


def rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}"


def prefill(stack: Stack, topic: str, n: int) -> None:
    """n readings of SENSORS sensors in `topic`, as the bridge would have produced them."""
    ensure_topics(stack.bootstrap, [TopicSpec(topic, 3)])
    producer = Producer(
        {
            "bootstrap.servers": stack.bootstrap,
            "linger.ms": 50,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    rng = random.Random(1)
    for i, p in enumerate(payloads(n, datetime(2026, 11, 24, 12))):
        # received 2-9 ms after dt, as over MQTT: realistic entropy for the size figure
        received = datetime.fromisoformat(orjson.loads(p)["dt"]) + timedelta(
            microseconds=rng.randint(2_000, 9_000)
        )
        headers = [("mqtt_topic", b"sensors"), ("received_at", received.isoformat().encode())]
        producer.produce(topic, p, key=f"Sensor {i % SENSORS + 1}".encode(), headers=headers)
        if i % 50_000 == 0:
            producer.poll(0)
    producer.flush()


def bench_archiver(stack: Stack, work: Path, n: int) -> dict[str, Any]:
    topic = "bench.archive"
    prefill(stack, topic, n)
    lake_dir = work / "archiver-lake"
    archiver = TopicArchiver(
        READINGS,
        topic,
        Lake(str(lake_dir)),
        {"bootstrap.servers": stack.bootstrap, "group.id": "bench"},
        rotate_rows=DEFAULTS.rotate_rows,
        rotate_seconds=DEFAULTS.rotate_seconds,
        zstd_level=DEFAULTS.zstd_level,
    )
    stop = threading.Event()
    thread = threading.Thread(target=archiver.run, args=(stop,))
    t0 = time.perf_counter()
    thread.start()
    steady = steady_rate(lambda: archiver.stats.rows, n)
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    rows = ds.dataset(str(lake_dir / "raw" / "readings"), format="parquet").count_rows()
    assert rows == n, (rows, n)
    return {
        "readings": n,
        "per_s_steady": steady,
        "per_s_overall": n / elapsed,
        "bytes_per_reading": lake_bytes(lake_dir) / n,
        "files": archiver.stats.files,
    }


class Publishers:
    """Parallel `mosquitto_pub -l` (C, QoS 1), each under 65,535 lines: at EOF it
    disconnects when the PUBACK of its last message id arrives, and ids wrap at
    65,535, so a longer input is cut short (measured with Mosquitto 2.0.11)."""

    CHUNK = 50_000

    def __init__(self, port: int, topic: str, n: int, work: Path) -> None:
        # All in the past (one reading per sensor and second): the contract
        # refuses a dt more than DT_MAX_AHEAD_SECONDS ahead of its receive time.
        start = datetime.utcnow() - timedelta(seconds=n // SENSORS + 300)
        lines = [p + b"\n" for p in payloads(n, start)]
        self.procs = []
        for i in range(0, n, self.CHUNK):
            chunk = work / f"publish.{i}.txt"
            chunk.write_bytes(b"".join(lines[i : i + self.CHUNK]))
            with open(chunk, "rb") as f:
                self.procs.append(
                    subprocess.Popen(
                        ["mosquitto_pub", "-p", str(port), "-t", topic, "-q", "1", "-l"], stdin=f
                    )
                )

    def wait(self) -> None:
        for p in self.procs:
            p.wait()


def kafka_count(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-count"})
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        return sum(
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        )
    finally:
        c.close()


def archived_rows(lake: Path) -> int:
    return sum(
        orjson.loads(ckpt.read_bytes())["next_offset"]
        for ckpt in (lake / "_checkpoints" / "readings").glob("*.json")
    )


def bench_bridge(stack: Stack, work: Path, n: int) -> dict[str, Any]:
    pipe = Pipeline(stack, work / "bridge")
    pipe.work.mkdir(parents=True)
    pipe.bridge.start()
    pipe.wait_healthy(pipe.bridge, "HEALTH_PORT")
    topic = pipe.env["KAFKA_TOPIC_READINGS"]
    t0 = time.perf_counter()
    pub = Publishers(stack.mqtt_port, pipe.mqtt_topic, n, pipe.work)
    steady = steady_rate(lambda: kafka_count(stack.bootstrap, topic), n)
    elapsed = time.perf_counter() - t0
    pub.wait()
    rss = rss_peak_mb(pipe.bridge.p.pid)  # type: ignore[union-attr]
    pipe.stop()
    return {
        "readings": n,
        "per_s_steady": steady,
        "per_s_overall": n / elapsed,
        "bridge_rss_mb": rss,
    }


def bench_end_to_end(stack: Stack, work: Path, n: int) -> dict[str, Any]:
    pipe = Pipeline(stack, work / "e2e", env_extra={"ROTATE_SECONDS": str(DEFAULTS.rotate_seconds)})
    pipe.work.mkdir(parents=True)
    pipe.start()
    t0 = time.perf_counter()
    pub = Publishers(stack.mqtt_port, pipe.mqtt_topic, n, pipe.work)
    steady = steady_rate(lambda: archived_rows(pipe.lake), n)
    elapsed = time.perf_counter() - t0
    pub.wait()
    table = pipe.table("readings")
    distinct = len(set(table["payload"].to_pylist()))
    result = {
        "readings": n,
        "per_s_steady": steady,
        "per_s_overall": n / elapsed,
        "archived_rows": table.num_rows,
        "distinct_payloads": distinct,
        "bytes_per_reading": lake_bytes(pipe.lake) / n,
        "bridge_rss_mb": rss_peak_mb(pipe.bridge.p.pid),  # type: ignore[union-attr]
        "jobs_rss_mb": rss_peak_mb(pipe.jobs.p.pid),
    }  # type: ignore[union-attr]
    pipe.stop()
    assert table.num_rows == n == distinct, result  # nothing lost, nothing doubled
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def sql_pipeline_with_client(
    stack: Stack, sql: SqlServices, work: Path, env: dict[str, str], **kw: Any
) -> tuple[Pipeline, Any]:
    """A started pipeline on the SQL services, and an MQTT client on its broker."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    pipe = Pipeline(stack, work, sql_services=sql, env_extra=env, **kw)
    pipe.work.mkdir(parents=True)
    pipe.start()
    pipe.wait_sql_ready()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", stack.mqtt_port)
    client.loop_start()
    return pipe, client


def bench_freshness(
    stack: Stack, sql: SqlServices, work: Path, n: int, live: bool = False
) -> dict[str, Any]:
    """Publish single readings and time until each is visible in Trino (default
    settings), in raw.readings or, with `live`, in the live view raw.readings_live."""
    pipe, client = sql_pipeline_with_client(
        stack,
        sql,
        work / ("fresh-live" if live else "fresh"),
        {"ROTATE_SECONDS": str(DEFAULTS.rotate_seconds)},
        **({"uid": LIVE_UID} if live else {}),
    )
    published: dict[int, float] = {}
    seen: dict[int, float] = {}
    today = datetime.utcnow().date()
    query = (
        f"SELECT CAST(value AS bigint) FROM hive.raw.readings{'_live' if live else ''} "
        f"WHERE sensor_id = 'fresh' AND event_date = DATE '{today}'"
    )
    next_publish = time.monotonic()
    while len(seen) < n:
        now = time.monotonic()
        if len(published) < n and now >= next_publish:
            i = len(published)
            payload = reading_payload("fresh", datetime.utcnow(), i)
            client.publish(pipe.mqtt_topic, payload, qos=1).wait_for_publish()
            published[i] = time.monotonic()
            next_publish = now + 0.7
        for (value,) in pipe.sql(query):
            seen.setdefault(value, time.monotonic())
        if now - next_publish > 120:
            raise TimeoutError("readings did not become visible")
    client.loop_stop()
    pipe.stop()
    lags = [seen[i] - published[i] for i in range(n)]
    return {
        "readings": n,
        "p50_s": percentile(lags, 0.5),
        "p95_s": percentile(lags, 0.95),
        "max_s": max(lags),
        "rotate_seconds": DEFAULTS.rotate_seconds,
    }


def bench_queries(stack: Stack, sql: SqlServices, work: Path, days: int) -> dict[str, Any]:
    """Backfill 100 sensors x `days` days at one reading per 10 s, then time BI queries."""
    pipe = Pipeline(stack, work / "history", sql_services=sql)
    pipe.work.mkdir(parents=True)
    env = {**os.environ, **pipe.env}
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "stream_jobs.backfill",
            "--sensors",
            "100",
            "--days",
            str(days),
            "--interval",
            "10",
        ],
        env=env,
        check=True,
    )
    backfill_s = time.perf_counter() - t0
    rows = pipe.sql("SELECT count(*) FROM hive.raw.readings")[0][0]
    last = pipe.sql("SELECT max(event_date) FROM hive.raw.readings")[0][0]
    queries = {
        "one_sensor_one_day": "SELECT ts, value FROM hive.raw.readings "
        f"WHERE sensor_id = 'Sensor 42' AND event_date = DATE '{last}'",
        "daily_means_all_sensors_month": "SELECT sensor_id, event_date, avg(value) "
        "FROM hive.raw.readings "
        f"WHERE event_date > DATE '{last}' - INTERVAL '{days}' DAY GROUP BY 1, 2",
    }
    result: dict[str, Any] = {
        "readings": rows,
        "backfill_s": backfill_s,
        "backfill_per_s": rows / backfill_s,
        "lake_mb": lake_bytes(pipe.lake) / 1e6,
    }
    for name, query in queries.items():
        timings = []
        for _ in range(5):
            t = time.perf_counter()
            out = pipe.sql(query)
            timings.append(time.perf_counter() - t)
        assert out, name
        result[f"{name}_median_s"] = percentile(timings, 0.5)
        result[f"{name}_rows"] = len(out)
    return result


def bench_minutes(stack: Stack, work: Path, n: int) -> dict[str, Any]:
    """The 1-minute job alone: a pre-filled topic through the windows to the lake."""
    topic = "bench.minutes"
    prefill(stack, topic, n)
    ensure_topics(stack.bootstrap, [TopicSpec("bench.sensors", 1, {"cleanup.policy": "compact"})])
    job = MinuteJob(
        Lake(str(work / "minutes-lake")),
        stack.bootstrap,
        "bench-minutes",
        topic,
        "bench.sensors",
        "bench.readings.1m",
        lateness_s=5,
        commit_s=2,
        idle_s=5,
        zstd_level=DEFAULTS.zstd_level,
    )
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,))
    t0 = time.perf_counter()
    thread.start()
    steady = steady_rate(lambda: int(job.stats["readings"]), n)
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    return {
        "readings": n,
        "per_s_steady": steady,
        "per_s_overall": n / elapsed,
        "windows_emitted": job.stats["emitted"],
    }


def bench_minute_latency(
    stack: Stack, sql: SqlServices, work: Path, minutes: int
) -> dict[str, Any]:
    """From the end of a minute until its row is in curated.readings_1m (defaults)."""
    pipe, client = sql_pipeline_with_client(
        stack,
        sql,
        work / "minute-latency",
        {
            "ROTATE_SECONDS": str(DEFAULTS.rotate_seconds),
            "WINDOW_LATENESS_SECONDS": str(DEFAULTS.window_lateness_seconds),
            "WINDOW_COMMIT_SECONDS": str(DEFAULTS.window_commit_seconds),
            "WINDOW_IDLE_SECONDS": str(DEFAULTS.window_idle_seconds),
        },
    )
    query = "SELECT window_start FROM hive.curated.readings_1m WHERE sensor_id = 'Sensor 1'"
    seen: dict[datetime, float] = {}
    started = datetime.utcnow()
    first_end = started.replace(second=0, microsecond=0) + timedelta(minutes=1)
    ends = [first_end + timedelta(minutes=i) for i in range(minutes)]
    next_publish = time.monotonic()
    while len([e for e in ends if e in seen]) < len(ends):
        if time.monotonic() >= next_publish:  # one reading a second, as the generator does
            payload = reading_payload("Sensor 1", datetime.utcnow(), 20)
            client.publish(pipe.mqtt_topic, payload, qos=1)
            next_publish += 1.0
        for (start,) in pipe.sql(query):
            end = start + timedelta(minutes=1)
            if end not in seen:
                # wall time when the row was seen, as an offset from the minute's end
                seen[end] = (datetime.utcnow() - end).total_seconds()
        time.sleep(0.2)
        if datetime.utcnow() > ends[-1] + timedelta(minutes=2):
            raise TimeoutError("minutes did not appear")
    client.loop_stop()
    pipe.stop()
    lags = [seen[e] for e in ends]
    return {
        "minutes": len(lags),
        "p50_s": percentile(lags, 0.5),
        "max_s": max(lags),
        "lateness_s": DEFAULTS.window_lateness_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--archiver", type=int, default=2_000_000, help="readings")
    parser.add_argument("--bridge", type=int, default=200_000, help="readings")
    parser.add_argument("--e2e", type=int, default=200_000, help="readings")
    parser.add_argument("--freshness", type=int, default=40, help="readings")
    parser.add_argument("--days", type=int, default=30, help="days of backfilled history")
    parser.add_argument("--minutes", type=int, default=1_000_000, help="readings (1m job)")
    parser.add_argument(
        "--only",
        choices=["archiver", "bridge", "e2e", "freshness", "queries", "minutes"],
        action="append",
        help="run only these stages (repeatable)",
    )
    args = parser.parse_args()
    stages = args.only or ["archiver", "bridge", "e2e", "freshness", "queries", "minutes"]
    print(f"machine: {machine()}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="iot-bench-") as tmp:
        work = Path(tmp)
        stack, mosquitto, kafka = start_brokers(work / "brokers")
        try:
            if "archiver" in stages:
                results["archiver alone (Kafka -> Parquet)"] = bench_archiver(
                    stack, work, args.archiver
                )
            if "bridge" in stages:
                results["bridge alone (MQTT QoS 1 -> Kafka)"] = bench_bridge(
                    stack, work, args.bridge
                )
            if "e2e" in stages:
                results["end to end (MQTT -> Parquet)"] = bench_end_to_end(stack, work, args.e2e)
            if "minutes" in stages:
                results["1-minute job alone (Kafka -> windows)"] = bench_minutes(
                    stack, work, args.minutes
                )
            if {"freshness", "queries", "minutes"} & set(stages):
                sql = start_sql(work / "sql", kafka_port=stack.kafka_port)
                try:
                    if "freshness" in stages:
                        results["freshness (MQTT -> Trino)"] = bench_freshness(
                            stack, sql, work, args.freshness
                        )
                        results["freshness, live view"] = bench_freshness(
                            stack, sql, work, args.freshness, live=True
                        )
                    if "minutes" in stages:
                        results["1-minute rows (end of minute -> Trino)"] = bench_minute_latency(
                            stack, sql, work, 3
                        )
                    if "queries" in stages:
                        results["queries (Trino, backfilled history)"] = bench_queries(
                            stack, sql, work, args.days
                        )
                finally:
                    sql.stop()
        finally:
            kafka.stop()
            mosquitto.stop()
    print()
    for name, r in results.items():
        figures = ", ".join(
            f"{k}={v:,.1f}" if isinstance(v, float) else f"{k}={v:,}" for k, v in r.items()
        )
        print(f"{name:<36} {figures}", flush=True)


if __name__ == "__main__":
    main()
