"""The archive job without Kafka or a metastore: records in, rows built, and the
commit protocol run against an in-memory table (FakeIcebergTable)."""

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_common.contract import DEFAULT_BOUNDS, DEFAULT_MAX_PAYLOAD_BYTES
from iot_data_generator.readings import reading_payload
from stream_jobs.archive import TopicArchiver, since
from stream_jobs.errors import Fenced
from stream_jobs.iceberg import offset_properties
from stream_jobs.lake import Lake
from stream_jobs.records import Record, Source, build_readings, build_rejected, build_sensors
from stream_jobs.tables import READINGS, REJECTED, SENSORS
from tests.unit.test_iceberg import CommitFailed, FakeIcebergTable

# The contract's default limits, as the settings give them.
CONTRACT = {"bounds": DEFAULT_BOUNDS, "max_payload_bytes": DEFAULT_MAX_PAYLOAD_BYTES}
TOPIC = "iot.readings"


def reading(offset, day="2026-11-24", partition=0, sensor="Sensor 1"):
    from datetime import datetime, timedelta

    dt = datetime.fromisoformat(f"{day}T23:59:59.5")
    payload = reading_payload(sensor, dt, offset % 45)
    received = (dt + timedelta(microseconds=500_001)).isoformat().encode() + b"Z"
    headers = {"mqtt_topic": b"sensors", "received_at": received}
    return Record(partition, offset, 1_795_564_800_000, sensor.encode(), payload, headers)


def foreign(offset, payload=b"garbage", partition=0):
    """A record another producer wrote straight to the readings topic."""
    return Record(partition, offset, 1_795_564_800_000, None, payload, {})


class FakeConsumer:
    def __init__(self):
        self.assigned: list[TopicPartition] = []
        self.committed: list[list[TopicPartition]] = []

    def assign(self, partitions):
        self.assigned = list(partitions)

    def unassign(self):
        self.assigned = []

    def commit(self, offsets, asynchronous):
        self.committed.append(offsets)


@pytest.fixture
def tables(tmp_path):
    """raw.readings and raw.rejected in memory, their commits logged in one list."""
    lake, log = Lake(str(tmp_path)), []
    return FakeIcebergTable(READINGS, lake, log=log), FakeIcebergTable(REJECTED, lake, log=log)


def started(tables, clock=lambda: 0.0):
    """A (re)started archiver of the readings topic, not assigned anything yet."""
    readings, rejected = tables
    return TopicArchiver(
        readings,
        TOPIC,
        build=build_readings,
        consumer_config={},
        **CONTRACT,
        rotate_rows=1000,
        rotate_seconds=5,
        rejected=rejected,
        clock=clock,
    )


def assign(a, *partitions):
    """Assign partitions as the consumer group would: the offsets it resumes at."""
    tps = [TopicPartition(TOPIC, p) for p in partitions]
    a._on_assign(FakeConsumer(), tps)
    return {tp.partition: tp.offset for tp in tps}


def archiver(tables, clock=lambda: 0.0):
    """A (re)started archiver, assigned partition 0."""
    a = started(tables, clock)
    assign(a, 0)
    return a


def archived(table):
    """(kafka_partition, kafka_offset) of every committed row, sorted."""
    rows = table.rows()
    return sorted(
        zip(rows["kafka_partition"].to_pylist(), rows["kafka_offset"].to_pylist(), strict=True)
    )


def test_readings_columns_keep_payload_and_microseconds():
    rec = reading(7)
    table = build_readings([rec]).rows
    row = table.to_pylist()[0]
    assert row["payload"] == rec.value.decode()
    assert row["ts"].isoformat() == "2026-11-24T23:59:59.500000"
    assert row["received_at"].isoformat() == "2026-11-25T00:00:00.000001"
    assert str(row["event_date"]) == "2026-11-24"  # event time, not arrival time
    assert (row["kafka_partition"], row["kafka_offset"]) == (0, 7)


