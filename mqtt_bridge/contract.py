"""The reading contract: what a valid MQTT payload is, as plain functions.

The bridge is the gate: it decides here what enters `iot.readings` and what goes
to the dead letters. The stream jobs parse the same verbatim payload with the
same function to get the columns, so the two can never disagree.

Payload (the original generator's, unchanged):
    {"id": "Sensor 1", "dt": "2026-11-25T17:21:44.123456", "value": 17}
`dt` is naive ISO-8601 in UTC (an explicit offset is accepted and converted);
`isoformat()` drops the fraction when microseconds are 0, so both forms occur.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from mqtt_bridge.errors import InvalidReading

DEFAULT_MAX_PAYLOAD_BYTES = 4096
MAX_ID_LENGTH = 200
_EPOCH = datetime(1970, 1, 1)


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
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidReading("bad_dt", f"dt is not ISO-8601: {text[:64]!r}") from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    delta: timedelta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_reading(payload: bytes, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Reading:
    """Validate one MQTT payload; raise InvalidReading with a reason code."""
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
