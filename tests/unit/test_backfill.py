from datetime import date, datetime

from iot_common.contract import parse_reading
from stream_jobs.backfill import day_of_readings
from stream_jobs.iceberg import split_by_day
from stream_jobs.tables import READINGS


def test_a_day_of_synthetic_readings_follows_the_contract():
    table = day_of_readings(date(2026, 11, 1), sensors=3, interval_s=3600, seed=1)
    assert table.num_rows == 24 * 3
    assert table.schema.equals(READINGS.table_schema)  # the table's columns, event_date too
    rows = table.to_pylist()
    for row in rows:
        reading = parse_reading(row["payload"].encode())  # the generator's format
        assert reading.sensor_id == row["sensor_id"] and reading.value == row["value"]
        assert datetime(2026, 11, 1) <= row["ts"] < datetime(2026, 11, 2)
        assert row["event_date"] == row["ts"].date()
        assert 0 <= row["value"] <= 45
        assert row["received_at"] > row["ts"] and row["kafka_offset"] is None
        assert row["mqtt_topic"] == "backfill"  # what a re-run deletes before adding
    assert {r["sensor_id"] for r in rows} == {"Sensor 1", "Sensor 2", "Sensor 3"}
    # one day: one file, in one day partition
    assert [d for d, _ in split_by_day(table, READINGS.partition_column)] == [date(2026, 11, 1)]
    # same seed, same day: the same rows (a re-run replaces its rows with equal ones)
    again = day_of_readings(date(2026, 11, 1), sensors=3, interval_s=3600, seed=1)
    assert again.equals(table)