def test_a_record_the_contract_rejects_becomes_a_dead_letter():
    built = build_readings([foreign(1)])
    assert built.rows.num_rows == 0
    row = built.rejected.to_pylist()[0]
    assert row["payload"] == b"garbage" and row["reason_code"] == "not_json"
    assert row["reason"].startswith("not_json: ")
    assert row["kafka_topic"] == "iot.readings"
    assert (row["kafka_partition"], row["kafka_offset"]) == (0, 1)
    assert str(row["received_date"]) == "2026-11-25"  # filed under the day it arrived


def test_event_time_is_judged_against_the_receive_time_and_the_bounds():
    from datetime import datetime

    from iot_common.contract import TimeBounds

    late_clock = reading(0, "2026-11-26")
    # dt a day after its received_at header
    future = Record(0, 0, 0, None, late_clock.value, reading(0).headers)
    old = foreign(1, b'{"id": "S", "dt": "1999-12-31T23:59:59", "value": 1}')
    built = build_readings([reading(2), future, old])
    assert built.rows.column("kafka_offset").to_pylist() == [2]
    assert built.rejected.column("reason_code").to_pylist() == ["dt_in_future", "dt_too_old"]
    # Bounds come with the source: a later floor rejects the good one too.
    strict = Source("iot.readings", TimeBounds.of(datetime(2026, 11, 25), 300))
    codes = build_readings([reading(2)], strict).rejected.column("reason_code").to_pylist()
    assert codes == ["dt_too_old"]
    # Without the bridge's header, the Kafka record time is the receive time.
    no_header = Record(0, 3, 1_795_564_800_000, None, reading(3).value, {})
    assert build_readings([no_header]).rows.num_rows == 1


def test_an_unforeseen_failure_costs_one_record_not_the_archive(monkeypatch):
    from stream_jobs import records

    real = records._build_readings

    def fragile(records, source):
        if any(rec.offset == 1 for rec in records):
            raise RuntimeError("boom")
        return real(records, source)

    monkeypatch.setattr(records, "_build_readings", fragile)
    built = build_readings([reading(0), reading(1), reading(2)])
    assert built.rows.column("kafka_offset").to_pylist() == [0, 2]
    (row,) = built.rejected.to_pylist()
    assert row["kafka_offset"] == 1
    assert row["reason"] == "internal_error: RuntimeError: boom"
    assert row["reason_code"] == "internal_error"
    assert row["payload"] == reading(1).value


def test_receive_times_outside_the_calendar_do_not_raise():
    from stream_jobs.records import MAX_US, MIN_US, build_rejected, build_sensors

    for ts_ms in (-(2**62), -1, 2**62):
        rec = Record(0, 0, ts_ms, b"\xff", b"\xfe", {"received_at": b"\xff", "reason": None})
        row = build_readings([rec]).rejected.to_pylist()[0]
        assert row["reason_code"] == "not_json"
        rejected = build_rejected([rec]).rows.to_pylist()[0]
        assert rejected["reason_code"] == "unknown"
        sensors = build_sensors([rec]).rows.to_pylist()[0]
        assert sensors["sensor_id"] == "\ufffd"
    assert build_readings([Record(0, 0, -(2**62), None, b"x", {})]).rejected.column(
        "received_at"
    ).cast("int64").to_pylist() == [MIN_US]
    assert build_rejected([Record(0, 0, 2**62, None, b"x", {})]).rows.column("received_at").cast(
        "int64"
    ).to_pylist() == [MAX_US]


def test_split_by_event_date():
    from stream_jobs.iceberg import split_by_day

    table = build_readings(
        [reading(0, "2026-11-24"), reading(1, "2026-11-25"), reading(2, "2026-11-24")]
    ).rows
    parts = split_by_day(table, READINGS.partition_column)
    assert [(str(d), t.num_rows) for d, t in parts] == [("2026-11-24", 2), ("2026-11-25", 1)]


