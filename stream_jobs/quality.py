"""The data quality indicator of one sensor in one minute, and a sensor's status,
as pure functions (docs/quality.md states and argues the formula).

Per sensor and minute (event time, as the 1-minute means):
  expected      readings the sensor should send: 60 s / its interval
  received      readings that arrived for the minute (accepted by the bridge)
  duplicates    received readings whose (sensor, dt) arrived before
  out_of_range  received, not duplicate, outside the sensor's range
  valid         received, not duplicate, in range
  late          received, not duplicate, more than LATE_AFTER_S after their dt
  rejected      dead letters attributable to the sensor in that minute

  completeness = min(1, (valid + out_of_range) / expected)   did the readings come?
  validity     = valid / (valid + out_of_range + duplicates + rejected)
                                                              were they usable?
  timeliness   = 1 - late / (valid + out_of_range)            did they come in time?
  score        = completeness * validity * (1 - LATE_WEIGHT * (1 - timeliness))

Each factor is 1 when nothing is wrong and drops in proportion to the share of
readings affected; a minute with nothing received scores 0; the score is in
[0, 1] whatever the counts (a property test checks it). Status over a recent
span of minutes: `silent` when nothing arrived for SILENT_AFTER_S, `degraded`
when the mean score of the span is below DEGRADED_BELOW, else `ok`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

LATE_AFTER_S = 10.0  # a reading received more than this after its dt is late
LATE_WEIGHT = 0.5  # a late reading is half as bad as a missing or invalid one
DEGRADED_BELOW = 0.9  # mean score of the recent minutes under which a sensor is degraded
SILENT_AFTER_S = 120.0  # no reading for this long: silent


@dataclass(frozen=True)
class MinuteQuality:
    expected: float
    received: int = 0
    duplicates: int = 0
    out_of_range: int = 0
    late: int = 0
    rejected: int = 0

    @property
    def unique(self) -> int:
        """Received readings that are not duplicates."""
        return max(0, self.received - self.duplicates)

    @property
    def valid(self) -> int:
        return max(0, self.unique - self.out_of_range)

    @property
    def completeness(self) -> float:
        if self.expected <= 0:
            return 1.0 if self.unique else 0.0
        return min(1.0, self.unique / self.expected)

    @property
    def validity(self) -> float:
        seen = self.unique + self.duplicates + self.rejected
        return self.valid / seen if seen else 0.0

    @property
    def timeliness(self) -> float:
        return 1.0 - min(self.late, self.unique) / self.unique if self.unique else 0.0

    @property
    def score(self) -> float:
        value = self.completeness * self.validity * (1 - LATE_WEIGHT * (1 - self.timeliness))
        return min(1.0, max(0.0, value))


def expected_per_minute(interval_ms: float) -> float:
    """Readings a minute from a sensor that sends one every `interval_ms`."""
    return 60_000.0 / interval_ms if interval_ms > 0 else 0.0


def status(scores: Sequence[float], silent_for_s: float) -> str:
    """A sensor's status from its recent minutes' scores and how long since its
    last reading arrived."""
    if silent_for_s >= SILENT_AFTER_S:
        return "silent"
    if scores and sum(scores) / len(scores) < DEGRADED_BELOW:
        return "degraded"
    return "ok"
