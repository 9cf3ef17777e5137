"""The jobs' run loops (`run(stop)`) with a scripted Kafka consumer: what they read
ends up committed with its offsets, errors Kafka reports are handled as the loop
says, and a graceful stop leaves nothing buffered."""

import threading
from datetime import UTC, datetime
from types import SimpleNamespace

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

import stream_jobs.resample as resample
from iot_common.contract import DEFAULT_BOUNDS, DEFAULT_MAX_PAYLOAD_BYTES
from stream_jobs.archive import TopicArchiver
from stream_jobs.errors import Fenced
from stream_jobs.iceberg import committed_offsets
from stream_jobs.lake import Lake
from stream_jobs.records import build_readings
from stream_jobs.resample import MinuteJob, SensorRanges, WindowPolicy
from stream_jobs.scoring import QualityJob, SensorList
from stream_jobs.tables import (
    READINGS,
    READINGS_1M_REVISIONS,
    REJECTED,
    SENSOR_QUALITY_1M_REVISIONS,
)
from tests.unit.test_archive import CONTRACT, TOPIC, foreign, reading
from tests.unit.test_iceberg import FakeIcebergTable
from tests.unit.test_resample_unit import SENSORS, FakeProducer, recent_minute, record


class Message:
    def __init__(self, partition, offset, value, headers=(), key=None, ts_ms=0, error=None):
        self._p, self._o, self._v, self._h, self._k = partition, offset, value, headers, key
        self._ts, self._err = ts_ms, error

    def error(self):
        return self._err

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def value(self):
        return self._v

    def key(self):
        return self._k

    def headers(self):
        return list(self._h)

    def timestamp(self):
        return (1, self._ts)


class Error:
    def __init__(self, code, fatal=False):
        self._code, self._fatal = code, fatal

    def code(self):
        return self._code

    def fatal(self):
        return self._fatal


class ScriptedConsumer:
    """Assigns partition 0 at subscribe, hands out `batches` one per consume(),
    then sets `stop` (the job's graceful stop)."""

    def __init__(self, config, batches, stop, high=5):
        self.config, self.batches, self.stop = config, list(batches), stop
        self.closed = False
        self.high, self.next_offset = high, 0  # partition 0's end and the next to read

    def subscribe(self, topics, on_assign, on_revoke):
        self.on_revoke = on_revoke
        on_assign(self, [TopicPartition(topics[0], 0)])

    def assign(self, partitions):
        self.assigned = partitions

    def unassign(self):
        pass

    def commit(self, offsets, asynchronous):
        pass

    def consume(self, num_messages, timeout):
        if not self.batches:
            self.stop.set()
            return []
        batch = self.batches.pop(0)
        offsets = [m.offset() for m in batch if m.offset() is not None]
        self.next_offset = max([self.next_offset, *(o + 1 for o in offsets)])
        return batch

    # the client's own figures (consumer_lag)
    def assignment(self):
        return self.assigned

    def position(self, partitions):
        return [TopicPartition(tp.topic, tp.partition, self.next_offset) for tp in partitions]

    def get_watermark_offsets(self, tp, cached):
        assert cached  # never a broker round trip on the job's loop
        return (0, self.high)

    def close(self):
        self.closed = True


def run_with(job, batches):
    stop = threading.Event()
    made = []

    def make(config):
        made.append(ScriptedConsumer(config, batches, stop))
        return made[0]

    job._make_consumer = make
    job.run(stop)
    (consumer,) = made
    assert consumer.closed
    return consumer


def as_message(rec):
    return Message(rec.partition, rec.offset, rec.value, rec.headers.items(), rec.key)


def test_the_archive_loop_commits_what_it_read_and_skips_what_kafka_flags(tmp_path):
    lake = Lake(str(tmp_path))
    readings, rejected = FakeIcebergTable(READINGS, lake), FakeIcebergTable(REJECTED, lake)
    archiver = TopicArchiver(
        readings,
        TOPIC,
        build=build_readings,
        consumer_config={"group.id": "test"},
        **CONTRACT,
        rotate_rows=1000,
        rotate_seconds=60,
        rejected=rejected,
    )
    eof = Message(0, None, None, error=Error(KafkaError._PARTITION_EOF))
    consumer = run_with(
        archiver,
        [
            [as_message(reading(0)), as_message(reading(1)), eof],
            [Message(None, None, b"x"), as_message(foreign(2))],  # no partition: skipped
        ],
    )
    assert consumer.config["enable.auto.commit"] is False  # offsets live in the table
    assert readings.rows().num_rows == 2 and rejected.rows().num_rows == 1
    assert committed_offsets(readings.properties, TOPIC) == {0: 3}
    # The metrics: 5 records in the partition, 2 read and none archived at the first
    # (and only) lag reading; the newest event time and the bytes of the last flush.
    assert archiver.stats.lag == 3
    newest = datetime(2026, 11, 24, 23, 59, 59, 500_000, tzinfo=UTC)  # reading()'s dt
    assert archiver.stats.newest_event_unix == newest.timestamp()
    assert archiver.stats.bytes == readings.bytes_written > 0


