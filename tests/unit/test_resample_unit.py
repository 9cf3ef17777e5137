"""The 1-minute job around the windows, without Kafka: records in, lake out."""

import logging
import time
from datetime import UTC, datetime

import orjson
import pyarrow.dataset as ds
import pytest

import stream_jobs.resample as resample
from mqtt_bridge.contract import TimeBounds
from stream_jobs.lake import Lake
from stream_jobs.resample import MinuteJob, SensorRanges, range_of, record_received_us
from stream_jobs.windows import MINUTE_US

S = 1_000_000


class FakeProducer:
    def __init__(self, _config):
        self.produced: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic, key, value):
        self.produced.append((topic, key, value))

    def flush(self, _timeout):
        return 0  # all confirmed


@pytest.fixture
def sensors_topic(monkeypatch):
    """What iot.sensors holds (key, value), read by SensorRanges.refresh."""
    entries: list[tuple[bytes | None, bytes | None]] = [
        (b"Sensor 1", orjson.dumps({"range": [0, 45]})),
        (b"Sensor 2", orjson.dumps({"range": [0, 45]})),
    ]
    monkeypatch.setattr(resample, "read_partitions", lambda *_a, **_k: iter(list(entries)))
    return entries


@pytest.fixture
def crashes(monkeypatch):
    passed: list[str] = []
    monkeypatch.setattr(resample, "crash_point", passed.append)
    return passed


def job_on(tmp_path, monkeypatch, **kwargs):
    monkeypatch.setattr(resample, "Producer", FakeProducer)
    job = MinuteJob(
        Lake(str(tmp_path)),
        "127.0.0.1:1",
        "test",
        "iot.readings",
        "iot.sensors",
        "iot.readings.1m",
        lateness_s=5,
        commit_s=2,
        idle_s=5,
        zstd_level=3,
        **kwargs,
    )
    job.ranges.refresh()
    resume = job.recover(0)
    if resume is not None:
        job._next[0] = resume  # as resume_at_checkpoints does
    return job


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


def lake_rows(tmp_path):
    path = tmp_path / "curated" / "readings_1m_revisions"
    table = ds.dataset(str(path), format="parquet", partitioning="hive").to_table()
    return sorted(
        (r["sensor_id"], r["window_start"], r["revision"], r["count"], r["sum"])
        for r in table.to_pylist()
    )


def test_received_time_comes_from_the_header_else_the_kafka_timestamp():
    assert record_received_us([("received_at", b"2026-11-25T00:00:01")], 5) == 1_795_564_801 * S
    assert record_received_us([("received_at", None)], 5) == 5000
    assert record_received_us([("received_at", b"\xff")], 5) == 5000
    assert record_received_us(None, 7) == 7000
    assert record_received_us({"received_at": "2026-11-25T00:00:01"}, 5) == 1_795_564_801 * S


def test_a_reading_dated_9999_is_skipped_and_moves_nothing(tmp_path, monkeypatch, sensors_topic):
    job = job_on(tmp_path, monkeypatch)
    t = recent_minute()
    good = [record("Sensor 1", t + i * S, 10.0, t + i * S + 3000) for i in range(30)]
    bad = record("Sensor 2", 253_370_764_800 * S, 1.0, t + 31 * S)  # dt_in_future
    n = feed(job, [*good, bad])
    assert job.stats["skipped_invalid"] == 1
    assert job.windows[0].clock_us == t + 29 * S  # min(dt, receive time), newest reading
    feed(job, [record("Sensor 1", t + 40 * S, 10.0, t + 40 * S)], n)
    assert job.windows[0].late == 0


def ahead_of_now(us):
    """A time `us` after the wall clock, and the start of its minute."""
    at = time.time_ns() // 1000 + us
    return at, at - at % MINUTE_US


