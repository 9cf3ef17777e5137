"""Tumbling 1-minute windows per sensor on event time, as a pure state machine.

Policy (docs/resampling.md):
* A reading belongs to the minute of its `dt` (UTC): [start, start + 60 s).
* Each Kafka partition has an event-time clock: the newest `dt` seen in it. A
  window closes, and is emitted, once that clock has passed its end plus the
  allowed lateness. A partition that falls silent has its clock moved on by the
  wall clock (`idle`), so the last minute before a pause closes too.
* A reading for a window already emitted is not dropped: the window is updated
  and emitted again with the next revision; the newest revision is the one that
  counts (the SQL view shows only it).
* Readings outside their sensor's range are counted (`out_of_range_count`) but
  kept out of mean, min, max and `count`; a sensor without a known range has
  all its readings in range.
Nothing here does I/O: the job feeds readings and clock ticks, and persists the
state (`snapshot` / `restore`) with its checkpoints.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace

MINUTE_US = 60_000_000
NEVER = 2**63  # a close time no clock reaches

Key = tuple[str, int]  # (sensor_id, window start in µs since the epoch)


@dataclass
class Agg:
    """A window's running figures; `revision` counts its emissions so far."""

    count: int = 0  # readings in range
    sum: float = 0.0
    min: float | None = None
    max: float | None = None
    out_of_range_count: int = 0
    revision: int = 0

    def add(self, value: float, in_range: bool) -> None:
        if not in_range:
            self.out_of_range_count += 1
            return
        self.count += 1
        self.sum += value
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None


@dataclass(frozen=True)
class Emit:
    sensor_id: str
    window_start_us: int
    agg: Agg  # a copy, with its revision

    @property
    def window_end_us(self) -> int:
        return self.window_start_us + MINUTE_US


def window_start(ts_us: int) -> int:
    return ts_us - ts_us % MINUTE_US


class MinuteWindows:
    """The windows of the sensors of one Kafka partition."""

    def __init__(
        self,
        lateness_us: int,
        closed_memory: int = 20_000,
        load_closed: Callable[[Key], Agg | None] = lambda _k: None,
    ) -> None:
        self.lateness_us = lateness_us
        self.clock_us = -(2**62)  # newest event time seen (or pushed by idleness)
        self.open: dict[Key, Agg] = {}
        self._next_close = NEVER  # earliest close time of the open windows
        # Recently closed windows, so that a late reading can correct them; older
        # ones come back from where the job stored them (load_closed).
        self._closed: OrderedDict[Key, Agg] = OrderedDict()
        self._closed_memory = closed_memory
        self._load_closed = load_closed

    def _closes(self, start_us: int) -> int:
        return start_us + MINUTE_US + self.lateness_us

    def add(self, sensor_id: str, ts_us: int, value: float, in_range: bool = True) -> list[Emit]:
        """Apply one reading; returns what must be emitted now (a late correction,
        and the windows its event time closed)."""
        key = (sensor_id, window_start(ts_us))
        emits: list[Emit] = []
        agg = self.open.get(key)
        if agg is None and self._closes(key[1]) <= self.clock_us:
            agg = self._closed_window(key) or Agg()  # late: correct and re-emit now
            agg.add(value, in_range)
            agg.revision += 1
            self._remember_closed(key, agg)
            emits.append(Emit(key[0], key[1], replace(agg)))
        else:
            if agg is None:
                agg = self.open[key] = Agg()
                self._next_close = min(self._next_close, self._closes(key[1]))
            agg.add(value, in_range)
        if ts_us > self.clock_us:
            emits += self.advance(ts_us)
        return emits

    def advance(self, clock_us: int) -> list[Emit]:
        """Move the event-time clock forward; emit the windows that close."""
        self.clock_us = max(self.clock_us, clock_us)
        if self.clock_us < self._next_close:
            return []  # the common case, per reading: nothing closes yet
        due = sorted(
            (k for k in self.open if self._closes(k[1]) <= self.clock_us),
            key=lambda k: (k[1], k[0]),
        )
        emits = []
        for key in due:
            agg = self.open.pop(key)
            agg.revision += 1
            self._remember_closed(key, agg)
            emits.append(Emit(key[0], key[1], replace(agg)))
        self._update_next_close()
        return emits

    def _update_next_close(self) -> None:
        self._next_close = min((self._closes(k[1]) for k in self.open), default=NEVER)

    def _closed_window(self, key: Key) -> Agg | None:
        agg = self._closed.get(key)
        if agg is None:
            agg = self._load_closed(key)
        return agg

    def _remember_closed(self, key: Key, agg: Agg) -> None:
        self._closed[key] = agg
        self._closed.move_to_end(key)
        while len(self._closed) > self._closed_memory:
            self._closed.popitem(last=False)

    # persistence -------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """What must survive a restart: the clock and the open windows (closed ones
        are durable where their emissions were stored)."""
        return {
            "clock_us": self.clock_us,
            "open": [[k[0], k[1], asdict(a)] for k, a in self.open.items()],
        }

    def restore(self, snap: dict[str, object]) -> None:
        self.clock_us = int(snap["clock_us"])  # type: ignore[call-overload]
        entries: Iterable[list[object]] = snap["open"]  # type: ignore[assignment]
        self.open = {(str(s), int(w)): Agg(**a) for s, w, a in entries}  # type: ignore[arg-type,call-overload]
        self._update_next_close()