def test_a_flush_commits_every_partition_with_its_next_offset(tables):
    readings, rejected = tables
    a = started(tables)
    assign(a, 0, 1)
    consumer = a._consumer = FakeConsumer()
    a.add([reading(i, "2026-11-24" if i % 2 else "2026-11-25") for i in range(10)])
    a.add([reading(i, partition=1) for i in range(3)])
    a.flush()
    (commit,) = readings.commits
    assert commit.properties == offset_properties(TOPIC, {0: 10, 1: 3})
    assert len(commit.files) == 2  # one file per day
    assert commit.stop is a._stop  # a stopping job may give up waiting for the metastore
    assert archived(readings) == [(0, i) for i in range(10)] + [(1, i) for i in range(3)]
    assert readings.offsets(TOPIC) == {0: 10, 1: 3}
    assert rejected.commits == []  # no dead letters, nothing to commit there
    assert (a.stats.rows, a.stats.files, a.stats.commits) == (13, 2, 1)
    # Kafka's committed offsets follow the table (lag monitoring only)
    (kafka,) = consumer.committed
    assert sorted((tp.partition, tp.offset) for tp in kafka) == [(0, 10), (1, 3)]
    a.flush()  # nothing buffered: no commit
    assert len(readings.commits) == 1


def test_a_restart_resumes_at_the_offsets_the_table_holds(tables):
    readings, _ = tables
    a = archiver(tables)
    a.add([reading(i) for i in range(10)])
    a.flush()
    restarted = started(tables)
    assert assign(restarted, 0, 1) == {0: 10, 1: OFFSET_BEGINNING}
    # A replay of offsets below the table's is ignored.
    restarted.add([reading(i) for i in range(5, 12)])
    restarted.flush()
    assert archived(readings) == [(0, i) for i in range(12)]
    assert readings.commits[-1].properties == offset_properties(TOPIC, {0: 12})


def test_a_commit_that_fails_changes_nothing_and_the_replay_archives_once(tables):
    readings, _ = tables
    a = archiver(tables)
    a.add([reading(i) for i in range(3)])
    a.flush()
    # The next flush spans two dates; its commit never lands (the job stopped, or died).
    a.add([reading(3, "2026-11-24"), reading(4, "2026-11-25")])
    readings.fail_commits = 1
    with pytest.raises(CommitFailed):
        a.flush()
    assert archived(readings) == [(0, 0), (0, 1), (0, 2)]  # its files are orphans
    assert len(readings.written) == 2 and readings.offsets(TOPIC) == {0: 3}

    restarted = started(tables)
    assert assign(restarted, 0) == {0: 3}
    restarted.add([reading(i, "2026-11-24" if i == 3 else "2026-11-25") for i in range(3, 6)])
    restarted.flush()
    assert archived(readings) == [(0, i) for i in range(6)]


def test_rotation_by_rows_and_by_age(tables):
    readings, _ = tables
    now = {"t": 0.0}
    a = archiver(tables, clock=lambda: now["t"])
    a.rotate_rows = 3
    a.add([reading(0), reading(1)])
    a.flush_due()
    assert archived(readings) == []
    a.add([reading(2)])
    a.flush_due()
    assert len(archived(readings)) == 3  # full
    a.add([reading(3)])
    now["t"] = 4.9
    a.flush_due()
    assert len(archived(readings)) == 3
    now["t"] = 5.0
    a.flush_due()
    assert len(archived(readings)) == 4  # old enough


def test_one_full_partition_flushes_every_partition_in_one_commit(tables):
    readings, _ = tables
    a = started(tables)
    assign(a, 0, 1)
    a.rotate_rows = 3
    a.add([reading(0, partition=1)])
    a.add([reading(i) for i in range(3)])
    a.flush_due()
    (commit,) = readings.commits
    assert commit.properties == offset_properties(TOPIC, {0: 3, 1: 1})
    assert archived(readings) == [(0, 0), (0, 1), (0, 2), (1, 0)]


def test_a_revoked_partition_is_flushed_and_forgotten(tables):
    readings, _ = tables
    a = started(tables)
    assign(a, 0, 1)
    a.add([reading(0), reading(0, partition=1)])
    a._on_revoke(FakeConsumer(), [TopicPartition(TOPIC, 1)])
    assert archived(readings) == [(0, 0), (1, 0)]
    assert a.stats.assigned == [0] and 1 not in a._next