def test_a_fatal_kafka_error_stops_the_loop_and_the_table_keeps_its_checkpoint(tmp_path):
    from confluent_kafka import KafkaException

    lake = Lake(str(tmp_path))
    readings = FakeIcebergTable(READINGS, lake)
    archiver = TopicArchiver(
        readings,
        TOPIC,
        build=build_readings,
        consumer_config={},
        **CONTRACT,
        rotate_rows=1000,
        rotate_seconds=60,
    )
    fatal = Message(0, None, None, error=Error(KafkaError._FATAL, fatal=True))
    with pytest.raises(KafkaException):
        run_with(archiver, [[as_message(reading(0))], [fatal]])
    assert readings.commits == []  # a restart replays from the table's (empty) checkpoint


def minute_job(table, producer):
    return MinuteJob(
        table,
        consumer_config={"bootstrap.servers": "127.0.0.1:1"},
        producer=producer,
        ranges=SensorRanges(lambda: iter(SENSORS), "iot.sensors"),
        readings_topic="iot.readings",
        out_topic="iot.readings.1m",
        policy=WindowPolicy(lateness_s=5, commit_s=60, idle_s=60),
        bounds=DEFAULT_BOUNDS,
        max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES,
    )


def test_the_minute_loop_emits_and_checkpoints_what_it_read(tmp_path, monkeypatch):
    monkeypatch.setattr(resample, "ensure_topics", lambda *_a, **_k: None)
    table = FakeIcebergTable(READINGS_1M_REVISIONS, Lake(str(tmp_path)))
    producer = FakeProducer()
    job = minute_job(table, producer)
    t = recent_minute()
    batch = []
    for i in range(70):  # minute 0 and ten seconds of minute 1: minute 0 closes
        payload, headers, ts_ms = record("Sensor 1", t + i * 1_000_000, 2.0, t + i * 1_000_000)
        batch.append(Message(0, i, payload, headers, ts_ms=ts_ms))
    run_with(job, [batch])
    assert committed_offsets(table.properties, "iot.readings") == {0: 70}
    (emitted,) = producer.produced
    assert emitted[0] == "iot.readings.1m"
    assert [r["count"] for r in table.rows().to_pylist()] == [60]


def test_a_rebalance_after_an_uncommitted_checkpoint_leaves_no_stale_progress(
    tmp_path, monkeypatch
):
    """Kafka away, the group rebalances: the revoke's checkpoint keeps the table's older
    one (nothing to emit yet), the partition comes back and is read again from there.
    Before the fix a stale first offset outlived the next one: KeyError, the jobs died
    (seen in the Kafka-outage test)."""
    table = FakeIcebergTable(READINGS_1M_REVISIONS, Lake(str(tmp_path)))
    job = minute_job(table, FakeProducer())

    class Consumer:
        def assign(self, partitions):
            pass

        def unassign(self):
            pass

    tp = TopicPartition("iot.readings", 0)
    job._on_assign(Consumer(), [tp])
    t = recent_minute()
    for i in range(5):  # a minute still open: nothing to emit
        payload, headers, ts_ms = record("Sensor 1", t + i * 1_000_000, 2.0, t + i * 1_000_000)
        job.apply(0, i, payload, headers, ts_ms)
    job._on_revoke(Consumer(), [TopicPartition("iot.readings", 0)])
    assert table.commits == []  # the revoke kept the table's (empty) checkpoint
    job._on_assign(Consumer(), [TopicPartition("iot.readings", 0)])
    job.checkpoint(0)  # nothing read since it came back: nothing to do, no KeyError
    for i in range(5):  # read again from the table's checkpoint
        payload, headers, ts_ms = record("Sensor 1", t + i * 1_000_000, 2.0, t + i * 1_000_000)
        job.apply(0, i, payload, headers, ts_ms)
    assert job._first[0] == 0 and job._next[0] == 5


# -- several members of one consumer group ----------------------------------------------


