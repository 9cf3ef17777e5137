"""Stage `superset`: Apache Superset's cost and its dashboards' speed on a month of
history.

Install: a fresh virtualenv from bi/requirements.txt without pip's cache (downloads
included). History: `stream_jobs.backfill` writes 100 sensors x `--superset-days`
days at one reading per 10 s into raw.readings; their 1-minute means and a day of
quality minutes are derived from it through Trino (INSERT ... SELECT), as the jobs
would have written them; a live generator of the same 100 sensors runs meanwhile,
so that the statuses and the newest minutes are current. Start: Superset as
`make up` starts it (bi/superset_service.py: migrations, admin, dashboards'
import, web server) to its health, the first time and again. Then chromium logs
in and opens each dashboard of bi/dashboards, the first time (Trino answers) and
again (Superset's cache, 60 s, answers): seconds until every chart has rendered.
Memory: the RSS of Superset's processes after that.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from iot_data_generator.readings import fleet
from local.services import ROOT
from tests.bench.common import BenchEnv, Record
from tests.integration.harness import Pipeline
from tests.integration.superset_browser import (
    chromium,
    dashboards,
    installed,
    login,
    open_dashboard,
    superset,
)

SENSORS = 100


def install_seconds(work: Path) -> float:
    venv = work / "venv-superset"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir"]
    subprocess.run([*pip, "-r", str(ROOT / "bi" / "requirements.txt")], check=True)
    return time.perf_counter() - t0


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (gunicorn's master and worker)."""
    total = 0
    out = subprocess.run(
        ["ps", "-o", "rss=", "--ppid", str(pid), "-p", str(pid)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    for line in out.split():
        total += int(line)
    return total / 1024


def derive_history(pipe: Pipeline) -> None:
    """1-minute means of the whole history and quality minutes of its last day, from
    raw.readings, as the jobs would have written them: a day per statement (within
    Trino's memory per query), tried again on a conflict with the jobs' commits."""
    days = [
        d
        for (d,) in pipe.sql(
            "SELECT DISTINCT event_date FROM iceberg.raw.readings "
            "WHERE mqtt_topic = 'backfill' ORDER BY 1"
        )
    ]
    minutes = """INSERT INTO iceberg.curated.readings_1m_revisions
SELECT sensor_id, date_trunc('minute', ts), date_trunc('minute', ts) + INTERVAL '1' MINUTE,
       avg(value), min(value), max(value), count(*), 0, sum(value), 1,
       CAST(max(received_at) AS timestamp(6)), 0, CAST(date_trunc('minute', ts) AS date)
FROM iceberg.raw.readings
WHERE mqtt_topic = 'backfill' AND ts >= TIMESTAMP '{day} 00:00:00'
  AND ts < TIMESTAMP '{day} 00:00:00' + INTERVAL '1' DAY
GROUP BY sensor_id, date_trunc('minute', ts)"""
    quality = """INSERT INTO iceberg.curated.sensor_quality_1m_revisions
SELECT sensor_id, window_start, window_end, 6.0, count, count, 0, 0, 0, 0, 1.0, 1,
       emitted_at, window_date
FROM iceberg.curated.readings_1m_revisions WHERE window_date = DATE '{day}'"""
    statements = [minutes.format(day=d) for d in days] + [quality.format(day=days[-1])]
    for query in statements:
        for attempt in range(5):
            try:
                pipe.sql(query)
                break
            except Exception:  # a commit conflict with the running jobs: once more
                if attempt == 4:
                    raise
                time.sleep(2)


def bench_superset(env: BenchEnv, days: int, install: bool) -> dict[str, Any]:
    folder = env.work / "superset"
    folder.mkdir(parents=True)
    figures: dict[str, Any] = {}
    if install:
        figures["install_s"] = install_seconds(folder)
        print(f"superset: installed in {figures['install_s']:.0f} s", flush=True)
    fleet_file = folder / "sensors.json"
    fleet_file.write_bytes(orjson.dumps(fleet(SENSORS)))
    pipe = Pipeline(
        env.stack, folder, sql_services=env.sql, env_extra={"SENSORS_FILE": str(fleet_file)}
    ).start()
    try:
        pipe.wait_sql_ready()
        run_env = {**os.environ, **pipe.env}
        backfill = [sys.executable, "-m", "stream_jobs.backfill", "--sensors", str(SENSORS)]
        subprocess.run(
            [*backfill, "--days", str(days), "--interval", "10"],
            env=run_env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        figures["readings"] = pipe.sql("SELECT count(*) FROM iceberg.raw.readings")[0][0]
        t0 = time.perf_counter()
        derive_history(pipe)
        figures["derive_s"] = time.perf_counter() - t0
        figures["minute_rows"] = pipe.sql(
            "SELECT count(*) FROM iceberg.curated.readings_1m_revisions"
        )[0][0]
        gen = pipe.generator(
            seconds=3600, interval_ms=10_000, sensors_file=str(fleet_file), fault_malformed="0.01"
        )
        schemas = {k: pipe.env[k] for k in ("RAW_SCHEMA", "CURATED_SCHEMA")}
        try:
            for start in ("first", "again"):
                t0 = time.perf_counter()
                with superset(env.sql.stack, folder / "home", schemas) as ss:
                    figures[f"start_{start}_s"] = time.perf_counter() - t0
                    if start == "again":
                        break
                    # a few closed minutes of the live sensors (status, heatmap's last hour)
                    time.sleep(150)
                    with chromium() as driver:
                        login(driver, ss)
                        for board in dashboards():
                            for load in ("trino", "cached"):
                                seen = open_dashboard(driver, ss, board["slug"], timeout=600)
                                bad = [c for c in seen["charts"] if c["error"] or c["empty"]]
                                figures[f"{board['slug']}_{load}_s"] = seen["seconds"]
                                if bad:
                                    figures[f"{board['slug']}_problems"] = bad
                    assert ss.proc.p is not None
                    figures["rss_mb"] = rss_mb(ss.proc.p.pid)
        finally:
            gen.stop()
    finally:
        pipe.stop()
    return figures


def run(env: BenchEnv, args: argparse.Namespace, record: Record) -> None:
    if not installed():
        print("stage superset skipped: needs .venv-superset (make superset) and chromium")
        return
    record(
        f"Superset: install, start, memory; dashboards over {args.superset_days} days of "
        f"{SENSORS} sensors",
        bench_superset(env, args.superset_days, install=not args.smoke),
    )
