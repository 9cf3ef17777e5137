"""`make bench`: throughput, freshness, latency and size of the pipeline on this machine,
printed. The tables are Apache Iceberg tables in the Hive Metastore (stream_jobs.iceberg).

Stages, each against the real services started on free ports (Mosquitto, Kafka, and
PostgreSQL, the Hive Metastore and Trino, which every stage needs: the tables live there):
  archiver     a pre-filled Kafka topic -> the Iceberg table raw.readings (in-process
               TopicArchiver): rows committed (the offsets in the table's properties),
               commit latency, bytes a reading on disk
  minutes      the 1-minute job alone (pre-filled topic -> curated.readings_1m_revisions,
               the same figures), and the end of a minute -> its row in
               curated.readings_1m through the whole pipeline
  bridge       MQTT publish (mosquitto_pub, C, QoS 1) -> bridge -> Kafka
  e2e          MQTT publish -> bridge -> Kafka -> stream_jobs -> Iceberg, verified exact
  freshness    MQTT publish -> visible in Trino: iceberg raw.readings, and the live view
  queries      one sensor-day and a month of daily means over a backfilled history
  day          a day of commits (8,640 at ROTATE_SECONDS=10) at up to 60x speed, with a
               maintenance pass (compaction, expiry through Trino) every 30 commits:
               metadata size and commit latency, start vs end; and what the compaction
               policy rewrites over a day (planned, no I/O)
  compaction   a day of 100 million readings in 500 small files, one compaction pass:
               wall time, peak RSS, bytes a reading before and after
  conflicts    compactions of a past day while the writer's next commit to today lands
               at a random moment of the following ROTATE_SECONDS: how many land
Rates are given overall (first publish to last row committed, including the last
commit's rotation wait) and steady (between the counter's first and second-to-last
change). `--smoke` runs every stage with tiny sizes (a minute or two).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from iot_common.kafka_io import ensure_topics
from iot_common.topics import TopicSpec
from iot_data_generator.readings import reading_payload
from local.services import Stack
from stream_jobs.archive import TopicArchiver
from stream_jobs.resample import MinuteJob
from stream_jobs.tables import READINGS, READINGS_1M_REVISIONS, REJECTED
from tests.bench.iceberg_stages import (
    DEFAULTS,
    CommittedRows,
    TimedTable,
    bench_compaction,
    bench_compaction_conflicts,
    bench_day_of_commits,
    compaction_rewrites,
    latency_ms,
    open_table,
    percentile,
    table_figures,
)
from tests.integration.harness import (
    LIVE_UID,
    Pipeline,
    SqlServices,
    start_brokers,
    start_sql,
)

SENSORS = 100


def payloads(n: int, start: datetime) -> list[bytes]:
    """n readings of SENSORS sensors, one per sensor and second, like the generator's."""
    out = []
    for i in range(n):
        dt = start + timedelta(seconds=i // SENSORS, microseconds=(i * 7919) % 1_000_000)
        out.append(reading_payload(f"Sensor {i % SENSORS + 1}", dt, (i * 31) % 46))
    return out


def steady_rate(
    count: Callable[[], int], n: int, timeout: float = 1200, poll_s: float = 0.05
) -> float:
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
        time.sleep(poll_s)


def rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def busy_cores(window_s: float = 2.0) -> float:
    """Cores the whole machine kept busy over the window (from /proc/stat)."""

    def times() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    total0, idle0 = times()
    time.sleep(window_s)
    total1, idle1 = times()
    busy = 1 - (idle1 - idle0) / max(1, total1 - total0)
    return busy * (os.cpu_count() or 1)


def settle(max_s: float = 120.0, below: float = 0.2) -> None:
    """Wait until the machine is nearly idle (services done starting), at most max_s."""
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        busy = busy_cores()
        if busy < below:
            return
    print(f"machine still busy ({busy:.1f} cores) after {max_s:.0f} s: figures may be low")


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
        headers: list[tuple[str, str | bytes | None]] = [
            ("mqtt_topic", b"sensors"),
            ("received_at", received.isoformat().encode()),
        ]
        producer.produce(topic, p, key=f"Sensor {i % SENSORS + 1}".encode(), headers=headers)
        if i % 50_000 == 0:
            producer.poll(0)
    producer.flush()


def bench_archiver(stack: Stack, sql: SqlServices, work: Path, n: int) -> dict[str, Any]:
    """The readings archiver alone, as the stream jobs run it (with raw.rejected beside
    it), over a pre-filled topic: rows counted when their commit landed."""
    topic = "bench.archive"
    prefill(stack, topic, n)
    uid = f"arch{uuid.uuid4().hex[:6]}"
    lake_dir = work / "archiver-lake"
    table: TimedTable = open_table(sql, lake_dir, READINGS, uid, TimedTable)
    rejected = open_table(sql, lake_dir, REJECTED, uid)
    _, _ = table.table, rejected.table  # created before the clock starts
    archiver = TopicArchiver(
        table,
        topic,
        consumer_config={"bootstrap.servers": stack.bootstrap, "group.id": "bench"},
        rotate_rows=DEFAULTS.rotate_rows,
        rotate_seconds=DEFAULTS.rotate_seconds,
        rejected=rejected,
        bounds=DEFAULTS.time_bounds(),
        max_payload_bytes=DEFAULTS.max_payload_bytes,
    )
    stop = threading.Event()
    thread = threading.Thread(target=archiver.run, args=(stop,))
    t0 = time.perf_counter()
    thread.start()
    steady = steady_rate(lambda: table.committed(topic), n)
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    fig = table_figures(table.refresh())
    assert fig["rows"] == n == table.committed(topic), (fig["rows"], n)
    return {
        "readings": n,
        "per_s_steady": steady,
        "per_s_overall": n / elapsed,
        **latency_ms(table.commit_s),
        "rows_per_commit": n // max(1, len(table.commit_s)),
        "bytes_per_reading": fig["data_bytes"] / n,
        "files": fig["data_files"],
        "metadata_kb": fig["metadata_bytes"] / 1e3,
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


def bench_bridge(stack: Stack, sql: SqlServices, work: Path, n: int) -> dict[str, Any]:
    pipe = Pipeline(stack, work / "bridge", sql_services=sql)
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


def bench_end_to_end(stack: Stack, sql: SqlServices, work: Path, n: int) -> dict[str, Any]:
    pipe = Pipeline(
        stack,
        work / "e2e",
        sql_services=sql,
        env_extra={"ROTATE_SECONDS": str(DEFAULTS.rotate_seconds)},
    )
    pipe.work.mkdir(parents=True)
    pipe.start()
    committed = CommittedRows(sql, pipe.lake, pipe.uid, pipe.env["KAFKA_TOPIC_READINGS"])
    t0 = time.perf_counter()
    pub = Publishers(stack.mqtt_port, pipe.mqtt_topic, n, pipe.work)
    steady = steady_rate(committed, n, poll_s=0.25)
    elapsed = time.perf_counter() - t0
    pub.wait()
    table = pipe.table("readings")
    distinct = len(set(table["payload"].to_pylist()))
    fig = table_figures(committed.table())
    result = {
        "readings": n,
        "per_s_steady": steady,
        "per_s_overall": n / elapsed,
        "archived_rows": table.num_rows,
        "distinct_payloads": distinct,
        "bytes_per_reading": fig["data_bytes"] / n,
        "files": fig["data_files"],
        "bridge_rss_mb": rss_peak_mb(pipe.bridge.p.pid),  # type: ignore[union-attr]
        "jobs_rss_mb": rss_peak_mb(pipe.jobs.p.pid),  # type: ignore[union-attr]
    }
    pipe.stop()
    assert table.num_rows == n == distinct, result  # nothing lost, nothing doubled
    return result


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
    settings), in the Iceberg table raw.readings or, with `live`, in the live view
    raw.readings_live (the table, and the newest minute straight from Kafka)."""
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
        f"SELECT CAST(value AS bigint) FROM iceberg.raw.readings{'_live' if live else ''} "
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
    rows = pipe.sql("SELECT count(*) FROM iceberg.raw.readings")[0][0]
    last = pipe.sql("SELECT max(event_date) FROM iceberg.raw.readings")[0][0]
    queries = {
        "one_sensor_one_day": "SELECT ts, value FROM iceberg.raw.readings "
        f"WHERE sensor_id = 'Sensor 42' AND event_date = DATE '{last}'",
        # the same on ts: pruned by the hidden partitioning (day(ts)) before the statistics
        "one_sensor_one_day_by_ts": "SELECT ts, value FROM iceberg.raw.readings "
        f"WHERE sensor_id = 'Sensor 42' AND ts >= TIMESTAMP '{last} 00:00:00' "
        f"AND ts < TIMESTAMP '{last} 00:00:00' + INTERVAL '1' DAY",
        "daily_means_all_sensors_month": "SELECT sensor_id, event_date, avg(value) "
        "FROM iceberg.raw.readings "
        f"WHERE event_date > DATE '{last}' - INTERVAL '{days}' DAY GROUP BY 1, 2",
    }
    fig = table_figures(CommittedRows(sql, pipe.lake, pipe.uid, "").table())
    result: dict[str, Any] = {
        "readings": rows,
        "backfill_s": backfill_s,
        "backfill_per_s": rows / backfill_s,
        "data_mb": fig["data_bytes"] / 1e6,
        "bytes_per_reading": fig["data_bytes"] / rows,
        "files": fig["data_files"],
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


def bench_minutes(stack: Stack, sql: SqlServices, work: Path, n: int) -> dict[str, Any]:
    """The 1-minute job alone: a pre-filled topic through the windows to its Iceberg
    table; readings counted when the checkpoint that covers them landed."""
    topic = "bench.minutes"
    prefill(stack, topic, n)
    ensure_topics(stack.bootstrap, [TopicSpec("bench.sensors", 1, {"cleanup.policy": "compact"})])
    uid = f"min{uuid.uuid4().hex[:6]}"
    table: TimedTable = open_table(
        sql, work / "minutes-lake", READINGS_1M_REVISIONS, uid, TimedTable
    )
    _ = table.table  # created before the clock starts
    job = MinuteJob(
        table,
        bootstrap=stack.bootstrap,
        group="bench-minutes",
        readings_topic=topic,
        sensors_topic="bench.sensors",
        out_topic="bench.readings.1m",
        lateness_s=DEFAULTS.window_lateness_seconds,
        commit_s=DEFAULTS.window_commit_seconds,
        idle_s=DEFAULTS.window_idle_seconds,
        bounds=DEFAULTS.time_bounds(),
        max_payload_bytes=DEFAULTS.max_payload_bytes,
    )
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,))
    t0 = time.perf_counter()
    thread.start()
    steady = steady_rate(lambda: table.committed(topic), n)
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    fig = table_figures(table.refresh())
    return {
        "readings": n,
        "per_s_steady": steady,
        "per_s_overall": n / elapsed,
        "windows_emitted": job.stats["emitted"],
        **latency_ms(table.commit_s),
        "bytes_per_window": fig["data_bytes"] / max(1, fig["rows"]),
        "bytes_per_reading": fig["data_bytes"] / n,
        "files": fig["data_files"],
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
    query = "SELECT window_start FROM iceberg.curated.readings_1m WHERE sensor_id = 'Sensor 1'"
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


STAGES = [
    "archiver",
    "minutes",
    "bridge",
    "e2e",
    "freshness",
    "queries",
    "day",
    "compaction",
    "conflicts",
]
SMOKE = {
    "archiver": 20_000,
    "bridge": 2_000,
    "e2e": 2_000,
    "freshness": 4,
    "days": 2,
    "minutes": 20_000,
    "minute_latency": 1,
    "day_commits": 90,
    "compact_files": 4,
    "compact_rows": 20_000,
    "conflict_attempts": 2,
    "conflict_files": 4,
}


def show(name: str, r: dict[str, Any]) -> None:
    figures = ", ".join(
        f"{k}={v:,.2f}"
        if isinstance(v, float) and abs(v) < 10
        else f"{k}={v:,.1f}"
        if isinstance(v, float)
        else f"{k}={v:,}"
        for k, v in r.items()
    )
    print(f"{name:<40} {figures}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archiver", type=int, default=2_000_000, help="readings")
    parser.add_argument("--bridge", type=int, default=200_000, help="readings")
    parser.add_argument("--e2e", type=int, default=200_000, help="readings")
    parser.add_argument("--freshness", type=int, default=40, help="readings")
    parser.add_argument("--days", type=int, default=30, help="days of backfilled history")
    parser.add_argument("--minutes", type=int, default=1_000_000, help="readings (1m job)")
    parser.add_argument("--minute-latency", type=int, default=3, help="minutes watched")
    parser.add_argument("--day-commits", type=int, default=8_640, help="commits (a day: 8,640)")
    parser.add_argument("--day-sensors", type=int, default=10, help="sensors a commit holds")
    parser.add_argument("--day-speed", type=float, default=60.0, help="times real time")
    parser.add_argument("--compact-files", type=int, default=500, help="small files of the day")
    parser.add_argument("--compact-rows", type=int, default=200_000, help="readings a file")
    parser.add_argument(
        "--conflict-attempts", type=int, default=6, help="compactions beside a writer"
    )
    parser.add_argument("--conflict-files", type=int, default=10, help="files a compaction")
    parser.add_argument("--smoke", action="store_true", help="every stage with tiny sizes")
    parser.add_argument(
        "--only", choices=STAGES, action="append", help="run only these stages (repeatable)"
    )
    args = parser.parse_args()
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    stages = args.only or STAGES
    if {"bridge", "e2e"} & set(stages) and shutil.which("mosquitto_pub") is None:
        print(
            "mosquitto_pub not found (Debian package mosquitto-clients): "
            "skipping the bridge and end-to-end stages",
            flush=True,
        )
        stages = [s for s in stages if s not in ("bridge", "e2e")]
    print(f"machine: {machine()}", flush=True)
    results: dict[str, dict[str, Any]] = {}

    def record(name: str, r: dict[str, Any]) -> None:
        results[name] = r
        show(name, r)

    with tempfile.TemporaryDirectory(prefix="iot-bench-") as tmp:
        work = Path(tmp)
        stack, mosquitto, kafka = start_brokers(work / "brokers")
        sql = None
        try:
            # Every stage needs the metastore (the tables live there), most need Trino.
            sql = start_sql(work / "sql", kafka_port=stack.kafka_port)
            settle()  # Trino keeps a core busy for a while after it answers
            if "archiver" in stages:
                record(
                    "archiver alone (Kafka -> Iceberg)",
                    bench_archiver(stack, sql, work, args.archiver),
                )
            if "minutes" in stages:
                record(
                    "1-minute job alone (Kafka -> Iceberg)",
                    bench_minutes(stack, sql, work, args.minutes),
                )
                record(
                    "1-minute rows (end of minute -> Trino)",
                    bench_minute_latency(stack, sql, work, args.minute_latency),
                )
            if "bridge" in stages:
                record(
                    "bridge alone (MQTT QoS 1 -> Kafka)",
                    bench_bridge(stack, sql, work, args.bridge),
                )
            if "e2e" in stages:
                record("end to end (MQTT -> Iceberg)", bench_end_to_end(stack, sql, work, args.e2e))
            if "freshness" in stages:
                record(
                    "freshness (MQTT -> Trino, table)",
                    bench_freshness(stack, sql, work, args.freshness),
                )
                record(
                    "freshness, live view",
                    bench_freshness(stack, sql, work, args.freshness, live=True),
                )
            if "queries" in stages:
                record(
                    "queries (Trino, backfilled history)",
                    bench_queries(stack, sql, work, args.days),
                )
            if "day" in stages:
                record(
                    "a day of commits (metadata)",
                    bench_day_of_commits(
                        sql, work, args.day_commits, args.day_sensors, args.day_speed
                    ),
                )
                for sensors in (10, 100, 1000):
                    rows = sensors * int(DEFAULTS.rotate_seconds)
                    record(
                        f"compaction plan, a day of {sensors} sensors",
                        compaction_rewrites(rows),
                    )
            if "compaction" in stages:
                record(
                    "compaction of a day",
                    bench_compaction(sql, work, args.compact_files, args.compact_rows),
                )
            if "conflicts" in stages:
                record(
                    "compaction beside a writer",
                    bench_compaction_conflicts(
                        sql, work, args.conflict_attempts, args.conflict_files, args.compact_rows
                    ),
                )
        finally:
            if sql is not None:
                sql.stop()
            kafka.stop()
            mosquitto.stop()
    print()
    print(f"machine: {machine()}")
    for name, r in results.items():
        show(name, r)


if __name__ == "__main__":
    main()
