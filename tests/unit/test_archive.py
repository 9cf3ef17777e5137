import pyarrow.dataset as ds
import pytest

from iot_data_generator.readings import reading_payload
from stream_jobs.archive import TopicArchiver, data_file_name, split_by_partition
from stream_jobs.errors import LakeError
from stream_jobs.lake import Lake
from stream_jobs.tables import READINGS, REJECTED, SENSORS, Record, Source, build_readings


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


def archiver(tmp_path, clock=lambda: 0.0):
    return TopicArchiver(
        READINGS,
        "iot.readings",
        Lake(str(tmp_path)),
        {},
        rotate_rows=1000,
        rotate_seconds=5,
        zstd_level=3,
        clock=clock,
    )


def archived(tmp_path, table_name="readings"):
    path = tmp_path / "raw" / table_name
    if not any(path.rglob("*.parquet")):
        return []
    table = ds.dataset(str(path), format="parquet", partitioning="hive").to_table()
    return sorted(
        zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist(), strict=True)
    )


def test_file_names_sort_by_offset():
    assert data_file_name("t", 2, 5, 10) < data_file_name("t", 2, 11, 12)
    assert data_file_name("t", 2, 5, 10) == "t+2+0000000000000000005+0000000000000000010.parquet"


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

    from mqtt_bridge.contract import TimeBounds

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
    from stream_jobs import tables

    real = tables._build_readings

    def fragile(records, source):
        if any(rec.offset == 1 for rec in records):
            raise RuntimeError("boom")
        return real(records, source)

    monkeypatch.setattr(tables, "_build_readings", fragile)
    built = build_readings([reading(0), reading(1), reading(2)])
    assert built.rows.column("kafka_offset").to_pylist() == [0, 2]
    (row,) = built.rejected.to_pylist()
    assert row["kafka_offset"] == 1
    assert row["reason"] == "internal_error: RuntimeError: boom"
    assert row["reason_code"] == "internal_error"
    assert row["payload"] == reading(1).value


def test_receive_times_outside_the_calendar_do_not_raise():
    from stream_jobs.tables import MAX_US, MIN_US, build_rejected, build_sensors

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
    table = build_readings(
        [reading(0, "2026-11-24"), reading(1, "2026-11-25"), reading(2, "2026-11-24")]
    ).rows
    parts = split_by_partition(table, "event_date")
    assert [(f, t.num_rows) for f, t in parts] == [
        ("event_date=2026-11-24", 2),
        ("event_date=2026-11-25", 1),
    ]
    assert "event_date" not in parts[0][1].column_names


def test_flush_writes_each_record_once_and_moves_the_checkpoint(tmp_path):
    a = archiver(tmp_path)
    a.add([reading(i, "2026-11-24" if i % 2 else "2026-11-25") for i in range(10)])
    a.flush(0)
    assert archived(tmp_path) == [(0, i) for i in range(10)]
    assert a.recover(0) == 10
    # A replay of offsets below the checkpoint is ignored.
    a.add([reading(i) for i in range(5, 12)])
    a.flush(0)
    assert archived(tmp_path) == [(0, i) for i in range(12)]


