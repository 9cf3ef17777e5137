"""Scale-out of the stream jobs: two processes in one consumer group, readings flowing.

The two members split the readings' partitions (three). While readings flow into
iot.readings (written as the bridge writes them: keyed by sensor id, with its
headers, by an idempotent producer, so Kafka holds each exactly once):
1. member A dies as kill -9 would, in the middle of a flush of raw.readings (its
   files written, the commit not begun: IOT_CRASH_AT), and B takes its partitions
   over from the tables' offsets and checkpoints;
2. A comes back and the group splits the partitions again (B commits what it holds
   before handing them on);
3. B stalls (SIGSTOP) past the group's session timeout with rows buffered: A takes
   everything over and commits from where B's commits ended; when B wakes its
   buffered rows, windows and quality state must not land (its commits are fenced)
   and it rejoins the group.
Then every reading is in raw.readings exactly once (count, (sensor_id, ts) and
Kafka offsets), the 1-minute figures (count, sum, mean) are those of the readings
published, and the quality figures count each reading once."""

import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from iot_common.contract import DEFAULT_DT_MAX_AHEAD_S
from iot_common.crashpoints import CRASH_ENV, CRASH_EXIT_CODE
from iot_common.kafka_io import ensure_topics
from iot_common.topics import dead_letters_spec, readings_spec, sensors_spec
from iot_data_generator.readings import reading_payload
from local.common import StackError
from local.services import wait_for
from tests.integration.harness import (
    FAST_WINDOWS,
    Pipeline,
    Proc,
    jobs_member,
    member_health,
    pause,
    resume,
    wait_exit,
    wait_member_healthy,
)

pytestmark = pytest.mark.integration

PARTITIONS = 3  # iot.readings (iot_common.topics.READINGS_PARTITIONS)
SENSORS = 10
HZ = 40  # readings a second of each sensor: 400 a second in all
AGE = timedelta(seconds=90)  # dt this long before the publishing (1-minute windows close)
CRASH_AT = "iceberg.readings.written@4"  # member A's 4th flush of raw.readings
FENCED = "rejoining the group"  # what a member logs when a commit of it was refused


class Load(threading.Thread):
    """Publishes readings of SENSORS sensors at HZ each, paced by the clock, until
    stopped; `delivered` holds (sensor_id, dt, value) of each one Kafka confirmed."""

    def __init__(self, pipe: Pipeline) -> None:
        super().__init__(daemon=True)
        self.pipe, self.stop = pipe, threading.Event()
        self.delivered: list[tuple[str, datetime, int]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.pipe.stack.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
            }
        )
        topic = self.pipe.env["KAFKA_TOPIC_READINGS"]
        started = time.monotonic()
        base = datetime.now(UTC).replace(tzinfo=None) - AGE
        tick = 0
        while not self.stop.is_set():
            due = int((time.monotonic() - started) * HZ)
            while tick < due:
                dt = base + timedelta(seconds=tick / HZ)
                received = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
                for s in range(SENSORS):
                    sensor, value = f"Scale {s}", (tick * 7 + s) % 40
                    producer.produce(
                        topic,
                        key=sensor.encode(),
                        value=reading_payload(sensor, dt, value),
                        headers=[
                            ("mqtt_topic", self.pipe.mqtt_topic.encode()),
                            ("received_at", received),
                        ],
                        on_delivery=self._done(sensor, dt, value),
                    )
                tick += 1
            producer.poll(0.02)
        if producer.flush(60):
            self.errors.append("readings Kafka never confirmed")

    def _done(self, sensor: str, dt: datetime, value: int):
        def done(err, _msg) -> None:
            if err is None:
                self.delivered.append((sensor, dt, value))
            else:
                self.errors.append(str(err))

        return done

    def finish(self) -> list[tuple[str, datetime, int]]:
        self.stop.set()
        self.join(90)
        assert not self.is_alive() and not self.errors, self.errors[:3]
        return self.delivered


