"""What the generator publishes, as pure functions (no network)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from iot_common.contract import SensorSpec


def utc_naive_now() -> datetime:
    """datetime.utcnow() without its deprecation: naive, in UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def random_value(sensor: SensorSpec, rng: random.Random) -> int | float:
    lo, hi = sensor.range_min, sensor.range_max
    if lo.is_integer() and hi.is_integer():
        return rng.randint(int(lo), int(hi))  # the original: random.randint(*range)
    return round(rng.uniform(lo, hi), 3)


def reading_payload(sensor_id: str, dt: datetime, value: int | float) -> bytes:
    """The original generator's payload, byte for byte (json.dumps defaults, isoformat dt)."""
    return json.dumps({"id": sensor_id, "dt": dt.isoformat(), "value": value}).encode()


@dataclass(frozen=True)
class Faults:
    malformed: float = 0.0
    out_of_range: float = 0.0
    duplicate: float = 0.0
    late: float = 0.0
    late_seconds: float = 120.0
    # Sensors that stop publishing once the generator has run `silent_after_s`.
    silent: frozenset[str] = frozenset()
    silent_after_s: float = 0.0
    # Sensors whose clock is off by this many seconds (their dt is shifted).
    clock_skew_s: dict[str, float] = field(default_factory=dict)

    @property
    def any(self) -> bool:
        """Whether any random fault is on (the deterministic ones need no dice)."""
        return any((self.malformed, self.out_of_range, self.duplicate, self.late))


MALFORMED_SAMPLES: tuple[bytes, ...] = (
    b"not json at all",
    b'{"id": "Sensor 1", "dt": "2026-01-01T00:00:00", "value": }',
    b"[1, 2, 3]",
    b'{"dt": "2026-01-01T00:00:00", "value": 1}',
    b'{"id": "Sensor 1", "dt": "yesterday", "value": 1}',
    b'{"id": "Sensor 1", "dt": "2026-01-01T00:00:00", "value": "hot"}',
    b"\xff\xfe\x00garbage",
)


def readings_for_tick(
    sensor: SensorSpec,
    now: datetime,
    rng: random.Random,
    faults: Faults = Faults(),
    *,
    elapsed_s: float = 0.0,
) -> list[bytes]:
    """The messages one sensor publishes at one tick (`elapsed_s` after the
    generator started): normally one payload; with faults on, sometimes a broken,
    out-of-range, late or repeated one, none from a silent sensor, and a dt off
    by its clock's skew."""
    if sensor.sensor_id in faults.silent and elapsed_s >= faults.silent_after_s:
        return []
    if faults.any and rng.random() < faults.malformed:
        return [rng.choice(MALFORMED_SAMPLES)]
    dt = now + timedelta(seconds=faults.clock_skew_s.get(sensor.sensor_id, 0.0))
    if faults.any and rng.random() < faults.late:
        dt -= timedelta(seconds=faults.late_seconds)
    value: int | float = random_value(sensor, rng)
    if faults.any and rng.random() < faults.out_of_range:
        span = max(sensor.range_max - sensor.range_min, 1)
        value = int(sensor.range_max + span) if isinstance(value, int) else sensor.range_max + span
    payload = reading_payload(sensor.sensor_id, dt, value)
    if faults.any and rng.random() < faults.duplicate:
        return [payload, payload]
    return [payload]


def next_tick(start: float, interval_s: float, now: float) -> float:
    """The first tick of the fixed grid start + k*interval that is after `now`:
    ticks stay on the grid however long a publish took (no drift)."""
    k = int((now - start) // interval_s) + 1
    return start + k * interval_s


def fleet(n: int, seed: int = 0) -> dict[str, dict[str, object]]:
    """A sensors.json body of `n` sensors in the original format, for load tests."""
    rng = random.Random(seed)
    kinds = [
        ("temperature", "C", [0, 45]),
        ("humidity", "%", [0, 100]),
        ("pressure", "hPa", [950, 1050]),
    ]
    out: dict[str, dict[str, object]] = {}
    for i in range(1, n + 1):
        kind, unit, rng_ = kinds[(i - 1) % len(kinds)]
        out[f"Sensor {i}"] = {
            "lat": round(rng.uniform(0, 90), 4),
            "lng": round(rng.uniform(0, 90), 4),
            "unit": unit,
            "type": kind,
            "range": rng_,
            "description": f"Fleet sensor {i}",
        }
    return out
