"""What the bench's stages share: figures (rates, percentiles, latencies, memory),
Iceberg table helpers (timed commits, committed rows, sizes on disk), synthetic
readings, publishers and pipelines, the printed line of a result (`show`), and the
start-up of the services a run needs (`services`).

Everything here runs in the bench process against the real services that
`tests.integration.harness` starts on free ports.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Producer
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from iot_common.kafka_io import ensure_topics
from iot_common.topics import TopicSpec
from iot_data_generator.readings import reading_payload
from local.services import Stack
from stream_jobs import backfill
from stream_jobs.iceberg import OFFSET_PREFIX, IcebergTable, committed_offsets, connect
from stream_jobs.lake import Lake
from stream_jobs.maintenance import Maintenance
from stream_jobs.settings import StreamSettings
from stream_jobs.tables import READINGS, TableSpec
from tests.integration.harness import (
    TEST_PUBLISHER,
    Pipeline,
    SqlServices,
    add_account,
    start_brokers,
    start_sql,
)

DEFAULTS = StreamSettings(_env_file=None)
US = 1_000_000
SENSORS = 100

# What a stage prints and keeps: record(name, figures).
Record = Callable[[str, dict[str, Any]], None]


# -- services -----------------------------------------------------------------------------

# What a stage needs (Stage.needs in __main__): services the run starts, and commands.
BROKERS = "brokers"  # Mosquitto and Kafka (harness.start_brokers)
SQL = "sql"  # PostgreSQL, the Hive Metastore and Trino (harness.start_sql)
MOSQUITTO_PUB = "mosquitto_pub"  # a command: Debian package mosquitto-clients
KCAT = "kcat"  # a command: Debian package kcat (the bridge stage's C pipe)


@dataclass
class BenchEnv:
    """What a stage runs against: the run's work directory and its services."""

    work: Path
    _stack: Stack | None = None
    _sql: SqlServices | None = None

    @property
    def stack(self) -> Stack:
        if self._stack is None:
            raise RuntimeError("the brokers were not started: add BROKERS to the stage's needs")
        return self._stack

    @property
    def sql(self) -> SqlServices:
        if self._sql is None:
            raise RuntimeError("the SQL services were not started: add SQL to the stage's needs")
        return self._sql


@contextlib.contextmanager
def services(work: Path, needs: set[str]) -> Iterator[BenchEnv]:
    """Start the services in `needs` on free ports under `work`, stop them on exit.
    The SQL services need the brokers too: Trino's Kafka catalog (the live view)
    reads Kafka."""
    if not needs & {BROKERS, SQL}:
        yield BenchEnv(work)
        return
    stack, mosquitto, kafka = start_brokers(work / "brokers")
    sql = None
    try:
        if SQL in needs:
            # Every stage needs the metastore (the tables live there), most need Trino.
            sql = start_sql(work / "sql", kafka_port=stack.kafka_port)
            settle()  # Trino keeps a core busy for a while after it answers
        yield BenchEnv(work, stack, sql)
    finally:
        if sql is not None:
            sql.stop()
        kafka.stop()
        mosquitto.stop()


# -- figures ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_ms(durations: list[float], prefix: str = "commit") -> dict[str, Any]:
    """Median and p95 of durations in seconds, as milliseconds."""
    return {
        f"{prefix}s": len(durations),
        f"{prefix}_median_ms": percentile(durations, 0.5) * 1000,
        f"{prefix}_p95_ms": percentile(durations, 0.95) * 1000,
    }


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


