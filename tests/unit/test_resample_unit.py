"""The 1-minute job around the windows, without Kafka or a metastore: records in,
emissions and checkpoints out, to an in-memory table (FakeIcebergTable) whose state
files live in a real lake."""

import logging
import time
from datetime import UTC, datetime

import orjson
import pytest
from confluent_kafka import TopicPartition

import stream_jobs.resample as resample
from iot_common.contract import DEFAULT_BOUNDS, DEFAULT_MAX_PAYLOAD_BYTES, TimeBounds
from stream_jobs.checkpoint import state_key
from stream_jobs.errors import Fenced, LakeError
from stream_jobs.iceberg import offset_key
from stream_jobs.lake import Lake
from stream_jobs.resample import (
    IDLE_COMMIT_S,
    MinuteJob,
    SensorRanges,
    WindowPolicy,
    range_of,
    record_received_us,
)
from stream_jobs.tables import READINGS_1M_REVISIONS
from stream_jobs.windows import MINUTE_US
from tests.unit.test_iceberg import CommitFailed, FakeIcebergTable

S = 1_000_000


class FakeProducer:
    def __init__(self):
        self.produced: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic, *, key, value):
        self.produced.append((topic, key, value))

    def poll(self, _timeout):
        return 0

    def flush(self, _timeout):
        return 0  # all confirmed


# What iot.sensors holds (key, value), read by SensorRanges.refresh.
SENSORS: list[tuple[bytes | None, bytes | None]] = [
    (b"Sensor 1", orjson.dumps({"range": [0, 45]})),
    (b"Sensor 2", orjson.dumps({"range": [0, 45]})),
]


@pytest.fixture
def crashes(monkeypatch):
    passed: list[str] = []
    monkeypatch.setattr(resample, "crash_point", passed.append)
    return passed


@pytest.fixture
def table(tmp_path):
    """curated.readings_1m_revisions in memory; its state files in a lake on tmp_path."""
    return FakeIcebergTable(READINGS_1M_REVISIONS, Lake(str(tmp_path)))


class FakeConsumer:
    def assign(self, partitions):
        self.assigned = list(partitions)


def job_on(table, **kwargs):
    """A (re)started job, assigned partition 0 of the readings topic as the consumer
    group would: recovered from what the table's last commit names."""
    job = MinuteJob(
        table,
        consumer_config={"bootstrap.servers": "127.0.0.1:1", "group.id": "test"},
        producer=FakeProducer(),
        ranges=SensorRanges(lambda: iter(SENSORS), "iot.sensors"),
        readings_topic="iot.readings",
        out_topic="iot.readings.1m",
        policy=WindowPolicy(lateness_s=5, commit_s=2, idle_s=5),
        **{"bounds": DEFAULT_BOUNDS, "max_payload_bytes": DEFAULT_MAX_PAYLOAD_BYTES, **kwargs},
    )
    job.ranges.refresh()
    job._on_assign(FakeConsumer(), [TopicPartition("iot.readings", 0)])
    return job


def state_files(table):
    return table.lake.list_files(table.lake.path("_state"))


def named_state(table):
    """The state file the table's last commit names, as a document."""
    return table.lake.read_json(table.lake.path(table.properties[state_key("iot.readings", 0)]))


def iso(us):
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def record(sensor, dt_us, value, received_us):
    """value, headers and Kafka timestamp of a record as the bridge produces it."""
    payload = orjson.dumps({"id": sensor, "dt": iso(dt_us), "value": value})
    headers = [("mqtt_topic", b"sensors"), ("received_at", iso(received_us).encode())]
    return payload, headers, received_us // 1000


def feed(job, records, start=0):
    for offset, (payload, headers, ts_ms) in enumerate(records, start):
        job.apply(0, offset, payload, headers, ts_ms)
    return start + len(records)


def recent_minute():
    """A minute that ended 10 minutes ago (all of it in the past of the wall clock)."""
    now = time.time_ns() // 1000
    return now - now % MINUTE_US - 10 * MINUTE_US


def lake_rows(table):
    return sorted(
        (r["sensor_id"], r["window_start"], r["revision"], r["count"], r["sum"])
        for r in table.rows().to_pylist()
    )


def test_received_time_comes_from_the_header_else_the_kafka_timestamp():
    assert record_received_us([("received_at", b"2026-11-25T00:00:01")], 5) == 1_795_564_801 * S
    assert record_received_us([("received_at", None)], 5) == 5000
    assert record_received_us([("received_at", b"\xff")], 5) == 5000
    assert record_received_us(None, 7) == 7000
    assert record_received_us({"received_at": "2026-11-25T00:00:01"}, 5) == 1_795_564_801 * S


