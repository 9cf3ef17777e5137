"""`make soak`: a steady load while a randomly chosen component is killed (SIGKILL) every
minute or so, then the proof that nothing accepted was lost or doubled and that our
processes' memory stayed flat. Minutes, not part of `make test`.

The stack is the local one (`make up`'s services under supervisord, which restarts
what dies, as in production), in a directory of its own on free ports, so it runs
beside a `make up` without touching it. The generator (its own fleet of sensors, QoS
1) logs every reading the broker confirmed; the victims are the bridge, the stream
jobs, Kafka, the Hive Metastore and Trino.

Afterwards:
- `raw.readings` holds each confirmed reading exactly once (compared payload by payload);
- `curated.readings_1m` equals the 1-minute means recomputed from the archive, for
  every sensor and minute (count, and mean to 1e-9);
- each process's resident memory: its median over the first and the last quarter of the
  samples after a warm-up, per incarnation (a killed process starts afresh); flat means
  the last quarter is within 25 % (and 32 MiB) of the first.

Figures are printed, and kept as JSON beside the soak's data.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import trino

from iot_common import trino_client
from iot_data_generator.readings import fleet
from local import supervisor
from local.common import StackError, wait_for
from local.services import SERVICES, Stack, free_port

RUN = frozenset(
    {
        "postgres",
        "mosquitto",
        "kafka",
        "hive_metastore",
        "trino",
        "mqtt_bridge",
        "stream_jobs",
        "iot_data_generator",
    }
)
VICTIMS = ("mqtt_bridge", "stream_jobs", "kafka", "hive_metastore", "trino")
OURS = ("mqtt_bridge", "stream_jobs", "iot_data_generator")  # Python: /metrics has RSS
FAST = {
    "WINDOW_LATENESS_SECONDS": "5",
    "WINDOW_IDLE_SECONDS": "5",
    "WINDOW_COMMIT_SECONDS": "2",
    "ROTATE_SECONDS": "5",
}


def soak_stack(data: Path, sensors: int, interval_ms: int) -> Stack:
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o755)  # the `postgres` user must reach its directory below
    fleet_file = data / "fleet.json"
    fleet_file.write_bytes(orjson.dumps(fleet(sensors)))
    return Stack(
        data,
        mqtt_port=free_port(),
        kafka_port=free_port(),
        controller_port=free_port(),
        bridge_health_port=free_port(),
        generator_metrics_port=free_port(),
        stream_web_port=free_port(),
        metastore_port=free_port(),
        postgres_port=free_port(),
        trino_port=free_port(),
        trino_https_port=free_port(),
        portal_port=free_port(),
        superset_port=free_port(),
        postgres_dir=Path(tempfile.mkdtemp(prefix="iot-soak-pg-")),
        env={
            **FAST,
            "SENSORS_FILE": str(fleet_file),
            "INTERVAL_MS": str(interval_ms),
            "MQTT_QOS": "1",
            "PUBLISHED_LOG": str(data / "published.hex"),
        },
    )


def pid_of(conf: Path, name: str) -> int | None:
    out = supervisor.ctl(conf, "pid", name).stdout.strip()
    return int(out) if out.isdigit() and out != "0" else None


def rss_of(pid: int) -> int | None:
    """Resident memory of a process and its children (bytes), from /proc."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += rss_of(int(child)) or 0
    except (OSError, ValueError):
        return None
    return total


def sql(s: Stack, query: str) -> list[list[Any]]:
    conn = trino_client.connect(**s.trino_login())
    cur = conn.cursor()
    cur.execute(query)
    return [list(r) for r in cur.fetchall()]


def flat(samples: list[tuple[float, int]], warmup_s: float) -> dict[str, Any]:
    """Medians of the first and last quarter of the samples after the warm-up."""
    if not samples:
        return {"samples": 0}
    start = samples[0][0] + warmup_s
    kept = [rss for t, rss in samples if t >= start]
    if len(kept) < 8:
        return {"samples": len(kept)}
    q = len(kept) // 4
    first, last = statistics.median(kept[:q]), statistics.median(kept[-q:])
    return {
        "samples": len(kept),
        "first_mib": round(first / 2**20, 1),
        "last_mib": round(last / 2**20, 1),
        "max_mib": round(max(kept) / 2**20, 1),
        "flat": last <= max(first * 1.25, first + 32 * 2**20),
    }


