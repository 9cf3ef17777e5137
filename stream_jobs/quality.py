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

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace

import orjson

from iot_common.contract import MAX_ID_LENGTH, TimeBounds, check_event_time, parse_dt
from iot_common.errors import InvalidReading

LATE_AFTER_S = 10.0  # a reading received more than this after its dt is late
LATE_WEIGHT = 0.5  # a late reading is half as bad as a missing or invalid one
DEGRADED_BELOW = 0.9  # mean score of the recent minutes under which a sensor is degraded
SILENT_AFTER_S = 120.0  # no reading for this long: silent
STATUS_MINUTES = 5  # a sensor's status weighs the scores of its newest minutes

MINUTE_US = 60_000_000
NEVER = 2**63
# A sensor-minute that no 1-minute emission closed (only dead letters, or nothing
# at all from a known sensor) is closed by the wall clock this long after its end:
# longer than the 1-minute job's lateness plus its commit interval, so that the
# emission usually comes first and the minute is not revised at once.
CLOSE_AFTER_S = 30.0
KEEP_MINUTES = 15  # sensor-minutes kept in the state after they closed (then read back)
FILL_MAX_MINUTES = 60  # after a pause, at most this many minutes of silence are filled


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


# -- the quality job's state, pure: what it keeps between records ---------------------


@dataclass
class Cell:
    """One sensor-minute as the quality job knows it."""

    count: int = 0  # readings in range (the 1-minute window's `count`)
    out_of_range: int = 0
    late: int = 0
    minute_revision: int = 0  # revision of the 1-minute emission these come from; 0: none
    duplicates: int = 0  # dead letters with reason `duplicate`
    rejected: int = 0  # other dead letters attributed to the sensor and minute
    revision: int = 0  # quality revision last emitted; 0: never
    dirty: bool = False  # changed since its last emission
    # Touched after it left the state: what the table holds of it is read back (in
    # one batch, at the next `take`) and these figures are merged onto it.
    unloaded: bool = False

    @property
    def unique(self) -> int:
        return self.count + self.out_of_range

    def quality(self, expected: float) -> MinuteQuality:
        return MinuteQuality(
            expected=expected,
            received=self.unique + self.duplicates,
            duplicates=self.duplicates,
            out_of_range=self.out_of_range,
            late=self.late,
            rejected=self.rejected,
        )


@dataclass(frozen=True)
class Emission:
    sensor_id: str
    minute_us: int  # window start, µs since the epoch (UTC)
    quality: MinuteQuality
    revision: int


@dataclass(frozen=True)
class StatusChange:
    sensor_id: str
    status: str
    previous: str | None
    recent_score: float | None
    last_reading_us: int | None  # end of the newest minute with readings


CellKey = tuple[str, int]  # (sensor_id, minute start µs)
# Emitted sensor-minutes read back from the table (their newest revision), in one go.
Loader = Callable[[list[CellKey]], dict[CellKey, Cell]]


def merged(base: Cell | None, new: Cell) -> Cell:
    """A cell touched after it left the state, over what the table holds of it:
    dead letters add up; a 1-minute emission replaces the reading counts."""
    if base is None:
        return replace(new, unloaded=False)
    fresh = new.minute_revision > 0
    cell = Cell(
        count=new.count if fresh else base.count,
        out_of_range=new.out_of_range if fresh else base.out_of_range,
        late=new.late if fresh else base.late,
        minute_revision=new.minute_revision,
        duplicates=base.duplicates + new.duplicates,
        rejected=base.rejected + new.rejected,
        revision=base.revision,
    )
    # The table keeps no 1-minute revision: an emission delivered again (a replay)
    # is taken as fresh; when it changes nothing, nothing is emitted again.
    figures = ("count", "out_of_range", "late", "duplicates", "rejected")
    cell.dirty = any(getattr(cell, f) != getattr(base, f) for f in figures)
    return cell


def minute_of(us: int) -> int:
    return us - us % MINUTE_US


