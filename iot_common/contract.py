"""The reading contract: what a valid MQTT payload is, as plain functions.

The bridge is the gate: it decides here what enters `iot.readings` and what goes
to the dead letters. The stream jobs parse the same verbatim payload with the
same function to get the columns, so the two can never disagree.

Payload (the original generator's, unchanged):
    {"id": "Sensor 1", "dt": "2026-11-25T17:21:44.123456", "value": 17}
`dt` is naive ISO-8601 in UTC (an explicit offset is accepted and converted);
`isoformat()` drops the fraction when microseconds are 0, so both forms occur.

Event time is bounded: a dt before `TimeBounds.floor_us` (2000-01-01 by default)
is `dt_too_old`, one more than `max_ahead_us` (5 minutes) after the time the
platform received the message is `dt_in_future`. Both are judged against the
receive time the bridge stamped on the record (header `received_at`), so every
stage that re-reads a record reaches the verdict the bridge reached.

Guarantee: `parse_reading` raises nothing but `InvalidReading`, whatever the
bytes (a property-based test feeds it arbitrary bytes and JSON).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from iot_common.errors import InvalidReading

DEFAULT_MAX_PAYLOAD_BYTES = 4096
MAX_ID_LENGTH = 200
MAX_DT_LENGTH = 64
_EPOCH = datetime(1970, 1, 1)
DEFAULT_DT_FLOOR = datetime(2000, 1, 1)
DEFAULT_DT_MAX_AHEAD_S = 300.0


def to_us(dt: datetime) -> int:
    """A naive UTC datetime as microseconds since the epoch (exact, no float)."""
    delta: timedelta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """Which event times the platform accepts (env DT_FLOOR, DT_MAX_AHEAD_SECONDS)."""

    floor_us: int  # a dt before this is rejected as dt_too_old
    max_ahead_us: int  # a dt this far past its receive time is rejected as dt_in_future

    @classmethod
    def of(cls, floor: datetime, max_ahead_s: float) -> TimeBounds:
        if floor.tzinfo is not None:
            floor = floor.astimezone(UTC).replace(tzinfo=None)
        return cls(to_us(floor), int(max_ahead_s * 1_000_000))


DEFAULT_BOUNDS = TimeBounds.of(DEFAULT_DT_FLOOR, DEFAULT_DT_MAX_AHEAD_S)


@dataclass(frozen=True, slots=True)
class Reading:
    sensor_id: str
    ts_us: int  # event time, microseconds since the epoch, UTC
    value: float

    @property
    def key(self) -> tuple[str, int]:
        """Identity of a reading: one sensor cannot report twice at one instant."""
        return (self.sensor_id, self.ts_us)


def parse_dt(text: object) -> int:
    """ISO-8601 text to UTC microseconds since the epoch (exact, no float)."""
    if not isinstance(text, str):
        raise InvalidReading("bad_dt", f"dt must be an ISO-8601 string, got {type(text).__name__}")
    if len(text) > MAX_DT_LENGTH:
        raise InvalidReading("bad_dt", f"dt is {len(text)} characters, limit {MAX_DT_LENGTH}")
    try:
        dt = datetime.fromisoformat(text)
        if dt.tzinfo is not None:
            # An offset at the edge of the calendar (0001-01-01T00:30+01:00) has no
            # UTC datetime: OverflowError. utcoffset() may also raise for odd zones.
            dt = dt.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError) as exc:
        raise InvalidReading("bad_dt", f"dt is not a UTC ISO-8601 time: {text!r} ({exc})") from None
    return to_us(dt)


def check_event_time(ts_us: int, received_us: int | None, bounds: TimeBounds) -> None:
    """Reject an event time before the floor or too far past its receive time."""
    if ts_us < bounds.floor_us:
        raise InvalidReading("dt_too_old", "dt is before the accepted floor (DT_FLOOR)")
    if received_us is not None and ts_us - received_us > bounds.max_ahead_us:
        raise InvalidReading(
            "dt_in_future",
            f"dt is {(ts_us - received_us) / 1e6:.0f} s after the receive time "
            f"(limit {bounds.max_ahead_us / 1e6:.0f} s, DT_MAX_AHEAD_SECONDS): "
            "is the device's clock in UTC?",
        )


def parse_reading(
    payload: bytes,
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    *,
    received_us: int | None = None,
    bounds: TimeBounds = DEFAULT_BOUNDS,
) -> Reading:
    """Validate one MQTT payload; raise InvalidReading with a reason code.

    `received_us` is when the platform received it (µs since the epoch, UTC);
    None skips the future check (for trusted data such as tests and backfills)."""
    if len(payload) > max_bytes:
        raise InvalidReading("oversized", f"{len(payload)} bytes, limit {max_bytes}")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidReading("not_json", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise InvalidReading("not_object", f"payload is a JSON {type(doc).__name__}")

    sensor_id = doc.get("id")
    if sensor_id is None:
        raise InvalidReading("missing_id", "no 'id' field")
    if not isinstance(sensor_id, str) or not sensor_id.strip() or len(sensor_id) > MAX_ID_LENGTH:
        raise InvalidReading("bad_id", f"id must be a non-empty string, got {sensor_id!r:.64}")

    if "dt" not in doc:
        raise InvalidReading("missing_dt", "no 'dt' field")
    ts_us = parse_dt(doc["dt"])
    check_event_time(ts_us, received_us, bounds)

    if "value" not in doc:
        raise InvalidReading("missing_value", "no 'value' field")
    value = doc["value"]
    # bool is an int subclass in Python; true/false is not a measurement.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidReading("bad_value", f"value must be a number, got {value!r:.64}")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidReading("bad_value", f"value must be finite, got {value!r}")
    return Reading(sensor_id, ts_us, value)


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """One entry of sensors.json (the original format, keyed by sensor id)."""

    sensor_id: str
    lat: float
    lng: float
    unit: str
    type: str
    range_min: float
    range_max: float
    description: str
    entry: dict[str, object]  # the entry as written, kept verbatim for the archive


def parse_sensors(raw: bytes) -> dict[str, SensorSpec]:
    """Parse sensors.json; raise ValueError saying which entry is wrong and how."""
    doc = orjson.loads(raw)
    if not isinstance(doc, dict) or not doc:
        raise ValueError("sensors.json must be a non-empty object keyed by sensor id")
    sensors: dict[str, SensorSpec] = {}
    for sensor_id, entry in doc.items():
        try:
            lo, hi = entry["range"]
            sensors[sensor_id] = SensorSpec(
                sensor_id=sensor_id,
                lat=float(entry["lat"]),
                lng=float(entry["lng"]),
                unit=str(entry["unit"]),
                type=str(entry["type"]),
                range_min=float(lo),
                range_max=float(hi),
                description=str(entry.get("description", "")),
                entry=entry,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"sensors.json entry {sensor_id!r} is invalid ({exc!r}); each entry needs "
                "lat, lng, unit, type, range [min, max] and description"
            ) from None
        if sensors[sensor_id].range_min > sensors[sensor_id].range_max:
            raise ValueError(f"sensors.json entry {sensor_id!r}: range min is above max")
    return sensors