def soak(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="iot-soak-"))
    s = soak_stack(data, args.sensors, args.interval_ms)
    for service in SERVICES:
        if service.name in RUN and service.prepare is not None:
            service.prepare(s)
    conf = supervisor.write_conf(s, only=RUN)
    supervisor.start(conf)
    rng = random.Random(args.seed)
    kills: list[tuple[float, str]] = []
    memory: dict[str, list[tuple[float, int]]] = defaultdict(list)  # "name@pid" -> samples
    try:
        wait_for(lambda: s.stream_jobs_ready() and s.bridge_ready(), 300, "the bridge and the jobs")
        supervisor.start_after_ready(conf)  # the generator, as `make up` starts it
        print(f"soak: {data}; {args.minutes} min, a kill every {args.every[0]}-{args.every[1]} s")
        started = time.monotonic()
        next_kill = started + rng.uniform(*args.every)
        while time.monotonic() - started < args.minutes * 60:
            now = time.monotonic()
            for name in (*OURS, *VICTIMS):
                pid = pid_of(conf, name)  # a restart is a new incarnation: a new series
                rss = rss_of(pid) if pid else None
                if rss:
                    memory[f"{name}@{pid}"].append((now - started, rss))
            if now >= next_kill:
                victim = rng.choice(VICTIMS)
                supervisor.ctl(conf, "signal", "KILL", victim)
                kills.append((round(now - started, 1), victim))
                print(f"  {now - started:6.0f} s: killed {victim}", flush=True)
                next_kill = now + rng.uniform(*args.every)
            time.sleep(5)
        supervisor.ctl(conf, "stop", "iot_data_generator")  # waits for the broker's acks
        return verify(s, data, kills, memory, args)
    finally:
        if not args.keep:
            supervisor.shutdown(conf)


def verify(
    s: Stack,
    data: Path,
    kills: list[tuple[float, str]],
    memory: dict[str, list[tuple[float, int]]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    sent = [bytes.fromhex(x) for x in (data / "published.hex").read_text().split()]
    print(f"soak: {len(sent):,} readings confirmed by the broker; waiting for the archive")

    def archived() -> bool:
        try:
            return bool(sql(s, "SELECT count(*) FROM iceberg.raw.readings")[0][0] >= len(sent))
        except (trino.exceptions.Error, OSError):
            return False

    try:
        wait_for(archived, 300, "every confirmed reading in raw.readings")
    except StackError as exc:
        print(f"soak: {exc}")  # what is missing is counted below
    time.sleep(15)  # a double would land within a rotation or two
    rows = sql(s, "SELECT payload FROM iceberg.raw.readings")
    got = Counter(r[0].encode() for r in rows)
    want = Counter(sent)
    missing, doubled = want - got, got - want

    # The 1-minute means against a recomputation from the archive, once the last
    # windows have closed (lateness + idle) and been committed.
    recompute = (
        "SELECT sensor_id, date_trunc('minute', ts) AS m, count(*) AS n, avg(value) AS mean "
        "FROM iceberg.raw.readings GROUP BY 1, 2"
    )
    # count is of the readings in range (mean's); out-of-range ones are counted apart.
    minutes = (
        "SELECT sensor_id, window_start, count + out_of_range_count, mean, out_of_range_count "
        "FROM iceberg.curated.readings_1m"
    )

    def agree() -> bool:
        a = {(r[0], r[1]): (r[2], r[3]) for r in sql(s, recompute)}
        b = {(r[0], r[1]): (r[2], r[3], r[4]) for r in sql(s, minutes)}
        return a.keys() == b.keys() and all(
            a[k][0] == b[k][0] and (b[k][2] or abs(a[k][1] - b[k][1]) < 1e-9) for k in a
        )

    try:
        wait_for(agree, 180, "curated.readings_1m equal to the archive's minutes")
        minutes_ok = True
    except Exception:  # noqa: BLE001 - reported as a finding, not a crash of the soak
        minutes_ok = False
    result = {
        "minutes": args.minutes,
        "sensors": args.sensors,
        "interval_ms": args.interval_ms,
        "kills": kills,
        "confirmed": len(sent),
        "archived_rows": len(rows),
        "missing": sum(missing.values()),
        "doubled": sum(doubled.values()),
        "readings_1m_equal_to_the_archive": minutes_ok,
        "memory": {k: flat(v, args.warmup) for k, v in sorted(memory.items()) if v},
    }
    (data / "soak.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("MINUTES", 10)))
    parser.add_argument("--sensors", type=int, default=20)
    parser.add_argument("--interval-ms", type=int, default=100)  # 20 x 10/s = 200/s
    parser.add_argument("--every", type=float, nargs=2, default=(45.0, 75.0))
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds per incarnation")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    result = soak(args)
    print(json.dumps(result, indent=2))
    ours = [m for k, m in result["memory"].items() if k.split("@")[0] in OURS]
    ok = (
        result["missing"] == 0
        and result["doubled"] == 0
        and result["readings_1m_equal_to_the_archive"]
        and all(m.get("flat", True) for m in ours)  # the JVMs' heaps are theirs to size
    )
    print("soak: PASSED" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