def test_sensor_versions_and_tombstones():
    records = [
        Record(
            0,
            0,
            1_795_564_800_000,
            b"Sensor 1",
            b'{"description":"Main Entrance","lat":10,"lng":10,"range":[0,45],'
            b'"type":"temperature","unit":"C"}',
            {},
        ),
        Record(0, 1, 1_795_564_801_000, b"Sensor 1", None, {}),
    ]
    rows = build_sensors(records, Source("iot.sensors")).rows.to_pylist()
    assert rows[0]["description"] == "Main Entrance" and rows[0]["range_max"] == 45
    assert rows[0]["seen_at"].isoformat() == "2026-11-25T00:00:00"
    assert rows[1]["deleted"] is True and rows[1]["payload"] is None


def test_rejected_rows_keep_bytes_and_reason():
    rec = Record(
        0,
        3,
        1_795_564_800_000,
        None,
        b"\xff oops",
        {"reason": b"not_json: unexpected character", "mqtt_topic": b"sensors"},
    )
    row = build_rejected([rec], Source("iot.readings.dlq")).rows.to_pylist()[0]
    assert row["payload"] == b"\xff oops"
    assert row["reason_code"] == "not_json"
    assert row["payload_text"].endswith(" oops")
    assert row["kafka_topic"] == "iot.readings.dlq"


def test_a_dead_letter_keeps_a_bounded_prefix_of_a_huge_payload():
    from stream_jobs.records import MAX_REJECTED_PAYLOAD_BYTES

    huge = b"x" * (MAX_REJECTED_PAYLOAD_BYTES * 3)
    row = build_readings([foreign(0, huge)]).rejected.to_pylist()[0]
    assert row["reason_code"] == "oversized"
    assert row["payload"] == huge[:MAX_REJECTED_PAYLOAD_BYTES]


def test_vectorised_and_row_by_row_parsing_agree():
    from stream_jobs.records import _judge, _parse_fast, _received_us

    values = [
        b'{"id": "Sensor 1", "dt": "2026-11-25T17:21:44.123456", "value": 17}',
        b'{"id": "Sensor 2", "dt": "2026-11-25T17:21:44", "value": -0.5, "extra": "x"}',
        b'{"value": 3, "dt": "2026-11-25T00:00:00.5", "id": "S"}',
        b'{"id": "S", "dt": "2026-11-25T00:00:00.5", "value": 1.5e-3, "n": null, "b": true}',
    ]
    records = [Record(0, i, 1_795_651_200_000, None, v, {}) for i, v in enumerate(values)]
    source = Source("iot.readings")
    received = _received_us(records)
    ids, ts, vals = _parse_fast(values, received, source)
    rows = [_judge(rec, r, source) for rec, r in zip(records, received.to_pylist(), strict=True)]
    assert list(zip(ids.to_pylist(), ts.to_pylist(), vals.to_pylist(), strict=True)) == rows


