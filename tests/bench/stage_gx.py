"""Stage `gx`: one Great Expectations run (`python -m expectations`, its own
virtualenv) over a day of readings: the original five sensors, then 100 sensors, at
one reading every `--gx-interval` seconds (1: a day is 432,000 and 8,640,000
readings). The stream jobs and the bridge run (they create the views and publish
the sensor list the suites read); `stream_jobs.backfill` writes yesterday into
raw.readings; the run validates from yesterday 00:00 UTC to now. Measures the run's
wall time and its parts (reading through Trino, validating, the Data Docs), the rows
read and the run's peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from iot_data_generator.readings import fleet
from local import trino_auth
from local.services import ROOT, Stack
from tests.bench.common import BenchEnv, Record
from tests.integration.harness import Pipeline, SqlServices

QUALITY_PYTHON = ROOT / ".venv-quality" / "bin" / "python"


def bench_gx(
    stack: Stack, sql: SqlServices, work: Path, sensors: int, interval: int
) -> dict[str, Any]:
    folder = work / f"gx-{sensors}"
    folder.mkdir(parents=True)
    fleet_file = folder / "sensors.json"
    fleet_file.write_bytes(orjson.dumps(fleet(sensors)))
    pipe = Pipeline(
        stack, folder, sql_services=sql, env_extra={"SENSORS_FILE": str(fleet_file)}
    ).start()
    try:
        pipe.wait_sql_ready()
        env = {**os.environ, **pipe.env}
        subprocess.run(
            [
                *(sys.executable, "-m", "stream_jobs.backfill"),
                *("--sensors", str(sensors), "--days", "1", "--interval", str(interval)),
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        now = datetime.now(UTC)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        window_min = int((now - midnight).total_seconds() // 60) + 24 * 60
        docs = folder / "quality" / "data_docs"
        gx_env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            **pipe.sql_services.bi_env(trino_auth.QUALITY_USER),
            "RAW_SCHEMA": pipe.env["RAW_SCHEMA"],
            "CURATED_SCHEMA": pipe.env["CURATED_SCHEMA"],
            "QUALITY_DOCS_DIR": str(docs),
            "QUALITY_WINDOW_MINUTES": str(window_min),
        }
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        subprocess.run(
            [str(QUALITY_PYTHON), "-m", "expectations"],
            env=gx_env,
            cwd=folder,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - t0
        peak_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
        latest = json.loads((docs.parent / "latest.json").read_text())
    finally:
        pipe.stop()
    readings = latest["suites"]["raw.readings"]
    return {
        "sensors": sensors,
        "readings": readings["rows"],
        "run_s": wall,
        **{k: v for k, v in latest.get("timings", {}).items()},
        "trino_queries": latest["source"]["queries"],
        "expectations": readings["evaluated"],
        "peak_rss_mb_upto": peak_mb,
    }


def run(env: BenchEnv, args: argparse.Namespace, record: Record) -> None:
    if not QUALITY_PYTHON.exists():
        print("stage gx skipped: no .venv-quality (make test or make up creates it)")
        return
    for sensors in (5, 100):
        record(
            f"Great Expectations run over a day of {sensors} sensors",
            bench_gx(env.stack, env.sql, env.work, sensors, args.gx_interval),
        )