def assigned(proc: Proc) -> list[int]:
    """The readings' partitions the member's archiver holds ([] if it does not answer)."""
    health = member_health(proc)
    return health["archive"]["readings"]["assigned"] if health else []


def wait_split(a: Proc, b: Proc, what: str, timeout: float = 120) -> None:
    """Both members archive some of the readings' partitions, all of them between them."""

    def split() -> bool:
        pa, pb = assigned(a), assigned(b)
        return bool(pa) and bool(pb) and sorted(pa + pb) == list(range(PARTITIONS))

    try:
        wait_for(split, timeout, what)
    except StackError as exc:
        raise AssertionError(
            f"{exc}\n--- {a.name}\n{a.tail(40, quiet=True)}\n--- {b.name}\n{b.tail(40, quiet=True)}"
        ) from None


def wait_all(proc: Proc, what: str, timeout: float = 120) -> None:
    try:
        wait_for(lambda: assigned(proc) == list(range(PARTITIONS)), timeout, what)
    except StackError as exc:
        raise AssertionError(f"{exc}\n{proc.tail(60, quiet=True)}") from None


def restart(proc: Proc) -> None:
    proc.env = {k: v for k, v in proc.base_env.items() if k != CRASH_ENV}
    proc.start()


@pytest.mark.timeout(600)
def test_two_members_one_killed_mid_flush_one_stalled_every_reading_once(brokers, sql, tmp_path):
    pipe = Pipeline(brokers, tmp_path, sql_services=sql, env_extra=FAST_WINDOWS)
    env = pipe.env
    ensure_topics(
        brokers.bootstrap,
        [
            readings_spec(env["KAFKA_TOPIC_READINGS"], PARTITIONS, DEFAULT_DT_MAX_AHEAD_S),
            dead_letters_spec(env["KAFKA_TOPIC_DLQ"]),
            sensors_spec(env["KAFKA_TOPIC_SENSORS"]),
        ],
    )
    b = jobs_member(pipe, "stream_jobs_b")
    a = pipe.jobs  # member A (pipe.env's WEB_PORT), the one that crashes
    a.env = {**a.env, CRASH_ENV: CRASH_AT}
    load = Load(pipe)
    try:
        a.start()
        b.start()
        wait_member_healthy(a)
        wait_member_healthy(b)
        wait_split(a, b, "the partitions split between the two members")
        pipe.wait_sql_ready()
        load.start()

        # 1. A dies in the middle of a flush; B takes over its partitions.
        try:
            code = wait_exit(a, 120)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{CRASH_AT} never reached:\n{a.tail()}") from None
        assert code == CRASH_EXIT_CODE, f"exit {code}\n{a.tail()}"
        wait_all(b, "B archiving every partition after A's death")

        # 2. A comes back: the partitions are split again.
        restart(a)
        wait_member_healthy(a)
        wait_split(a, b, "the partitions split again after A's return")
        time.sleep(3)  # both archive a little

        # 3. B stalls past the session timeout, rows buffered; A takes everything
        # over and commits. B's commits when it wakes must be refused.
        pause(b)
        try:
            # Stalled inside a metastore commit, B holds the table's lock until the
            # metastore times it out (30 s, checked every 10 s): A's claim waits for it.
            wait_all(a, "A archiving every partition while B is stalled", timeout=100)
            commits = member_health(a)["archive"]["readings"]["commits"]  # type: ignore[index]
            wait_for(
                lambda: member_health(a)["archive"]["readings"]["commits"] > commits + 2,  # type: ignore[index]
                30,
                "A committing B's partitions",
            )
        finally:
            resume(b)
        wait_split(a, b, "the partitions split again once B rejoined")
        time.sleep(3)
        sent = load.finish()
        assert len(sent) >= SENSORS * HZ * 20, len(sent)

        check_readings(pipe, sent)
        check_minutes(pipe, sent)
        check_quality(pipe, sent)
        # The stalled member's commits were refused (the fencing was exercised).
        assert FENCED in b.log.read_text(errors="replace"), b.tail(80, quiet=True)
        assert a.alive and b.alive
    finally:
        load.stop.set()
        if b.alive:
            resume(b)
        b.stop()
        pipe.stop()


