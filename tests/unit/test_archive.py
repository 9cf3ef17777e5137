import pyarrow.dataset as ds
import pytest

from iot_data_generator.readings import reading_payload
from stream_jobs.archive import TopicArchiver, data_file_name, split_by_partition
from stream_jobs.errors import LakeError
from stream_jobs.lake import Lake
from stream_jobs.tables import READINGS, REJECTED, SENSORS, Record, build_readings


def reading(offset, day="2026-11-24", partition=0, sensor="Sensor 1"):
    from datetime import datetime

    dt = datetime.fromisoformat(f"{day}T23:59:59.5")
    payload = reading_payload(sensor, dt, offset % 45)
    headers = {"mqtt_topic": b"sensors", "received_at": b"2026-11-25T00:00:00.000001Z"}
    return Record(partition, offset, 1_795_564_800_000, sensor.encode(), payload, headers)


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


def archived(tmp_path):
    path = tmp_path / "raw" / "readings"
    if not path.exists():
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
    table = build_readings([rec])
    row = table.to_pylist()[0]
    assert row["payload"] == rec.value.decode()
    assert row["ts"].isoformat() == "2026-11-24T23:59:59.500000"
    assert row["received_at"].isoformat() == "2026-11-25T00:00:00.000001"
    assert str(row["event_date"]) == "2026-11-24"  # event time, not arrival time
    assert (row["kafka_partition"], row["kafka_offset"]) == (0, 7)


def test_unparseable_record_is_kept_with_null_columns():
    rec = Record(0, 1, 1_795_564_800_000, None, b"garbage", {})
    row = build_readings([rec]).to_pylist()[0]
    assert row["payload"] == "garbage" and row["sensor_id"] is None
    assert str(row["event_date"]) == "2026-11-25"  # filed under the day it arrived


def test_split_by_event_date():
    table = build_readings(
        [reading(0, "2026-11-24"), reading(1, "2026-11-25"), reading(2, "2026-11-24")]
    )
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
    rows = SENSORS.build(records).to_pylist()
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
    row = REJECTED.build([rec]).to_pylist()[0]
    assert row["payload"] == b"\xff oops"
    assert row["reason_code"] == "not_json"
    assert row["payload_text"].endswith(" oops")


def test_vectorised_and_row_by_row_parsing_agree():
    from stream_jobs.tables import _parse_fast, _parse_rows

    values = [
        b'{"id": "Sensor 1", "dt": "2026-11-25T17:21:44.123456", "value": 17}',
        b'{"id": "Sensor 2", "dt": "2026-11-25T17:21:44", "value": -0.5, "extra": [1]}',
        b'{"value": 3, "dt": "2026-11-25T00:00:00.5", "id": "S"}',
    ]
    ids, ts, vals = _parse_fast(values)
    row_ids, row_ts, row_vals = _parse_rows(values)
    assert ids.to_pylist() == row_ids
    assert ts.cast("int64").to_pylist() == row_ts
    assert vals.to_pylist() == row_vals


def test_a_payload_the_fast_path_cannot_judge_goes_row_by_row():
    from stream_jobs.tables import _parse_fast

    with_offset = b'{"id": "S", "dt": "2026-11-25T02:00:00+02:00", "value": 1}'
    assert _parse_fast([with_offset]) is None
    rows = build_readings([Record(0, 0, 0, None, with_offset, {})]).to_pylist()
    assert rows[0]["ts"].isoformat() == "2026-11-25T00:00:00"
    mixed = build_readings([reading(0), Record(0, 1, 1_795_564_800_000, None, b"[]", {})])
    assert mixed.column("sensor_id").to_pylist() == ["Sensor 1", None]