@dataclass
class QualityState:
    """Per sensor-minute counts from the 1-minute emissions and the dead letters,
    which minutes to emit (and with which revision), and each sensor's status.

    Rules (docs/quality.md):
    * A 1-minute emission replaces the minute's reading counts unless its revision
      is older. An equal revision with other figures is the 1-minute job's replay
      after a crash (its emissions are at least once, in order per sensor): the
      later one is what its table holds.
    * A dead letter adds one to the minute's duplicates (reason `duplicate`) or
      rejected (any other reason).
    * A changed minute is emitted, with the next revision, at the next `take`,
      once it is closed: a 1-minute emission exists for it, or the wall clock is
      CLOSE_AFTER_S past its end. Each closed minute of a known sensor that has
      nothing at all, after its first reading, is emitted too (received 0, score
      0): silence is a figure. A sensor that never sent has no rows; its status
      says it is silent.
    * Minutes older than KEEP_MINUTES after closing leave the state; one touched
      again is read back from the table (`load`, one batch at the next `take`) so
      its counts continue.
    Nothing here does I/O; `snapshot` / `restore` make it durable with the
    checkpoints."""

    cells: dict[CellKey, Cell] = field(default_factory=dict)
    filled_until_us: int | None = None  # newest minute closed by the wall clock
    forgotten_before_us: int = 0  # minutes before this were pruned: read them back
    last_reading_us: dict[str, int] = field(default_factory=dict)  # per sensor
    first_reading_us: dict[str, int] = field(default_factory=dict)  # minute start, per sensor
    statuses: dict[str, str] = field(default_factory=dict)

    def _cell(self, key: CellKey) -> Cell:
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = Cell(unloaded=key[1] < self.forgotten_before_us)
        return cell

    def apply_minute(
        self,
        sensor_id: str,
        minute_us: int,
        *,
        count: int,
        out_of_range: int,
        late: int,
        revision: int,
    ) -> None:
        cell = self._cell((sensor_id, minute_of(minute_us)))
        if revision < cell.minute_revision:
            return
        if revision == cell.minute_revision and (count, out_of_range, late) == (
            cell.count,
            cell.out_of_range,
            cell.late,
        ):
            return  # the same emission again
        cell.count, cell.out_of_range, cell.late = count, out_of_range, late
        cell.minute_revision = revision
        cell.dirty = True
        if cell.unique:
            start = minute_of(minute_us)
            end = start + MINUTE_US
            self.last_reading_us[sensor_id] = max(self.last_reading_us.get(sensor_id, 0), end)
            first = self.first_reading_us.get(sensor_id)
            self.first_reading_us[sensor_id] = start if first is None else min(first, start)

    def apply_dead_letter(self, sensor_id: str, minute_us: int, *, duplicate: bool) -> None:
        cell = self._cell((sensor_id, minute_of(minute_us)))
        if duplicate:
            cell.duplicates += 1
        else:
            cell.rejected += 1
        cell.dirty = True

    def take(
        self,
        now_us: int,
        known: Iterable[str],
        expected: Callable[[str], float],
        load: Loader,
        *,
        close: bool = True,
    ) -> list[Emission]:
        """The minutes to emit now, each with its next revision. With `close` false
        (the job is catching up on its inputs) no minute is closed by the wall clock:
        only those a 1-minute emission closed."""
        unloaded = [k for k, c in self.cells.items() if c.unloaded]
        if unloaded:
            base = load(unloaded)
            for key in unloaded:
                self.cells[key] = merged(base.get(key), self.cells[key])
        closed_until = minute_of(now_us - int(CLOSE_AFTER_S * 1e6)) - MINUTE_US
        if not close:
            closed_until = min(closed_until, self.filled_until_us or -(2**62))
        elif self.filled_until_us is None:
            self.filled_until_us = closed_until  # silence is counted from the first run on
        else:
            oldest = closed_until - (FILL_MAX_MINUTES - 1) * MINUTE_US
            first = max(self.filled_until_us + MINUTE_US, oldest)
            for minute in range(first, closed_until + 1, MINUTE_US):
                for sid in known:
                    if self.first_reading_us.get(sid, NEVER) > minute:
                        continue  # no silence before its first reading (it has no status yet)
                    cell = self.cells.setdefault((sid, minute), Cell())
                    if cell.revision == 0:
                        cell.dirty = True
            self.filled_until_us = max(self.filled_until_us, closed_until)
        out = []
        for (sid, minute), cell in self.cells.items():
            if cell.dirty and (cell.minute_revision > 0 or minute <= closed_until):
                cell.revision += 1
                cell.dirty = False
                out.append(Emission(sid, minute, cell.quality(expected(sid)), cell.revision))
        return out

    def prune(self, now_us: int, known: Iterable[str] = ()) -> None:
        """Forget closed, emitted minutes older than KEEP_MINUTES, and sensors not in
        the list that are silent (published) with no minute left: ids are untrusted,
        so what is kept of unknown ones must not grow without bound."""
        horizon = minute_of(now_us) - KEEP_MINUTES * MINUTE_US
        for key in [k for k, c in self.cells.items() if k[1] < horizon and not c.dirty]:
            del self.cells[key]
        self.forgotten_before_us = max(self.forgotten_before_us, horizon)
        listed, with_cells = set(known), {sid for sid, _ in self.cells}
        for sid in [s for s, st in self.statuses.items() if st == "silent"]:
            if sid not in listed and sid not in with_cells:
                for kept in (self.statuses, self.last_reading_us, self.first_reading_us):
                    kept.pop(sid, None)

    def recent_scores(self, expected: Callable[[str], float]) -> dict[str, list[float]]:
        """Scores of each sensor's newest STATUS_MINUTES emitted minutes, leaving out
        a minute with readings after one without (the sensor started or came back
        within it: the minute is partial by nature, not a fault)."""
        by_sensor: dict[str, list[tuple[int, float]]] = {}
        for (sid, minute), cell in self.cells.items():
            if not cell.revision:
                continue
            before = self.cells.get((sid, minute - MINUTE_US))
            if cell.unique and (before is None or not before.revision or not before.unique):
                continue  # a start: partial
            by_sensor.setdefault(sid, []).append((minute, cell.quality(expected(sid)).score))
        return {
            sid: [score for _, score in sorted(rows)[-STATUS_MINUTES:]]
            for sid, rows in by_sensor.items()
        }

    def status_changes(
        self, now_us: int, known: Iterable[str], expected: Callable[[str], float]
    ) -> list[StatusChange]:
        """Sensors whose status (quality.status) differs from the one last published."""
        scores = self.recent_scores(expected)
        changes = []
        # Listed sensors, and others that sent readings; an id only dead letters
        # named (untrusted) gets no status.
        for sid in sorted({*known, *self.last_reading_us}):
            last = self.last_reading_us.get(sid)  # never heard of: silent (as in SQL)
            silent_for = (now_us - last) / 1e6 if last is not None else math.inf
            new = status(scores.get(sid, []), silent_for)
            old = self.statuses.get(sid)
            if new != old:
                self.statuses[sid] = new
                recent = scores.get(sid)
                mean = sum(recent) / len(recent) if recent else None
                changes.append(StatusChange(sid, new, old, mean, last))
        return changes

    def snapshot(self) -> dict[str, object]:
        return {
            "cells": [[sid, minute, asdict(cell)] for (sid, minute), cell in self.cells.items()],
            "filled_until_us": self.filled_until_us,
            "forgotten_before_us": self.forgotten_before_us,
            "last_reading_us": self.last_reading_us,
            "first_reading_us": self.first_reading_us,
            "statuses": self.statuses,
        }

    @classmethod
    def restore(cls, doc: dict[str, object]) -> QualityState:
        cells = doc.get("cells") or []
        assert isinstance(cells, list)
        return cls(
            cells={(sid, int(minute)): Cell(**fields) for sid, minute, fields in cells},
            filled_until_us=doc.get("filled_until_us"),  # type: ignore[arg-type]
            forgotten_before_us=int(doc.get("forgotten_before_us") or 0),  # type: ignore[call-overload]
            last_reading_us=dict(doc.get("last_reading_us") or {}),  # type: ignore[call-overload]
            first_reading_us=dict(doc.get("first_reading_us") or {}),  # type: ignore[call-overload]
            statuses=dict(doc.get("statuses") or {}),  # type: ignore[call-overload]
        )


DUPLICATE = "duplicate"  # the bridge's reason code for a repeated (sensor, dt)


ATTRIBUTE_MAX_AGE_US = 86_400_000_000  # a dead letter's dt older than this: its receive minute


def attribute(payload: bytes, received_us: int, bounds: TimeBounds) -> tuple[str, int] | None:
    """The (sensor, minute start) a dead letter counts against: the `id` of its
    payload when that is a JSON object naming one, the minute of its `dt` when that
    is an acceptable event time, else the minute it was received. None: no sensor."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    sid = doc.get("id")
    if not isinstance(sid, str) or not sid.strip() or len(sid) > MAX_ID_LENGTH:
        return None  # as the bridge's bad_id: no sensor
    try:
        ts_us = parse_dt(doc.get("dt"))
        check_event_time(ts_us, received_us, bounds)
    except InvalidReading:
        ts_us = received_us
    if received_us - ts_us > ATTRIBUTE_MAX_AGE_US:
        ts_us = received_us  # a day late or more: counts now, not in a long-closed minute
    return sid, minute_of(ts_us)