def check_readings(pipe: Pipeline, sent: list[tuple[str, datetime, int]]) -> None:
    n = len(sent)
    query = """SELECT count(*), count(DISTINCT sensor_id || ' ' || CAST(ts AS varchar)),
                      count(DISTINCT CAST(kafka_partition AS varchar) || ' '
                                     || CAST(kafka_offset AS varchar))
               FROM iceberg.raw.readings"""
    try:
        wait_for(lambda: pipe.sql(query)[0][0] >= n, 180, f"{n} readings in Trino")
    except StackError as exc:
        raise AssertionError(f"{exc}: {pipe.sql(query)}") from None
    time.sleep(3)  # what a doubled commit would add lands within a rotation or two
    assert pipe.sql(query) == [[n, n, n]]
    rows = pipe.table("readings").select(
        ["sensor_id", "ts", "value", "kafka_partition", "kafka_offset"]
    )
    found = Counter(zip(*(rows[c].to_pylist() for c in ("sensor_id", "ts", "value")), strict=True))
    assert found == Counter((s, dt, float(v)) for s, dt, v in sent)
    # Each partition's offsets once each, none missing: the commits form one chain.
    offsets: dict[int, list[int]] = {}
    for p, o in zip(
        rows["kafka_partition"].to_pylist(), rows["kafka_offset"].to_pylist(), strict=True
    ):
        offsets.setdefault(p, []).append(o)
    assert sorted(offsets) == list(range(PARTITIONS))
    for p, found_offsets in offsets.items():
        assert sorted(found_offsets) == list(range(len(found_offsets))), f"partition {p}"


def check_minutes(pipe: Pipeline, sent: list[tuple[str, datetime, int]]) -> None:
    """The newest revision of every sensor-minute counts its readings once, with
    their mean; and the table holds each revision once (a refused checkpoint of the
    stalled member would have added its own)."""
    expected: dict[tuple[str, datetime], tuple[int, float]] = {}
    for s, dt, v in sent:
        key = (s, dt.replace(second=0, microsecond=0))
        count, total = expected.get(key, (0, 0))
        expected[key] = (count + 1, total + v)
    query = "SELECT sensor_id, window_start, count, mean FROM iceberg.curated.readings_1m"

    def minutes() -> dict[tuple[str, datetime], tuple[int, float]]:
        return {(r[0], r[1]): (r[2], r[3]) for r in pipe.sql(query)}

    def exact() -> bool:
        got = minutes()
        return got.keys() == expected.keys() and all(
            got[k][0] == c and got[k][1] == pytest.approx(t / c, rel=1e-12)
            for k, (c, t) in expected.items()
        )

    try:
        wait_for(exact, 120, "the 1-minute figures")
    except StackError as exc:
        got = minutes()
        wrong = {k: (got.get(k), v) for k, v in expected.items() if got.get(k, (0,))[0] != v[0]}
        extra = sorted(set(got) - set(expected))
        raise AssertionError(
            f"{exc}: (found, expected (count, sum)) {dict(list(wrong.items())[:10])}; "
            f"windows of no reading: {extra[:10]}"
        ) from None
    revisions = """SELECT count(*), count(DISTINCT sensor_id || ' ' || CAST(window_start AS varchar)
                                          || ' ' || CAST(revision AS varchar))
                   FROM iceberg.curated.readings_1m_revisions"""
    ((rows, distinct),) = pipe.sql(revisions)
    assert rows == distinct, f"{rows - distinct} revisions twice"


def check_quality(pipe: Pipeline, sent: list[tuple[str, datetime, int]]) -> None:
    query = "SELECT coalesce(sum(received), 0) FROM iceberg.curated.sensor_quality_1m"
    try:
        wait_for(lambda: pipe.sql(query)[0][0] == len(sent), 120, "the quality figures")
    except StackError as exc:
        raise AssertionError(f"{exc}: {pipe.sql(query)} against {len(sent)}") from None