@pytest.mark.parametrize(
    "payload",
    [
        b'{"id": "S", "dt": "2026-11-25T02:00:00+02:00", "value": 1}',  # an offset
        b'{"id": "S", "dt": "2026-11-25 00:00:00", "value": 1}',  # a space
        b'{"id": "S", "dt": "2026-11-25T00:00:00Z", "value": 1}',
        b'{"id": "S", "dt": "2026-02-30T00:00:00", "value": 1}',
        b'{"id": "S", "dt": "2026-11-25T23:59:60", "value": 1}',
        b'{"id": "S", "dt": "0000-11-25T00:00:00", "value": 1}',
        b'{"id": "S", "dt": "2026-11-25T00:00:00.1234567", "value": 1}',
        b'{"id": "A", "id": "B", "dt": "2026-11-25T00:00:00", "value": 1}',
        b'{"id": "S", "dt": "2026-11-25T00:00:00", "value": 1, "\\u0069d": "T"}',
        b'{"id": "\xc2\xa0", "dt": "2026-11-25T00:00:00", "value": 1}',  # NBSP: blank
        b'{"id": "S", "dt": "2026-11-25T00:00:00", "value": "17"}',
        b'{"id": "S", "dt": "2026-11-25T00:00:00", "value": true}',
        b'{"id": "S", "dt": "2026-11-25T00:00:00", "value": -0}',
        b'{"id": "S", "dt": "2026-11-25T00:00:00", "value": 123456789012345678901234567890}',
        b'{"id": "S", "dt": "2026-11-25T00:00:00", "value": 1, "x": {"id": 1}}',
        b'{"id": "S\xff", "dt": "2026-11-25T00:00:00", "value": 1}',
        b'{"id": "S\xed\xa0\x80", "dt": "2026-11-25T00:00:00", "value": 1}',  # a surrogate
    ],
)
def test_what_the_fast_path_cannot_judge_goes_to_the_contract(payload):
    from stream_jobs.records import _judge, _parse_fast, _received_us

    rec = Record(0, 0, 1_795_651_200_000, None, payload, {})
    source = Source("iot.readings")
    received = _received_us([rec])
    assert _parse_fast([payload], received, source) is None
    verdict = _judge(rec, received[0].as_py(), source)
    built = build_readings([rec])
    if isinstance(verdict, str):
        assert built.rejected.column("reason").to_pylist() == [verdict]
    else:
        row = built.rows.to_pylist()[0]
        assert (row["sensor_id"], row["value"]) == (verdict[0], verdict[2])
        assert built.rows.column("ts").cast("int64").to_pylist() == [verdict[1]]


def test_a_payload_the_fast_path_cannot_judge_goes_row_by_row():
    with_offset = b'{"id": "S", "dt": "2026-11-25T02:00:00+02:00", "value": 1}'
    rows = build_readings([Record(0, 0, 1_795_564_800_000, None, with_offset, {})]).rows
    assert rows.to_pylist()[0]["ts"].isoformat() == "2026-11-25T00:00:00"
    mixed = build_readings([reading(0), foreign(1, b"[]")])
    assert mixed.rows.column("sensor_id").to_pylist() == ["Sensor 1"]
    assert mixed.rejected.column("reason_code").to_pylist() == ["not_object"]


# -- dead letters of the readings topic, committed with the readings -----------------


def test_a_flush_commits_dead_letters_first_with_the_same_offsets(tables):
    readings, rejected = tables
    a = archiver(tables)
    a.add([reading(0), foreign(1), reading(2), foreign(3, b'{"id": 1}')])
    a.flush()
    assert readings.log == ["rejected", "readings"]  # the dead letters never lag
    assert rejected.commits[0].properties == readings.commits[0].properties
    assert readings.commits[0].properties == offset_properties(TOPIC, {0: 4})
    assert archived(readings) == [(0, 0), (0, 2)]
    assert archived(rejected) == [(0, 1), (0, 3)]
    assert rejected.rows().column("kafka_topic").to_pylist() == [TOPIC, TOPIC]
    assert (a.stats.rows, a.stats.rejected) == (4, 2)


def test_a_failed_readings_commit_after_the_dead_letters_replays_without_doubling(tables):
    readings, rejected = tables
    a = archiver(tables)
    a.add([reading(0), foreign(1), reading(2), foreign(3)])
    readings.fail_commits = 1
    with pytest.raises(CommitFailed):
        a.flush()
    assert readings.log == ["rejected"]
    assert archived(rejected) == [(0, 1), (0, 3)] and archived(readings) == []

    # The restart reads from the readings' offsets (none) and skips the dead letters
    # below raw.rejected's own offsets; a new one past them is still kept.
    restarted = archiver(tables)
    assert restarted._rejected_from == {0: 4}
    restarted.add([reading(0), foreign(1), reading(2), foreign(3), foreign(4)])
    restarted.flush()
    assert archived(rejected) == [(0, 1), (0, 3), (0, 4)]
    assert archived(readings) == [(0, 0), (0, 2)]
    assert rejected.offsets(TOPIC) == readings.offsets(TOPIC) == {0: 5}
    assert restarted.stats.rejected == 3  # counted as read; written once

    # A replay whose dead letters are all in raw.rejected commits only the readings.
    readings.fail_commits = 1
    restarted.add([foreign(5), reading(6)])
    with pytest.raises(CommitFailed):
        restarted.flush()
    again = archiver(tables)
    again.add([foreign(5), reading(6)])
    log_before = list(readings.log)
    again.flush()
    assert readings.log[len(log_before) :] == ["readings"]
    assert archived(rejected) == [(0, 1), (0, 3), (0, 4), (0, 5)]
    assert archived(readings) == [(0, 0), (0, 2), (0, 6)]