def vm_kib(field: str) -> int:
    """A Vm* line of /proc/self/status (VmRSS, VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


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


def show(name: str, r: dict[str, Any]) -> None:
    """One result on one line: its name, then its figures."""
    figures = ", ".join(
        f"{k}={v:,.2f}"
        if isinstance(v, float) and abs(v) < 10
        else f"{k}={v:,.1f}"
        if isinstance(v, float)
        else f"{k}={v:,}"
        for k, v in r.items()
    )
    print(f"{name:<40} {figures}", flush=True)


# -- tables -------------------------------------------------------------------------------


def metastore_uri(sql: SqlServices) -> str:
    return f"thrift://127.0.0.1:{sql.stack.metastore_port}"


def namespaces(uid: str) -> dict[str, str]:
    """The SQL schemas of a bench run, as Pipeline names them (raw_<uid>, curated_<uid>)."""
    return {"raw": f"raw_{uid}", "curated": f"curated_{uid}"}


class TimedTable(IcebergTable):
    """An IcebergTable that times its commits (the whole call: the metastore commit,
    pyiceberg's retries on conflicts, ours on errors) and keeps the Kafka offsets it
    committed, so that committed rows are counted from what landed in the table."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commit_s: list[float] = []
        self.landed: dict[str, int] = {}  # offset property -> value, as committed

    def commit(self, files: list[str], properties: Mapping[str, str], **kwargs: Any) -> None:
        t0 = time.perf_counter()
        super().commit(files, properties, **kwargs)
        self.commit_s.append(time.perf_counter() - t0)
        for key, value in properties.items():
            if key.startswith(OFFSET_PREFIX):
                self.landed[key] = int(value)

    def committed(self, topic: str) -> int:
        """Records of `topic` below the committed offsets (a topic written from offset 0)."""
        prefix = f"{OFFSET_PREFIX}{topic}."
        return sum(v for k, v in list(self.landed.items()) if k.startswith(prefix))


def open_table(
    sql: SqlServices,
    lake_dir: Path,
    spec: TableSpec,
    uid: str,
    cls: type[IcebergTable] = IcebergTable,
) -> Any:
    """A handle on one of our tables in schemas of `uid` (its own metastore connection)."""
    lake = Lake(str(lake_dir))
    return cls(
        spec,
        catalog=connect(metastore_uri(sql), lake),
        lake=lake,
        namespaces=namespaces(uid),
        zstd_level=DEFAULTS.zstd_level,
    )


def data_files(table: Table) -> list[DataFile]:
    """The data files of the table's current snapshot."""
    return [task.file for task in table.scan().plan_files()]


def table_figures(table: Table) -> dict[str, int]:
    """Rows, data bytes and files of the current snapshot, and the metadata on disk."""
    files = data_files(table)
    meta_dir = Path(urlparse(table.location()).path) / "metadata"
    meta = [p.stat().st_size for p in meta_dir.iterdir()] if meta_dir.exists() else []
    current = table.current_snapshot()
    return {
        "rows": sum(f.record_count for f in files),
        "data_bytes": sum(f.file_size_in_bytes for f in files),
        "data_files": len(files),
        "snapshots": len(table.metadata.snapshots),
        "manifests": len(current.manifests(table.io)) if current else 0,
        "metadata_files": len(meta),
        "metadata_bytes": sum(meta),
        "metadata_json_bytes": Path(urlparse(table.metadata_location).path).stat().st_size,
    }


class CommittedRows:
    """Rows of a topic committed to a pipeline's table: the sum of the offsets in its
    table properties, read from the metastore (0 before the table exists)."""

    def __init__(self, sql: SqlServices, lake_dir: Path, uid: str, topic: str) -> None:
        self.catalog = connect(metastore_uri(sql), Lake(str(lake_dir)))
        self.ident = f"{namespaces(uid)['raw']}.{READINGS.name}"
        self.topic = topic

    def __call__(self) -> int:
        try:
            table = self.catalog.load_table(self.ident)
        except NoSuchTableError:
            return 0
        return sum(committed_offsets(table.properties, self.topic).values())

    def table(self) -> Table:
        return self.catalog.load_table(self.ident)


class GroupTimedMaintenance(Maintenance):
    """The maintenance, recording the time and the peak RSS after each rewritten group."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.groups: list[tuple[float, int, int]] = []  # (seconds, rows, peak RSS KiB)

    def rewrite(self, t: IcebergTable, files: list[DataFile]) -> None:
        t0 = time.perf_counter()
        super().rewrite(t, files)
        rows = sum(f.record_count for f in files)
        self.groups.append((time.perf_counter() - t0, rows, vm_kib("VmHWM")))


# -- synthetic readings -------------------------------------------------------------------


def payloads(n: int, start: datetime) -> list[bytes]:
    """n readings of SENSORS sensors, one per sensor and second, like the generator's."""
    out = []
    for i in range(n):
        dt = start + timedelta(seconds=i // SENSORS, microseconds=(i * 7919) % 1_000_000)
        out.append(reading_payload(f"Sensor {i % SENSORS + 1}", dt, (i * 31) % 46))
    return out


def readings_slice(
    day: date, first: int, n: int, sensors: int, tick_us: int, seed: int
) -> pa.Table:
    """stream_jobs.backfill.readings_slice with Kafka lineage as the archiver writes
    it (3 partitions by sensor, growing offsets) and the generator's MQTT topic."""
    rows = backfill.readings_slice(day, first, n, sensors, tick_us, seed)
    index = pc.add(pa.array(range(n), pa.int64()), first)
    sensor = pc.add(pc.subtract(index, pc.multiply(pc.divide(index, sensors), sensors)), 1)
    partition = pc.cast(pc.subtract(sensor, pc.multiply(pc.divide(sensor, 3), 3)), pa.int32())
    for name, column in (
        ("mqtt_topic", pa.array(["sensors"] * n, pa.string())),
        ("kafka_partition", partition),
        ("kafka_offset", pc.divide(index, 3)),
    ):
        rows = rows.set_column(rows.schema.get_field_index(name), name, column)
    return rows


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


# -- publishers and pipelines -------------------------------------------------------------


class Publishers:
    """Parallel `mosquitto_pub -l` (C, QoS 1), each under 65,535 lines: at EOF it
    disconnects when the PUBACK of its last message id arrives, and ids wrap at
    65,535, so a longer input is cut short (measured with Mosquitto 2.0.11)."""

    CHUNK = 50_000

    def __init__(self, stack: Stack, topic: str, n: int, work: Path) -> None:
        # All in the past (one reading per sensor and second): the contract
        # refuses a dt more than DT_MAX_AHEAD_SECONDS ahead of its receive time.
        start = datetime.utcnow() - timedelta(seconds=n // SENSORS + 300)
        lines = [p + b"\n" for p in payloads(n, start)]
        self.procs = []
        for i in range(0, n, self.CHUNK):
            chunk = work / f"publish.{i}.txt"
            chunk.write_bytes(b"".join(lines[i : i + self.CHUNK]))
            # One account each: the broker makes the client id the username.
            account = add_account(
                stack, f"bench-pub-{i}-{uuid.uuid4().hex[:6]}", (("write", topic),)
            )
            login = ["-u", account.username, "-P", account.password]
            argv = ["mosquitto_pub", "-p", str(stack.mqtt_port), *login, "-t", topic, "-q", "1"]
            with open(chunk, "rb") as f:
                self.procs.append(subprocess.Popen([*argv, "-l"], stdin=f))

    def wait(self) -> None:
        for p in self.procs:
            p.wait()

    def running(self) -> bool:
        """True while any publisher still runs."""
        return any(p.poll() is None for p in self.procs)


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
    client = mqtt.Client(CallbackAPIVersion.VERSION2, TEST_PUBLISHER.username)
    client.username_pw_set(TEST_PUBLISHER.username, TEST_PUBLISHER.password)
    client.connect("127.0.0.1", stack.mqtt_port)
    client.loop_start()
    return pipe, client