def test_a_reading_dated_9999_is_skipped_and_moves_nothing(table, monkeypatch):
    job = job_on(table)
    t = recent_minute()
    good = [record("Sensor 1", t + i * S, 10.0, t + i * S + 3000) for i in range(30)]
    bad = record("Sensor 2", 253_370_764_800 * S, 1.0, t + 31 * S)  # dt_in_future
    n = feed(job, [*good, bad])
    assert job.stats.skipped_invalid == 1
    assert job.windows[0].clock_us == t + 29 * S  # min(dt, receive time), newest reading
    feed(job, [record("Sensor 1", t + 40 * S, 10.0, t + 40 * S)], n)
    assert job.windows[0].late == 0


def ahead_of_now(us):
    """A time `us` after the wall clock, and the start of its minute."""
    at = time.time_ns() // 1000 + us
    return at, at - at % MINUTE_US


def test_a_forged_receive_time_drags_the_clock_no_further_than_max_ahead(table, monkeypatch):
    job = job_on(table)
    # a reading dated 6 minutes ahead: its window closes beyond now + max-ahead (5 min)
    at, start = ahead_of_now(6 * MINUTE_US)
    feed(job, [record("Sensor 1", at, 10.0, at)])
    far = 253_370_764_800 * S
    feed(job, [record("Sensor 2", far, 1.0, far)], 1)  # accepted: dt is its receive time
    assert job.windows[0].clock_us <= time.time_ns() // 1000 + 300 * S
    assert ("Sensor 1", start) in job.windows[0].open