def test_the_dead_letters_of_one_partition_do_not_skip_another(tables):
    readings, rejected = tables
    rejected.properties.update(offset_properties(TOPIC, {0: 100}))
    a = started(tables)
    assign(a, 0, 1)
    a.add([foreign(5), foreign(5, partition=1), foreign(150)])
    a.flush()
    assert archived(rejected) == [(0, 150), (1, 5)]
    assert archived(readings) == []
    assert readings.offsets(TOPIC) == {0: 151, 1: 6}


def test_the_dlq_and_the_readings_topic_share_raw_rejected_with_their_own_offsets(tables):
    readings, rejected = tables
    a = archiver(tables)
    a.add([foreign(0), reading(1)])
    a.flush()
    dlq = TopicArchiver(
        rejected,
        "iot.readings.dlq",
        build=build_rejected,
        consumer_config={},
        **CONTRACT,
        rotate_rows=10,
        rotate_seconds=5,
    )
    tp = TopicPartition("iot.readings.dlq", 0)
    dlq._on_assign(FakeConsumer(), [tp])
    assert tp.offset == OFFSET_BEGINNING  # the readings topic's offsets are not its own
    dlq.add(
        [Record(0, i, 1_795_564_800_000, None, b"x", {"reason": b"not_json: x"}) for i in range(3)]
    )
    dlq.flush()
    assert rejected.offsets("iot.readings.dlq") == {0: 3}
    assert rejected.offsets(TOPIC) == readings.offsets(TOPIC) == {0: 2}
    topics = rejected.rows().column("kafka_topic").to_pylist()
    assert sorted(topics) == [TOPIC] + ["iot.readings.dlq"] * 3


def test_a_table_without_dead_letters_archives_alone(tmp_path):
    sensors = FakeIcebergTable(SENSORS, Lake(str(tmp_path)))
    a = TopicArchiver(
        sensors,
        "iot.sensors",
        build=build_sensors,
        consumer_config={},
        **CONTRACT,
        rotate_rows=10,
        rotate_seconds=5,
    )
    a._on_assign(FakeConsumer(), [TopicPartition("iot.sensors", 0)])
    a.add([Record(0, 0, 1_795_564_800_000, b"Sensor 1", b'{"range": [0, 45]}', {})])
    a.add([Record(0, 1, 1_795_564_801_000, b"Sensor 1", None, {})])
    a.flush()
    (commit,) = sensors.commits
    assert len(commit.files) == 1 and commit.properties == offset_properties("iot.sensors", {0: 2})
    assert sensors.rows().column("deleted").to_pylist() == [False, True]


ROWS = st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 3)), st.integers(0, 50)), max_size=40)


@settings(max_examples=300, deadline=None, database=None)
@given(rows=ROWS, floors=st.dictionaries(st.integers(0, 4), st.integers(0, 60), max_size=4))
def test_since_keeps_exactly_the_rows_at_or_past_their_partitions_floor(rows, floors):
    import pyarrow as pa

    table = pa.table(
        {
            "kafka_partition": pa.array([p for p, _ in rows], pa.int32()),
            "kafka_offset": pa.array([o for _, o in rows], pa.int64()),
            "n": pa.array(range(len(rows)), pa.int64()),
        }
    )
    kept = since(table, floors)
    want = [i for i, (p, o) in enumerate(rows) if p is None or p not in floors or o >= floors[p]]
    assert kept.column("n").to_pylist() == want  # in their order
    assert kept.schema == table.schema