def test_a_forged_receive_time_drags_the_clock_no_further_than_max_ahead(
    tmp_path, monkeypatch, sensors_topic
):
    job = job_on(tmp_path, monkeypatch)
    # a reading dated 6 minutes ahead: its window closes beyond now + max-ahead (5 min)
    at, start = ahead_of_now(6 * MINUTE_US)
    feed(job, [record("Sensor 1", at, 10.0, at)])
    far = 253_370_764_800 * S
    feed(job, [record("Sensor 2", far, 1.0, far)], 1)  # accepted: dt is its receive time
    assert job.windows[0].clock_us <= time.time_ns() // 1000 + 300 * S
    assert ("Sensor 1", start) in job.windows[0].open


def test_a_record_that_fails_is_counted_logged_and_skipped(
    tmp_path, monkeypatch, sensors_topic, caplog
):
    job = job_on(tmp_path, monkeypatch)
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
    assert job.stats["errors"] == 1 and job.stats["skipped_invalid"] == 2
    assert job.stats["readings"] == 1 and job._next[0] == 4
    assert "boom" in caplog.text


def test_late_readings_are_one_revision_per_checkpoint_and_survive_a_crash(
    tmp_path, monkeypatch, sensors_topic, crashes
):
    job = job_on(tmp_path, monkeypatch)
    t = recent_minute()
    on_time = [record("Sensor 1", t + i * S, float(i % 40), t + i * S + 3000) for i in range(70)]
    n = feed(job, on_time)  # minute 0 closes at t + 65 s
    job.checkpoint(0)
    assert crashes == ["minute.emitted", "minute.pending", "minute.written"]
    assert [r[2:] for r in lake_rows(tmp_path)] == [(1, 60, sum(i % 40 for i in range(60)))]

    # 30 late readings for minute 0 (a device an hour behind would look the same)
    late = [record("Sensor 1", t + i * S, 1.0, t + 80 * S + i) for i in range(30)]
    after_late = feed(job, late, n)
    assert job.stats["late"] == 30
    # crash before the checkpoint: a new job resumes from the last one and replays
    job = job_on(tmp_path, monkeypatch)
    assert job._next == {0: n}
    feed(job, late, n)
    crashes.clear()
    job.checkpoint(0)
    assert crashes == ["minute.emitted", "minute.pending", "minute.written"]
    rows = lake_rows(tmp_path)
    first = sum(i % 40 for i in range(60))
    assert [r[2:] for r in rows] == [(1, 60, first), (2, 90, first + 30)]  # one correction
    path = next((tmp_path / "_checkpoints" / "readings_1m_revisions").iterdir())
    doc = orjson.loads(path.read_bytes())
    assert doc["next_offset"] == after_late and doc["windows"]["dirty"] == []

    crashes.clear()
    job.checkpoint(0)  # nothing read since: nothing emitted, no crash point reached
    assert crashes == []


def test_an_old_checkpoint_with_a_dragged_clock_restores_capped(
    tmp_path, monkeypatch, sensors_topic
):
    lake = Lake(str(tmp_path))
    old = {
        "topic": "iot.readings",
        "partition": 0,
        "next_offset": 7,
        "windows": {"clock_us": 253_370_764_800 * S, "open": []},
        "pending": None,
    }
    lake.write_json(lake.path("_checkpoints", "readings_1m_revisions", "iot.readings+0.json"), old)
    job = job_on(tmp_path, monkeypatch)
    assert job._next == {0: 7}
    assert job.windows[0].clock_us <= time.time_ns() // 1000 + 300 * S
    at, start = ahead_of_now(6 * MINUTE_US)
    feed(job, [record("Sensor 1", at, 1.0, at - 2 * MINUTE_US)], 7)
    assert job.windows[0].late == 0 and ("Sensor 1", start) in job.windows[0].open


def test_the_job_takes_the_contracts_bounds(tmp_path, monkeypatch, sensors_topic):
    job = job_on(tmp_path, monkeypatch, bounds=TimeBounds.of(datetime(2000, 1, 1), 3600))
    t = recent_minute()
    feed(job, [record("Sensor 1", t + 1800 * S, 1.0, t)])  # 30 min ahead: within an hour
    assert job.stats["readings"] == 1 and job.stats["skipped_invalid"] == 0


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
    monkeypatch.setattr(resample, "read_partitions", lambda *_a, **_k: iter(entries))
    ranges = SensorRanges("127.0.0.1:1", "iot.sensors")
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
