"""docs/reading-without-trino.md as written: its script reads a pipeline's
raw.readings with pyiceberg and DuckDB, without Trino, and prints what Trino
answers for the same filter; its shim lets plain pyiceberg, without our package,
open the table in Hive 4's metastore."""

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta

import pytest

from iot_data_generator.readings import reading_payload
from local.services import ROOT
from tests.integration.harness import Pipeline, mqtt_publish

pytestmark = pytest.mark.integration

DOC = ROOT / "docs" / "reading-without-trino.md"
DAY = datetime(2026, 1, 2)
SENSOR = "Sensor 1"
# Readings around the day's edges and in several hours, of the sensor and another.
TIMES = [
    DAY - timedelta(microseconds=1),  # the day before
    DAY,
    DAY + timedelta(hours=9, minutes=59, seconds=59, microseconds=500_000),
    DAY + timedelta(hours=10),
    DAY + timedelta(hours=10, minutes=30, microseconds=123_456),
    DAY + timedelta(hours=10, minutes=59),
    DAY + timedelta(hours=23, minutes=59, seconds=59, microseconds=999_999),
    DAY + timedelta(days=1),  # the day after
]


def code_block(marker: str) -> str:
    """The one ```python block of the doc that contains `marker`."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"{DOC.name}: {len(found)} python blocks contain {marker!r}"
    return found[0]


def run(code: str, cwd, env, *args: str) -> str:
    script = cwd / "script.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"{DOC.name} script failed:\n{done.stderr[-3000:]}"
    return done.stdout


def trino_answer(pipe: Pipeline) -> str:
    """What Trino answers for the script's filter, printed as the script prints it."""
    where = (
        f"WHERE sensor_id = '{SENSOR}' AND ts >= TIMESTAMP '{DAY:%Y-%m-%d} 00:00:00' "
        f"AND ts < TIMESTAMP '{DAY + timedelta(days=1):%Y-%m-%d} 00:00:00'"
    )
    ((count,),) = pipe.sql(f"SELECT count(*) FROM iceberg.raw.readings {where}")
    lines = [f"{SENSOR} on {DAY:%Y-%m-%d} (UTC): {count} readings"]
    for hour, n, mean, low, high in pipe.sql(
        "SELECT date_trunc('hour', ts), count(*), avg(value), min(value), max(value) "
        f"FROM iceberg.raw.readings {where} GROUP BY 1 ORDER BY 1"
    ):
        lines.append(
            f"{hour:%H:%M}  {n:6d} readings  mean {mean:9.3f}  min {low:9.3f}  max {high:9.3f}"
        )
    return "\n".join(lines) + "\n"


def test_the_documented_script_and_shim_read_what_trino_reads(sql_pipeline, tmp_path):
    pipe = sql_pipeline
    payloads = [
        reading_payload(sensor, ts, 3 * i + (7 if sensor == SENSOR else 1000))
        for i, ts in enumerate(TIMES)
        for sensor in (SENSOR, "Sensor 2")
    ]
    mqtt_publish(pipe.stack.mqtt_port, pipe.mqtt_topic, payloads)
    pipe.wait_archived("readings", len(payloads))

    # The script, run as a user runs it: the platform's settings from the environment.
    env = {**os.environ, **pipe.env}
    printed = run(code_block("readings_of_a_day.py"), tmp_path, env, SENSOR, f"{DAY:%Y-%m-%d}")
    expected = trino_answer(pipe)
    assert printed == expected
    assert f": {len(TIMES) - 2} readings" in printed  # the day's edges are right
    assert len(printed.splitlines()) == 1 + 4  # hours 00, 09, 10 and 23

    # The shim, then plain pyiceberg: no stream_jobs import, the metastore URI substituted.
    shim = code_block("get_table_req")
    assert "stream_jobs" not in shim
    uri = f"thrift://127.0.0.1:{pipe.env['METASTORE_PORT']}"
    code = shim.replace("thrift://localhost:9083", uri) + (
        f"\ntable = catalog.load_table('raw_{pipe.uid}.readings')"
        "\nprint(table.scan().to_arrow().num_rows)\n"
    )
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    assert run(code, tmp_path, clean_env).strip() == str(len(payloads))