@pytest.mark.parametrize(
    ("size", "sha"),
    [
        (b"-1", b"zz"),
        (b"9" * 30, b"A" * 64),  # too long for a size; upper-case is not our hex
        (b"\xff\xfe", b"\xff" * 64),
        (b"", b""),
        (None, None),
    ],
)
def test_hostile_size_and_hash_headers_fall_back_to_the_payloads_own(size, sha):
    import hashlib

    from stream_jobs.records import Record, build_rejected

    headers = {"reason": b"not_json: x"}
    if size is not None:
        headers["payload_size"] = size
    if sha is not None:
        headers["payload_sha256"] = sha
    (row,) = build_rejected([Record(0, 0, 1_000, None, b"abc", headers)]).rows.to_pylist()
    assert row["payload_size"] == 3
    assert row["payload_sha256"] == hashlib.sha256(b"abc").hexdigest()


def test_the_bridges_size_and_hash_headers_are_kept_for_a_cut_payload():
    from stream_jobs.records import Record, build_rejected

    sha = b"0" * 64
    headers = {"reason": b"oversized: x", "payload_size": b"2000000", "payload_sha256": sha}
    (row,) = build_rejected([Record(0, 0, 1_000, None, b"abc", headers)]).rows.to_pylist()
    assert (row["payload_size"], row["payload_sha256"]) == (2_000_000, sha.decode())


# -- several members of one consumer group ----------------------------------------------


def test_a_member_that_lost_its_partition_can_never_commit_it(tables):
    """Member A archives partition 0 and stalls with records buffered; the group hands
    the partition to B, which claims it and resumes at the table's offset. A's flush
    is refused whether B committed yet or not: every record once."""
    readings, rejected = tables
    a = archiver(tables)
    a.add([reading(i) for i in range(5)])
    a.flush()
    a.add([reading(i) for i in range(5, 10)] + [foreign(10)])  # buffered; A stalls
    b = started(tables)
    assert assign(b, 0) == {0: 5}  # B claims partition 0 and resumes where A's commit ended
    with pytest.raises(Fenced):  # B has committed nothing yet: the claim alone fences A
        a.flush()
    b.add([reading(i) for i in range(5, 10)] + [foreign(10), reading(11)])
    b.flush()
    a.add([reading(i) for i in range(12, 14)])  # A, not told yet, reads on
    with pytest.raises(Fenced):
        a.flush()
    assert archived(readings) == [(0, i) for i in range(12) if i != 10]
    assert archived(rejected) == [(0, 10)]  # the dead letter once, by B
    assert readings.offsets(TOPIC) == rejected.offsets(TOPIC) == {0: 12}
    a._drop()  # what the run loop does then, before it rejoins the group
    assert (a._buffers, a._next, a.stats.assigned) == ({}, {}, [])
    assert a.checkpoint.claimed == [] and b.checkpoint.claimed == [0]


def test_a_fenced_dead_letter_commit_leaves_the_readings_uncommitted_too(tables):
    readings, rejected = tables
    a = archiver(tables)
    a.add([reading(0), foreign(1)])
    b = started(tables)
    assign(b, 0)
    with pytest.raises(Fenced):
        a.flush()  # raw.rejected's commit comes first, and is refused
    assert rejected.commits == [] and readings.commits == []
    b.add([reading(0), foreign(1)])
    b.flush()
    assert archived(readings) == [(0, 0)] and archived(rejected) == [(0, 1)]


def test_members_split_partitions_and_a_join_moves_them_without_loss(tables):
    """Two members take partitions 0 and 1; a rebalance (B joins: the group revokes
    A's, then assigns) commits what A buffered before B claims it."""
    readings, _ = tables
    a = started(tables)
    assign(a, 0, 1)
    a.add([reading(i) for i in range(3)] + [reading(i, partition=1) for i in range(2)])
    a._on_revoke(FakeConsumer(), [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])
    b = started(tables)
    assert assign(a, 0) == {0: 3} and assign(b, 1) == {1: 2}
    a.add([reading(i) for i in range(2, 5)])  # a little replayed: skipped
    b.add([reading(i, partition=1) for i in range(1, 4)])
    b.flush()
    a.flush()
    assert archived(readings) == [(0, i) for i in range(5)] + [(1, i) for i in range(4)]
    assert readings.offsets(TOPIC) == {0: 5, 1: 4}
