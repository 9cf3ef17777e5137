"""A process dies at each named step of its protocols (IOT_CRASH_AT, see
iot_common/crashpoints.py) while readings and dead letters flow, with the
metastore and Trino running; restarted, it loses and doubles nothing: every
reading and every dead letter is in Trino exactly once, and the 1-minute
figures count each reading once. Counting queries run throughout: no query
ever sees a reading twice, and no count ever goes back."""

import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from iot_common.crashpoints import CRASH_ENV, CRASH_EXIT_CODE, STEPS
from iot_data_generator.readings import reading_payload
from local.common import StackError
from local.services import wait_for
from tests.integration.harness import FAST_WINDOWS, Pipeline, Proc, mqtt_publish, wait_exit

pytestmark = pytest.mark.integration

TABLES = ("readings", "rejected", "readings_1m_revisions", "sensor_quality_1m_revisions")
CHAINS = {
    "bridge": [s for s in STEPS if s.startswith("bridge.")],
    # Every step of the writers' commits (files written, inside the metastore
    # commit with its lock held, right after it) and the 1-minute and quality
    # emissions.
    "jobs": [
        *(f"iceberg.{t}.{step}" for t in TABLES for step in ("written", "metadata", "committed")),
        "minute.emitted",
        "quality.emitted",
    ],
    # Table maintenance while the writers append: each step of a compaction's
    # commit, and around snapshot expiry.
    "maintenance": [
        *(f"compaction.readings.{step}" for step in ("written", "metadata", "committed")),
        "expiry.readings.start",
        "expiry.readings.expired",
    ],
}
MAINTENANCE = {
    "MAINTENANCE_INTERVAL_SECONDS": "2",
    "COMPACT_MIN_FILES": "2",
    "SNAPSHOT_RETENTION_SECONDS": "60",
    "ORPHAN_RETENTION_SECONDS": "60",
}


def batch(k: int) -> tuple[list[bytes], list[bytes]]:
    """40 readings over the last two minutes (so windows close) and 4 dead letters,
    one of them naming its sensor (the quality job counts it as rejected)."""
    base = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=2)
    good = [
        reading_payload(f"crash {k % 3}", base + timedelta(seconds=3 * i, microseconds=k), i)
        for i in range(40)
    ]
    bad = [b"not json %d.%d" % (k, i) for i in range(3)]
    bad.append(orjson.dumps({"id": f"crash {k % 3}", "dt": base.isoformat(), "value": f"x{k}"}))
    return good, bad


def restart(proc: Proc, pipe: Pipeline, crash_at: str | None) -> None:
    proc.stop()
    proc.env = {k: v for k, v in proc.base_env.items() if k != CRASH_ENV}
    if crash_at:
        proc.env[CRASH_ENV] = crash_at
    proc.start()


def archiving(pipe: Pipeline) -> bool:
    try:
        return bool(pipe.health()["archive"]["readings"]["assigned"])
    except OSError:
        return False