def test_a_record_that_fails_is_counted_logged_and_skipped(table, monkeypatch, caplog):
    job = job_on(table)
    t = recent_minute()
    real = job.ranges.in_range

    def in_range(sensor_id, value):
        if sensor_id == "poison":
            raise RuntimeError("boom")
        return real(sensor_id, value)

    monkeypatch.setattr(job.ranges, "in_range", in_range)
    with caplog.at_level(logging.ERROR, logger="stream_jobs.resample"):
        feed(
            job,
            [
                record("poison", t + S, 1.0, t + S),
                (b"not json", [], t // 1000),
                (None, None, t // 1000),
                record("Sensor 1", t + 2 * S, 3.0, t + 2 * S),
            ],
        )
    assert job.stats.errors == 1 and job.stats.skipped_invalid == 2
    assert job.stats.readings == 1 and job._next[0] == 4
    assert "boom" in caplog.text


def test_late_readings_are_one_revision_per_checkpoint_and_survive_a_crash(
    table, monkeypatch, crashes
):
    job = job_on(table)
    t = recent_minute()
    on_time = [record("Sensor 1", t + i * S, float(i % 40), t + i * S + 3000) for i in range(70)]
    n = feed(job, on_time)  # minute 0 closes at t + 65 s
    job.checkpoint(0)
    assert crashes == ["minute.emitted"]
    first = sum(i % 40 for i in range(60))
    assert [r[2:] for r in lake_rows(table)] == [(1, 60, first)]

    # 30 late readings for minute 0 (a device an hour behind would look the same)
    late = [record("Sensor 1", t + i * S, 1.0, t + 80 * S + i) for i in range(30)]
    after_late = feed(job, late, n)
    assert job.stats.late == 30
    # crash before the checkpoint: a new job resumes from the last one and replays;
    # the window closed before comes back from the table (load_closed)
    job = job_on(table)
    assert job._next == {0: n}
    feed(job, late, n)
    crashes.clear()
    job.checkpoint(0)
    assert crashes == ["minute.emitted"]
    rows = lake_rows(table)
    assert [r[2:] for r in rows] == [(1, 60, first), (2, 90, first + 30)]  # one correction
    assert rows[0][:2] == ("Sensor 1", datetime.fromtimestamp(t / S, UTC).replace(tzinfo=None))
    doc = named_state(table)
    assert doc["next_offset"] == after_late and doc["windows"]["dirty"] == []
    assert table.properties[offset_key("iot.readings", 0)] == str(after_late)
    assert len(state_files(table)) == 1  # the one before is deleted once replaced

    crashes.clear()
    commits = len(table.commits)
    job.checkpoint(0)  # nothing read since: nothing emitted, no crash point reached
    assert crashes == [] and len(table.commits) == commits


def test_a_checkpoint_commits_its_emissions_with_the_offset_and_the_state_file(table, monkeypatch):
    job = job_on(table)
    t = recent_minute()
    n = feed(job, [record("Sensor 1", t + i * S, 2.0, t + i * S) for i in range(70)])
    job.checkpoint(0)
    (commit,) = table.commits
    state = commit.properties[state_key("iot.readings", 0)]
    assert commit.properties == {
        offset_key("iot.readings", 0): str(n),
        state_key("iot.readings", 0): state,
    }
    assert state.startswith("_state/readings_1m_revisions/iot.readings+0/")
    assert len(commit.files) == 1  # the emissions, one file for their one day
    doc = named_state(table)
    assert (doc["topic"], doc["partition"], doc["next_offset"]) == ("iot.readings", 0, n)
    assert doc["windows"] == job.windows[0].snapshot()  # the open minute, t + 60 s ...
    (produced,) = job._producer.produced  # reached Kafka before the commit
    assert produced[0] == "iot.readings.1m"
    assert orjson.loads(produced[2])["count"] == 60


def test_a_checkpoint_with_nothing_to_emit_commits_once_a_minute(table, monkeypatch):
    job = job_on(table)
    t = recent_minute()
    n = feed(job, [record("Sensor 1", t + i * S, 1.0, t + i * S) for i in range(30)])
    job.checkpoint(0)  # the minute is still open: nothing to emit
    assert table.commits == [] and state_files(table) == []
    # A restart now replays from the table's (older) checkpoint: the same windows.
    again = job_on(table)
    assert again._next == {} and again.windows[0].open == {}
    job.checkpoints.claim([0])  # the partition back to the job that read it (`again` took it)

    job._last_commit[0] -= IDLE_COMMIT_S  # a minute without a commit
    job.checkpoint(0)
    (commit,) = table.commits
    assert commit.files == []
    assert commit.properties[offset_key("iot.readings", 0)] == str(n)
    job.checkpoint(0)  # and nothing read since: nothing at all
    assert len(table.commits) == 1

    # The windows come back from the state file the table names.
    restarted = job_on(table)
    assert restarted._next == {0: n}
    (agg,) = restarted.windows[0].open.values()
    assert (agg.count, agg.sum) == (30, 30.0)
    assert restarted.windows[0].clock_us == job.windows[0].clock_us


def test_state_files_of_commits_that_did_not_land_are_never_read(table, monkeypatch):
    job = job_on(table)
    t = recent_minute()
    n = feed(job, [record("Sensor 1", t + i * S, 1.0, t + i * S) for i in range(10)])
    job._last_commit[0] -= IDLE_COMMIT_S
    job.checkpoint(0)
    good = table.properties[state_key("iot.readings", 0)]
    feed(job, [record("Sensor 1", t + i * S, 1.0, t + i * S) for i in range(10, 20)], n)
    job._last_commit[0] -= IDLE_COMMIT_S
    table.fail_commits = 1
    with pytest.raises(CommitFailed):
        job.checkpoint(0)
    assert len(state_files(table)) == 2  # written, never named by the table

    restarted = job_on(table)
    assert state_files(table) == [table.lake.path(good)]  # the other one is deleted
    assert restarted._next == {0: n}
    (agg,) = restarted.windows[0].open.values()
    assert agg.count == 10


def test_a_state_file_the_table_names_must_exist(table, monkeypatch):
    table.properties.update(
        {
            offset_key("iot.readings", 0): "7",
            state_key("iot.readings", 0): "_state/readings_1m_revisions/iot.readings+0/gone.json",
        }
    )
    with pytest.raises(LakeError, match="missing from the lake"):
        job_on(table)


def test_an_old_checkpoint_with_a_dragged_clock_restores_capped(table, monkeypatch):
    old = {
        "topic": "iot.readings",
        "partition": 0,
        "next_offset": 7,
        "windows": {"clock_us": 253_370_764_800 * S, "open": []},
    }
    state = "_state/readings_1m_revisions/iot.readings+0/old.json"
    table.lake.write_json(table.lake.path(state), old)
    table.properties.update(
        {offset_key("iot.readings", 0): "7", state_key("iot.readings", 0): state}
    )
    job = job_on(table)
    assert job._next == {0: 7}
    assert job.windows[0].clock_us <= time.time_ns() // 1000 + 300 * S
    at, start = ahead_of_now(6 * MINUTE_US)
    feed(job, [record("Sensor 1", at, 1.0, at - 2 * MINUTE_US)], 7)
    assert job.windows[0].late == 0 and ("Sensor 1", start) in job.windows[0].open


def test_the_job_takes_the_contracts_bounds(table, monkeypatch):
    job = job_on(table, bounds=TimeBounds.of(datetime(2000, 1, 1), 3600))
    t = recent_minute()
    feed(job, [record("Sensor 1", t + 1800 * S, 1.0, t)])  # 30 min ahead: within an hour
    assert job.stats.readings == 1 and job.stats.skipped_invalid == 0


def test_sensor_ranges_skip_unusable_entries_and_say_so_once(monkeypatch, caplog):
    entries = [
        (b"\xff\xfe", orjson.dumps({"range": [0, 1]})),
        (b"list", b"[1, 2]"),
        (b"text", b'"range"'),
        (b"not json", b"{"),
        (b"strings", orjson.dumps({"range": ["a", "b"]})),
        (b"three", orjson.dumps({"range": [1, 2, 3]})),
        (b"bools", orjson.dumps({"range": [False, True]})),
        (b"reversed", orjson.dumps({"range": [5, 1]})),
        (b"no range", orjson.dumps({"unit": "C"})),
        (b"range object", orjson.dumps({"range": {"min": 0}})),
        (b"huge", b'{"range": [0, 1e999]}'),
        (b"gone", None),
        (None, b"{}"),
        (b"ok", orjson.dumps({"range": [-1, 2.5]})),
    ]
    ranges = SensorRanges(lambda: iter(entries), "iot.sensors")
    with caplog.at_level(logging.WARNING, logger="stream_jobs.resample"):
        ranges.refresh()
        ranges.refresh()
    assert ranges.ranges == {"ok": (-1.0, 2.5)}
    assert len(caplog.records) == 11  # once per unusable key, not per refresh
    assert ranges.in_range("strings", 1e9)  # no known range: in range


def test_range_of_never_raises():
    for value in (b"", b"null", b"1", b"{}", b'{"range": null}', b'{"range": [1, null]}'):
        assert range_of(value) is None
    assert range_of(b'{"range": [0, 45]}') == (0.0, 45.0)


def test_a_reading_received_well_after_its_dt_is_counted_late(table):
    job = job_on(table)
    t = recent_minute()
    on_time = [record("Sensor 1", t + i * S, 1.0, t + i * S + 2000) for i in range(58)]
    delayed = [record("Sensor 1", t + 58 * S + i, 1.0, t + 75 * S) for i in range(2)]
    after = [record("Sensor 1", t + 60 * S + i * S, 1.0, t + 76 * S + i * S) for i in range(10)]
    feed(job, on_time + delayed + after)
    job.checkpoint(0)
    (row,) = [
        r for r in table.rows().to_pylist() if r["window_start"].minute == t // 60_000_000 % 60
    ]
    assert (row["count"], row["late_count"]) == (60, 2)
    (produced,) = job._producer.produced
    assert orjson.loads(produced[2])["late_count"] == 2


def test_a_full_producer_queue_waits_for_deliveries_instead_of_failing():
    """A checkpoint after a replay may emit more than the producer's queue holds."""
    from stream_jobs.resample import produce

    class Full(FakeProducer):
        def __init__(self):
            super().__init__()
            self.full, self.polls = 2, 0

        def produce(self, topic, *, key, value):
            if self.full:
                self.full -= 1
                raise BufferError("Local: Queue full")
            super().produce(topic, key=key, value=value)

        def poll(self, _timeout):
            self.polls += 1
            return 0

    p = Full()
    produce(p, "t", key=b"k", value=b"v")
    assert p.produced == [("t", b"k", b"v")] and p.polls == 2


def test_a_member_that_lost_its_partition_cannot_checkpoint_it(table):
    """Member A stalls with readings applied since its checkpoint; the group gives the
    partition to B, which claims it and restores A's last state. A's checkpoint is
    refused (the table still names A's last state file, which stays), B's lands:
    every reading in its window once."""
    t = recent_minute()
    records = [record("Sensor 1", t + i * S, 1.0, t + i * S) for i in range(20)]
    a = job_on(table)
    feed(a, records[:10])
    a._last_commit[0] -= IDLE_COMMIT_S
    a.checkpoint(0)
    landed = table.properties[state_key("iot.readings", 0)]
    feed(a, records[10:], 10)
    b = job_on(table)  # claims partition 0, restores a's state: 10 readings, next 10
    assert b._next == {0: 10} and state_files(table) == [table.lake.path(landed)]
    a._last_commit[0] -= IDLE_COMMIT_S
    with pytest.raises(Fenced):
        a.checkpoint(0)
    assert table.properties[state_key("iot.readings", 0)] == landed
    assert table.lake.read_json(table.lake.path(landed)) is not None
    feed(b, records[10:], 10)
    b._last_commit[0] -= IDLE_COMMIT_S
    b.checkpoint(0)
    restarted = job_on(table)  # its recovery deletes a's refused state file
    (agg,) = restarted.windows[0].open.values()
    assert (agg.count, restarted._next) == (20, {0: 20})
    assert state_files(table) == [table.lake.path(table.properties[state_key("iot.readings", 0)])]