def test_the_archive_loop_rejoins_the_group_when_its_commit_is_fenced(tmp_path):
    """Between two batches another member takes partition 0 and archives a record:
    this member's next flush is refused, it drops its buffer and rejoins with a new
    consumer, whose assignment resumes at the table's offset."""
    lake = Lake(str(tmp_path))
    readings = FakeIcebergTable(READINGS, lake)

    def member():
        return TopicArchiver(
            readings,
            TOPIC,
            build=build_readings,
            consumer_config={},
            **CONTRACT,
            rotate_rows=1,
            rotate_seconds=60,
        )

    archiver, other = member(), member()
    stop = threading.Event()
    first = [[as_message(reading(0)), as_message(reading(1))], [as_message(reading(3))]]
    again = [[as_message(reading(i)) for i in range(2, 6)]]  # from before the table's offset

    class TakenOver(ScriptedConsumer):
        def consume(self, num_messages, timeout):
            if len(self.batches) == 1:  # after the first flush: the other member takes over
                other._on_assign(ScriptedConsumer({}, [], stop), [TopicPartition(TOPIC, 0)])
                other.add([reading(2)])
                other.flush()
            return super().consume(num_messages, timeout)

    made = []

    def make(config):
        made.append(
            (TakenOver if not made else ScriptedConsumer)(config, [first, again][len(made)], stop)
        )
        return made[-1]

    archiver._make_consumer = make
    archiver.run(stop)
    assert len(made) == 2 and all(c.closed for c in made)
    rows = readings.rows()
    assert sorted(rows["kafka_offset"].to_pylist()) == list(range(6))
    assert committed_offsets(readings.properties, TOPIC) == {0: 6}


class LeaseConsumer:
    """What the quality job's rebalance callbacks use of its consumer."""

    def __init__(self):
        self.assigned = None

    def list_topics(self, topic, timeout):
        partitions = {"iot.readings.1m": 3, "iot.readings.dlq": 1}[topic]
        meta = SimpleNamespace(partitions={p: None for p in range(partitions)})
        return SimpleNamespace(topics={topic: meta})

    def assign(self, partitions):
        self.assigned = [(tp.topic, tp.partition, tp.offset) for tp in partitions]

    def unassign(self):
        self.assigned = []


def test_the_quality_job_runs_in_the_member_that_holds_the_lease(tmp_path):
    """The member assigned the dead-letter partition reads both inputs whole and
    commits; the lease moves with a checkpoint; a holder that stalled while it moved
    is refused."""
    table = FakeIcebergTable(SENSOR_QUALITY_1M_REVISIONS, Lake(str(tmp_path)))

    def member():
        return QualityJob(
            table,
            consumer_config={},
            producer=FakeProducer(),
            sensors=SensorList(lambda: [], 1000),
            minutes_topic="iot.readings.1m",
            dlq_topic="iot.readings.dlq",
            out_topic="iot.quality.1m",
            status_topic="iot.quality.status",
            commit_s=1,
            bounds=DEFAULT_BOUNDS,
        )

    start = datetime.fromtimestamp(recent_minute() / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    minute = {"sensor_id": "A", "window_start": start, "count": 60, "out_of_range_count": 0}

    def feed(job, offset, revision):
        value = orjson.dumps({**minute, "revision": revision})
        job.apply("iot.readings.1m", 1, offset, value, None, 0)

    lease = [TopicPartition("iot.readings.dlq", 0)]
    a, b, c = member(), member(), member()
    ca, cb, cc = LeaseConsumer(), LeaseConsumer(), LeaseConsumer()
    a._on_assign(ca, lease)
    b._on_assign(cb, [])
    assert (a.stats.leading, b.stats.leading) == (1, 0)
    assert a.recovered.is_set() and b.recovered.is_set()
    assert cb.assigned == []
    assert sorted(ca.assigned) == [("iot.readings.1m", p, OFFSET_BEGINNING) for p in range(3)] + [
        ("iot.readings.dlq", 0, OFFSET_BEGINNING)
    ]
    feed(a, 0, 1)
    a.checkpoint()
    feed(a, 1, 2)
    a._on_revoke(ca, lease)  # b joins, the lease moves: a checkpoints first
    assert committed_offsets(table.properties, "iot.readings.1m") == {1: 2}
    assert a.stats.leading == 0 and ca.assigned == []
    b._on_assign(cb, lease)
    assert ("iot.readings.1m", 1, 2) in cb.assigned
    assert b.state.cells == a_state_of(table).cells  # restored from a's last checkpoint
    feed(b, 2, 3)  # b stalls; the group gives the lease to c
    c._on_assign(cc, lease)
    with pytest.raises(Fenced):
        b.checkpoint()
    assert committed_offsets(table.properties, "iot.readings.1m") == {1: 2}
    feed(c, 2, 3)
    c.checkpoint()
    assert committed_offsets(table.properties, "iot.readings.1m") == {1: 3}


def a_state_of(table):
    """The quality state the table's last commit names."""
    from stream_jobs.checkpoint import state_key
    from stream_jobs.quality import QualityState

    path = table.properties[state_key("iot.readings.1m", 0)]
    return QualityState.restore(table.lake.read_json(table.lake.path(path)))