class Counting(threading.Thread):
    """Counts the readings through Trino over and over while the test runs."""

    def __init__(self, pipe: Pipeline) -> None:
        super().__init__(daemon=True)
        self.pipe, self.stop = pipe, threading.Event()
        self.samples: list[tuple[int, int]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.wait(0.3):
            try:
                (row,) = self.pipe.sql(
                    "SELECT count(*), count(DISTINCT payload) FROM iceberg.raw.readings"
                )
                self.samples.append((row[0], row[1]))
            except Exception as exc:  # noqa: BLE001 - the table may not exist yet
                self.errors.append(str(exc)[:200])

    def check(self) -> None:
        self.stop.set()
        self.join(10)
        # Counting ran throughout (a query takes longer on a busy machine: not 0.3 s)
        assert len(self.samples) >= 10, self.errors[-3:]
        doubled = [s for s in self.samples if s[0] != s[1]]
        assert not doubled, f"a query saw a reading twice: {doubled[:5]}"
        counts = [s[0] for s in self.samples]
        assert counts == sorted(counts), "a count went back"


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("process", sorted(CHAINS))
def test_a_crash_at_each_step_loses_and_doubles_nothing(process, brokers, sql, tmp_path):
    env = {**FAST_WINDOWS, **(MAINTENANCE if process == "maintenance" else {})}
    pipe = Pipeline(brokers, tmp_path, sql_services=sql, env_extra=env).start()
    counting = Counting(pipe)
    try:
        pipe.wait_sql_ready()
        counting.start()
        proc = pipe.bridge if process == "bridge" else pipe.jobs
        good: list[bytes] = []
        bad: list[bytes] = []
        for k, step in enumerate(CHAINS[process]):
            restart(proc, pipe, step)
            if process != "bridge":  # the readings' archiver is reading: commits come apart
                # After a crash inside a metastore commit, the table's lock outlives the
                # process until the housekeeper times it out (metastore.txn.timeout 30 s,
                # checked every 10 s), and the restarted jobs wait for it. A step that the
                # restart's own replay reaches (a quality commit, say) can end the process
                # before the archiver is assigned: that step is reached, the batch waits.
                try:
                    wait_for(lambda: archiving(pipe) or not proc.alive, 180, "the archiver")
                except StackError as exc:
                    raise AssertionError(f"after {step}: {exc}\n{proc.tail(120)}") from None
            g, b = batch(k)
            good += g
            bad += b
            # In halves a second apart: a compaction needs files from several commits.
            for half in (g[:20] + b[:2], g[20:] + b[2:]):
                mixed = [*half[:10], half[20], *half[10:20], half[21]]
                mqtt_publish(pipe.stack.mqtt_port, pipe.mqtt_topic, mixed)
                time.sleep(1.5)
            try:
                code = wait_exit(proc, 120)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{step} was never reached:\n{proc.tail()}") from None
            assert code == CRASH_EXIT_CODE, f"{step}: exit {code}\n{proc.tail()}"
        restart(proc, pipe, None)
        check_exactly_once(pipe, good, bad)
        counting.check()
        if process == "maintenance":
            check_no_orphans(pipe)
    finally:
        counting.stop.set()
        pipe.stop()


def check_exactly_once(pipe: Pipeline, good: list[bytes], bad: list[bytes]) -> None:
    readings = "SELECT count(*), count(DISTINCT payload) FROM iceberg.raw.readings"
    rejected = "SELECT count(*), count(DISTINCT payload) FROM iceberg.raw.rejected"
    wait_for(lambda: pipe.sql(readings)[0][1] == len(good), 240, "every reading in Trino")
    wait_for(lambda: pipe.sql(rejected)[0][1] == len(bad), 240, "every dead letter in Trino")
    minutes = "SELECT coalesce(sum(count), 0) FROM iceberg.curated.readings_1m"
    wait_for(lambda: pipe.sql(minutes)[0][0] >= len(good), 240, "every reading in a window")
    time.sleep(3)  # what a doubled commit would add lands within a rotation or two
    assert pipe.sql(readings) == [[len(good), len(good)]]
    assert pipe.sql(rejected) == [[len(bad), len(bad)]]
    assert pipe.sql(minutes) == [[len(good)]]
    # The quality figures count each reading and each attributable dead letter once.
    quality = """SELECT coalesce(sum(received), 0), coalesce(sum(rejected), 0)
                 FROM iceberg.curated.sensor_quality_1m"""
    attributable = sum(1 for b in bad if b.startswith(b"{"))
    wait_for(lambda: pipe.sql(quality)[0] == [len(good), attributable], 240, "the quality figures")
    in_table = sorted(p.encode() for p in pipe.table("readings").column("payload").to_pylist())
    assert in_table == sorted(good)


def check_no_orphans(pipe: Pipeline) -> None:
    """Compaction happened; once past the retention, the files of commits that never
    landed and those compaction replaced are gone: the table's folder holds exactly
    the files its current snapshot reads."""
    (compacted,) = pipe.sql(
        "SELECT count(*) FROM iceberg.raw.\"readings$snapshots\" WHERE operation = 'overwrite'"
    )
    assert compacted[0] >= 1
    folder = Path(pipe.env["LAKE_URL"]) / "warehouse" / "raw" / "readings" / "data"

    def clean() -> bool:
        on_disk = {f"file://{p}" for p in folder.rglob("*.parquet")}
        live = {r[0] for r in pipe.sql('SELECT file_path FROM iceberg.raw."readings$files"')}
        return {p.replace("file:///", "file:/") for p in on_disk} == {
            p.replace("file:///", "file:/") for p in live
        }

    wait_for(clean, 240, "only the current snapshot's files on disk")
