from datetime import date, datetime

from mqtt_bridge.contract import parse_reading
from stream_jobs.backfill import day_of_readings
from stream_jobs.tables import READINGS_SCHEMA


def test_a_day_of_synthetic_readings_follows_the_contract():
    table = day_of_readings(date(2026, 11, 1), sensors=3, interval_s=3600, seed=1)
    assert table.num_rows == 24 * 3
    assert table.schema.equals(READINGS_SCHEMA)
    rows = table.to_pylist()
    for row in rows:
        reading = parse_reading(row["payload"].encode())  # the generator's format
        assert reading.sensor_id == row["sensor_id"] and reading.value == row["value"]
        assert datetime(2026, 11, 1) <= row["ts"] < datetime(2026, 11, 2)
        assert 0 <= row["value"] <= 45
        assert row["received_at"] > row["ts"] and row["kafka_offset"] is None
    assert {r["sensor_id"] for r in rows} == {"Sensor 1", "Sensor 2", "Sensor 3"}
    # same seed, same day: the same rows (a re-run replaces its files with equal ones)
    again = day_of_readings(date(2026, 11, 1), sensors=3, interval_s=3600, seed=1)
    assert again.equals(table)
