import json
import random
from datetime import datetime

from iot_common.contract import parse_reading, parse_sensors
from iot_data_generator.readings import (
    MALFORMED_SAMPLES,
    Faults,
    next_tick,
    reading_payload,
    readings_for_tick,
)


def test_payload_is_the_original_format_byte_for_byte():
    dt = datetime(2026, 11, 25, 17, 21, 44, 123456)
    original = json.dumps({"id": "Sensor 1", "dt": dt.isoformat(), "value": 17}).encode()
    assert reading_payload("Sensor 1", dt, 17) == original
    assert original == b'{"id": "Sensor 1", "dt": "2026-11-25T17:21:44.123456", "value": 17}'


def test_values_stay_in_range_without_faults(original_sensors_json):
    sensor = parse_sensors(original_sensors_json)["Sensor 1"]
    rng = random.Random(1)
    for _ in range(500):
        (payload,) = readings_for_tick(sensor, datetime(2026, 1, 1), rng)
        r = parse_reading(payload)
        assert 0 <= r.value <= 45 and r.value.is_integer()


def test_fault_injection_produces_each_kind(original_sensors_json):
    sensor = parse_sensors(original_sensors_json)["Sensor 2"]
    rng = random.Random(7)
    faults = Faults(malformed=0.1, out_of_range=0.1, duplicate=0.1, late=0.1, late_seconds=120)
    now = datetime(2026, 1, 1, 12, 0, 0)
    seen = {"malformed": 0, "out_of_range": 0, "duplicate": 0, "late": 0}
    for _ in range(2000):
        msgs = readings_for_tick(sensor, now, rng, faults)
        if msgs[0] in MALFORMED_SAMPLES:
            seen["malformed"] += 1
            continue
        r = parse_reading(msgs[0])
        seen["duplicate"] += len(msgs) == 2 and msgs[0] == msgs[1]
        seen["out_of_range"] += r.value > 45
        seen["late"] += r.ts_us < parse_reading(reading_payload("x", now, 1)).ts_us
    assert all(100 < n < 300 for n in seen.values()), seen


def test_schedule_does_not_drift():
    # However late a tick ran, the next one is on the start + k*interval grid.
    assert next_tick(100.0, 1.0, 100.0) == 101.0
    assert next_tick(100.0, 1.0, 100.3) == 101.0
    assert next_tick(100.0, 1.0, 101.999) == 102.0
    assert next_tick(100.0, 0.25, 102.6) == 102.75


def test_a_silent_sensor_stops_and_a_skewed_clock_shifts_dt(original_sensors_json):
    import random
    from datetime import datetime

    from iot_common.contract import parse_reading, parse_sensors
    from iot_data_generator.readings import Faults, readings_for_tick

    sensors = parse_sensors(original_sensors_json)
    faults = Faults(
        silent=frozenset({"Sensor 2"}), silent_after_s=30, clock_skew_s={"Sensor 3": -90}
    )
    now = datetime(2026, 11, 30, 12, 0, 0)
    rng = random.Random(1)
    before = readings_for_tick(sensors["Sensor 2"], now, rng, faults, elapsed_s=29.9)
    assert len(before) == 1
    assert readings_for_tick(sensors["Sensor 2"], now, rng, faults, elapsed_s=30) == []
    (skewed,) = readings_for_tick(sensors["Sensor 3"], now, rng, faults, elapsed_s=31)
    assert parse_reading(skewed).ts_us == parse_reading(before[0]).ts_us - 90_000_000
    (fine,) = readings_for_tick(sensors["Sensor 1"], now, rng, faults, elapsed_s=31)
    assert parse_reading(fine).ts_us == parse_reading(before[0]).ts_us


def test_fault_settings_parse_from_the_environment(monkeypatch):
    from iot_data_generator.settings import GeneratorSettings

    monkeypatch.setenv("FAULT_SILENT_SENSORS", "Sensor 4, Sensor 5")
    monkeypatch.setenv("FAULT_CLOCK_SKEW_SECONDS", '{"Sensor 3": -90}')
    s = GeneratorSettings(_env_file=None)
    assert s.fault_silent_sensors == "Sensor 4, Sensor 5"
    assert s.fault_clock_skew_seconds == {"Sensor 3": -90.0}