def test_crash_in_the_middle_of_a_flush_is_rolled_back(tmp_path, monkeypatch):
    a = archiver(tmp_path)
    a.add([reading(i) for i in range(3)])
    a.flush(0)
    # Next flush spans two dates; the process dies after the first file.
    a.add([reading(3, "2026-11-24"), reading(4, "2026-11-25")])
    lake = a.lake
    real_write = lake.write_atomic
    calls = {"n": 0}

    def dying_write(path, data):
        if path.endswith(".parquet"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise LakeError("power cut")
        real_write(path, data)

    monkeypatch.setattr(lake, "write_atomic", dying_write)
    with pytest.raises(LakeError):
        a.flush(0)
    assert (0, 3) in archived(tmp_path)  # the half-done flush is visible until recovery
    monkeypatch.setattr(lake, "write_atomic", real_write)

    restarted = archiver(tmp_path)
    assert restarted.recover(0) == 3
    assert archived(tmp_path) == [(0, 0), (0, 1), (0, 2)]
    restarted.add([reading(i, "2026-11-24" if i == 3 else "2026-11-25") for i in range(3, 6)])
    restarted.flush(0)
    assert archived(tmp_path) == [(0, i) for i in range(6)]


def test_rotation_by_rows_and_by_age(tmp_path):
    now = {"t": 0.0}
    a = archiver(tmp_path, clock=lambda: now["t"])
    a.rotate_rows = 3
    a.add([reading(0), reading(1)])
    a.flush_due()
    assert archived(tmp_path) == []
    a.add([reading(2)])
    a.flush_due()
    assert len(archived(tmp_path)) == 3  # full
    a.add([reading(3)])
    now["t"] = 4.9
    a.flush_due()
    assert len(archived(tmp_path)) == 3
    now["t"] = 5.0
    a.flush_due()
    assert len(archived(tmp_path)) == 4  # old enough


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
    rows = SENSORS.build(records, Source("iot.sensors")).rows.to_pylist()
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
    row = REJECTED.build([rec], Source("iot.readings.dlq")).rows.to_pylist()[0]
    assert row["payload"] == b"\xff oops"
    assert row["reason_code"] == "not_json"
    assert row["payload_text"].endswith(" oops")
    assert row["kafka_topic"] == "iot.readings.dlq"


def test_a_dead_letter_keeps_a_bounded_prefix_of_a_huge_payload():
    from stream_jobs.tables import MAX_REJECTED_PAYLOAD_BYTES

    huge = b"x" * (MAX_REJECTED_PAYLOAD_BYTES * 3)
    row = build_readings([foreign(0, huge)]).rejected.to_pylist()[0]
    assert row["reason_code"] == "oversized"
    assert row["payload"] == huge[:MAX_REJECTED_PAYLOAD_BYTES]


def test_vectorised_and_row_by_row_parsing_agree():
    from stream_jobs.tables import _judge, _parse_fast, _received_us

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
    from stream_jobs.tables import _judge, _parse_fast, _received_us

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


# -- dead letters of the readings topic, written with the readings -----------------


def test_a_flush_writes_dead_letters_beside_the_readings_exactly_once(tmp_path):
    added = []
    a = archiver(tmp_path)
    a.on_partition = lambda spec, folder: added.append((spec.name, folder))
    a.add([reading(0), foreign(1), reading(2), foreign(3, b'{"id": 1}')])
    a.flush(0)
    assert archived(tmp_path) == [(0, 0), (0, 2)]
    assert archived(tmp_path, "rejected") == [(0, 1), (0, 3)]
    files = sorted(p.name for p in (tmp_path / "raw" / "rejected").rglob("*.parquet"))
    assert files == [data_file_name("iot.readings", 0, 0, 3)]  # never the DLQ's names
    assert ("rejected", "received_date=2026-11-25") in added
    assert ("readings", "event_date=2026-11-24") in added
    assert (a.stats.rows, a.stats.rejected) == (4, 2)
    assert a.recover(0) == 4


def test_a_crash_after_the_pending_checkpoint_rolls_back_the_dead_letters_too(
    tmp_path, monkeypatch
):
    from stream_jobs import archive

    class Crash(BaseException):
        pass

    def crash_at(step):
        def crash_point(name):
            if name == step:
                raise Crash(name)

        return crash_point

    for step in ("pending", "written"):
        root = tmp_path / step
        monkeypatch.setattr(archive, "crash_point", crash_at(f"archive.readings.{step}"))
        a = archiver(root)
        a.add([reading(0), foreign(1)])
        with pytest.raises(Crash):
            a.flush(0)
        monkeypatch.setattr(archive, "crash_point", lambda name: None)
        restarted = archiver(root)
        assert restarted.recover(0) == 0  # the pending files are deleted
        assert archived(root) == [] and archived(root, "rejected") == []
        restarted.add([reading(0), foreign(1)])
        restarted.flush(0)
        assert archived(root) == [(0, 0)] and archived(root, "rejected") == [(0, 1)]

    # After the checkpoint moved, the flush stands.
    root = tmp_path / "committed"
    monkeypatch.setattr(archive, "crash_point", crash_at("archive.readings.committed"))
    a = archiver(root)
    a.add([reading(0), foreign(1)])
    with pytest.raises(Crash):
        a.flush(0)
    assert archiver(root).recover(0) == 2
    assert archived(root) == [(0, 0)] and archived(root, "rejected") == [(0, 1)]


def test_crash_points_are_passed_in_protocol_order(tmp_path, monkeypatch):
    from mqtt_bridge.crashpoints import STEPS
    from stream_jobs import archive

    passed = []
    monkeypatch.setattr(archive, "crash_point", passed.append)
    a = archiver(tmp_path)
    a.add([reading(0)])
    a.flush(0)
    assert passed == [f"archive.readings.{s}" for s in ("pending", "written", "committed")]
    assert all(step in STEPS for step in passed)


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

    from stream_jobs.tables import Record, build_rejected

    headers = {"reason": b"not_json: x"}
    if size is not None:
        headers["payload_size"] = size
    if sha is not None:
        headers["payload_sha256"] = sha
    (row,) = build_rejected([Record(0, 0, 1_000, None, b"abc", headers)]).rows.to_pylist()
    assert row["payload_size"] == 3
    assert row["payload_sha256"] == hashlib.sha256(b"abc").hexdigest()


def test_the_bridges_size_and_hash_headers_are_kept_for_a_cut_payload():
    from stream_jobs.tables import Record, build_rejected

    sha = b"0" * 64
    headers = {"reason": b"oversized: x", "payload_size": b"2000000", "payload_sha256": sha}
    (row,) = build_rejected([Record(0, 0, 1_000, None, b"abc", headers)]).rows.to_pylist()
    assert (row["payload_size"], row["payload_sha256"]) == (2_000_000, sha.decode())
