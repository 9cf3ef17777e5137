"""A process dies at each named step of its protocols (IOT_CRASH_AT, see
mqtt_bridge/crashpoints.py) while readings and dead letters flow, with the
metastore and Trino running; restarted, it loses and doubles nothing: every
reading and every dead letter is in Trino exactly once, and the 1-minute
figures count each reading once."""

import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from iot_data_generator.readings import reading_payload
from local.services import wait_for
from mqtt_bridge.crashpoints import CRASH_ENV, CRASH_EXIT_CODE, STEPS
from tests.integration.harness import FAST_WINDOWS, Pipeline, Proc, mqtt_publish, wait_exit

pytestmark = pytest.mark.integration

CHAINS = {
    "bridge": [s for s in STEPS if s.startswith("bridge.")],
    "jobs": [
        s for s in STEPS if s.startswith(("archive.readings.", "archive.rejected.", "minute."))
    ],
}


def batch(k: int) -> tuple[list[bytes], list[bytes]]:
    """40 readings over the last two minutes (so windows close) and 4 dead letters."""
    base = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=2)
    good = [
        reading_payload(f"crash {k % 3}", base + timedelta(seconds=3 * i, microseconds=k), i)
        for i in range(40)
    ]
    bad = [b"not json %d.%d" % (k, i) for i in range(4)]
    return good, bad


def restart(proc: Proc, pipe: Pipeline, crash_at: str | None) -> None:
    proc.stop()
    proc.env = {k: v for k, v in pipe.env.items() if k != CRASH_ENV}
    if crash_at:
        proc.env[CRASH_ENV] = crash_at
    proc.start()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("process", sorted(CHAINS))
def test_a_crash_at_each_step_loses_and_doubles_nothing(process, brokers, sql, tmp_path):
    pipe = Pipeline(brokers, tmp_path, sql_services=sql, env_extra=FAST_WINDOWS).start()
    try:
        pipe.wait_sql_ready()
        proc = pipe.bridge if process == "bridge" else pipe.jobs
        good: list[bytes] = []
        bad: list[bytes] = []
        for k, step in enumerate(CHAINS[process]):
            restart(proc, pipe, step)
            g, b = batch(k)
            good += g
            bad += b
            mixed = [*g[:10], b[0], *g[10:20], b[1], *g[20:30], b[2], *g[30:], b[3]]
            mqtt_publish(pipe.stack.mqtt_port, pipe.mqtt_topic, mixed)
            try:
                code = wait_exit(proc, 60)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{step} was never reached:\n{proc.tail()}") from None
            assert code == CRASH_EXIT_CODE, f"{step}: exit {code}\n{proc.tail()}"
        restart(proc, pipe, None)
        check_exactly_once(pipe, good, bad)
    finally:
        pipe.stop()


def check_exactly_once(pipe: Pipeline, good: list[bytes], bad: list[bytes]) -> None:
    readings = "SELECT count(*), count(DISTINCT payload) FROM hive.raw.readings"
    rejected = "SELECT count(*), count(DISTINCT payload) FROM hive.raw.rejected"
    wait_for(lambda: pipe.sql(readings)[0][1] == len(good), 120, "every reading in Trino")
    wait_for(lambda: pipe.sql(rejected)[0][1] == len(bad), 120, "every dead letter in Trino")
    minutes = "SELECT coalesce(sum(count), 0) FROM hive.curated.readings_1m"
    wait_for(lambda: pipe.sql(minutes)[0][0] >= len(good), 120, "every reading in a window")
    time.sleep(3)  # what a doubled flush would add lands within a rotation or two
    assert pipe.sql(readings) == [[len(good), len(good)]]
    assert pipe.sql(rejected) == [[len(bad), len(bad)]]
    assert pipe.sql(minutes) == [[len(good)]]
    in_lake = sorted(p.encode() for p in pipe.table("readings").column("payload").to_pylist())
    assert in_lake == sorted(good)
