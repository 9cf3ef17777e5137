import math

import pytest

from iot_common.contract import parse_dt, parse_reading, parse_sensors
from iot_common.errors import InvalidReading


def test_original_payload_parses_with_microseconds_kept():
    r = parse_reading(b'{"id": "Sensor 1", "dt": "2026-11-25T17:21:44.123456", "value": 17}')
    assert r.sensor_id == "Sensor 1"
    assert r.value == 17.0
    assert r.ts_us == parse_dt("2026-11-25T17:21:44") + 123456


def test_isoformat_without_fraction_is_the_same_instant_as_zero_fraction():
    assert parse_dt("2026-01-01T10:00:00") == parse_dt("2026-01-01T10:00:00.000000")


def test_explicit_offset_is_converted_to_utc():
    assert parse_dt("2026-01-01T12:00:00+02:00") == parse_dt("2026-01-01T10:00:00")
    assert parse_dt("2026-01-01T10:00:00Z") == parse_dt("2026-01-01T10:00:00")


def test_epoch_arithmetic_is_exact():
    assert parse_dt("1970-01-01T00:00:00.000001") == 1
    assert parse_dt("2026-11-25T00:00:00") == 1795564800 * 1_000_000


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"not json", "not_json"),
        (b"\xff\xfe", "not_json"),
        (b'{"id": "S", "dt": "2026-01-01T00:00:00", "value": NaN}', "not_json"),
        (b"[1, 2]", "not_object"),
        (b'"text"', "not_object"),
        (b'{"dt": "2026-01-01T00:00:00", "value": 1}', "missing_id"),
        (b'{"id": 7, "dt": "2026-01-01T00:00:00", "value": 1}', "bad_id"),
        (b'{"id": "  ", "dt": "2026-01-01T00:00:00", "value": 1}', "bad_id"),
        (b'{"id": "S", "value": 1}', "missing_dt"),
        (b'{"id": "S", "dt": "yesterday", "value": 1}', "bad_dt"),
        (b'{"id": "S", "dt": 1700000000, "value": 1}', "bad_dt"),
        (b'{"id": "S", "dt": "2026-01-01T00:00:00"}', "missing_value"),
        (b'{"id": "S", "dt": "2026-01-01T00:00:00", "value": "17"}', "bad_value"),
        (b'{"id": "S", "dt": "2026-01-01T00:00:00", "value": true}', "bad_value"),
        (b'{"id": "S", "dt": "2026-01-01T00:00:00", "value": null}', "bad_value"),
        (b'{"id": "S", "dt": "2026-01-01T00:00:00", "value": 1e999}', "not_json"),  # overflows
    ],
)
def test_contract_violations_have_a_reason_code(payload, code):
    with pytest.raises(InvalidReading) as info:
        parse_reading(payload)
    assert info.value.code == code
    assert info.value.reason.startswith(code + ": ")


def test_oversized_payload_is_rejected_before_parsing():
    big = b'{"id": "S", "dt": "2026-01-01T00:00:00", "value": 1, "pad": "' + b"x" * 5000 + b'"}'
    with pytest.raises(InvalidReading) as info:
        parse_reading(big, max_bytes=4096)
    assert info.value.code == "oversized"


def test_float_values_and_extra_fields_are_accepted():
    r = parse_reading(b'{"id": "S", "dt": "2026-01-01T00:00:00", "value": -1.5, "x": 1}')
    assert r.value == -1.5 and math.isfinite(r.value)


def test_original_sensor_list_parses(original_sensors_json):
    sensors = parse_sensors(original_sensors_json)
    assert list(sensors) == [f"Sensor {i}" for i in range(1, 6)]
    s4 = sensors["Sensor 4"]
    assert (s4.unit, s4.type, s4.range_min, s4.range_max) == ("C", "temperature", 0, 45)
    assert s4.description == "Assemlby Floor"  # the original's spelling, kept


def test_sensor_list_errors_name_the_entry():
    with pytest.raises(ValueError, match="'Sensor 9'"):
        parse_sensors(b'{"Sensor 9": {"lat": 1, "lng": 2, "unit": "C", "type": "t"}}')


@pytest.mark.parametrize(
    "dt",
    [
        "0001-01-01T00:30:00+01:00",  # UTC would be year 0
        "9999-12-31T23:30:00-01:00",  # UTC would be year 10000
        "2026-01-01T10:00:00" + "0" * 100,
    ],
)
def test_calendar_edges_and_long_text_are_bad_dt_not_a_crash(dt):
    payload = b'{"id": "S", "dt": "%s", "value": 1}' % dt.encode()
    with pytest.raises(InvalidReading) as exc:
        parse_reading(payload, received_us=parse_dt("2026-01-01T10:00:00"))
    assert exc.value.code == "bad_dt"


def test_event_time_is_bounded_by_the_floor_and_the_receive_time():
    from iot_common.contract import DEFAULT_BOUNDS, TimeBounds

    received = parse_dt("2026-11-30T12:00:00")

    def verdict(dt, bounds=DEFAULT_BOUNDS):
        payload = b'{"id": "S", "dt": "%s", "value": 1}' % dt.encode()
        try:
            parse_reading(payload, received_us=received, bounds=bounds)
        except InvalidReading as exc:
            return exc.code
        return "ok"

    assert verdict("1999-12-31T23:59:59.999999") == "dt_too_old"
    assert verdict("2000-01-01T00:00:00") == "ok"
    assert verdict("2026-11-30T12:05:00") == "ok"  # 5 minutes ahead: clock skew allowed
    assert verdict("2026-11-30T12:05:00.000001") == "dt_in_future"
    assert verdict("2026-11-30T15:00:00+03:00") == "ok"  # local time with its offset
    assert verdict("2026-11-30T15:00:00") == "dt_in_future"  # local time without one
    assert verdict("9999-12-31T23:59:59") == "dt_in_future"
    strict = TimeBounds.of(__import__("datetime").datetime(2026, 1, 1), 0)
    assert verdict("2025-12-31T23:59:59", strict) == "dt_too_old"
    assert verdict("2026-11-30T12:00:00.000001", strict) == "dt_in_future"
    # Without a receive time (trusted data) only the floor applies.
    assert parse_reading(b'{"id": "S", "dt": "9999-01-01T00:00:00", "value": 1}').value == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [("DT_FLOOR", "yesterday"), ("DT_MAX_AHEAD_SECONDS", "-1"), ("MAX_PAYLOAD_BYTES", "0")],
)
def test_bad_contract_settings_stop_both_services_at_start(monkeypatch, name, value):
    from pydantic import ValidationError

    from mqtt_bridge.settings import BridgeSettings
    from stream_jobs.settings import StreamSettings

    monkeypatch.setenv(name, value)
    for settings in (BridgeSettings, StreamSettings):
        with pytest.raises(ValidationError):
            settings(_env_file=None)


def test_the_bridge_and_the_stream_jobs_read_one_contract(monkeypatch):
    from mqtt_bridge.settings import BridgeSettings
    from stream_jobs.settings import StreamSettings

    monkeypatch.setenv("DT_FLOOR", "2020-01-01T00:00:00")
    monkeypatch.setenv("DT_MAX_AHEAD_SECONDS", "60")
    bridge = BridgeSettings(_env_file=None).time_bounds()
    assert bridge == StreamSettings(_env_file=None).time_bounds()
    assert bridge.max_ahead_us == 60_000_000
    assert bridge.floor_us == parse_dt("2020-01-01T00:00:00")
