"""Tumbling 1-minute windows per sensor on event time, as a pure state machine.

Policy (docs/resampling.md, "Watermark policy"):
* A reading belongs to the minute of its `dt` (UTC): [start, start + 60 s).
* Each Kafka partition has a clock: the largest value the job fed for its
  readings, which is min(dt, receive time) (the bridge's stamp, capped at the
  job's wall clock plus the contract's max-ahead): event time, capped by
  ingestion time. A window closes, and is emitted, once that clock has passed
  its end plus the allowed lateness. A `dt` ahead of its receive time moves the
  clock no further than the receive time, so a device whose clock is wrong (or
  one reading dated 9999) affects its own windows only, while replayed history
  still closes in event-time order. A partition that falls silent has its
  clock moved on by the wall clock (`advance`), so the last minute before a
  pause closes too.
* A reading for a window already closed is not dropped: the window is updated
  and marked for correction; `take_corrections` (at each checkpoint) emits each
  such window once with the next revision, however many late readings it got.
  The newest revision is the one that counts (the SQL view shows only it).
* Readings outside their sensor's range are counted (`out_of_range_count`) but
  kept out of mean, min, max and `count`; a sensor without a known range has
  all its readings in range. Readings the job marks late (received well after
  their dt: stream_jobs.quality.LATE_AFTER_S) are counted in `late_count`.
Nothing here does I/O: the job feeds readings and clock ticks, and persists the
state (`snapshot` / `restore`) with its checkpoints.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace

MINUTE_US = 60_000_000
NEVER = 2**63  # a close time no clock reaches
NO_CLOCK = -(2**62)  # before any reading
CLOCK_POLICY = "received"  # what the clock of a snapshot measures

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
    late_count: int = 0  # readings received well after their dt (in range or not)

    def add(self, value: float, in_range: bool, late: bool = False) -> None:
        if late:
            self.late_count += 1
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
        self.clock_us = NO_CLOCK  # newest receive time seen (or pushed by idleness)
        self.open: dict[Key, Agg] = {}
        self._next_close = NEVER  # earliest close time of the open windows
        # Recently closed windows, so that a late reading can correct them; older
        # ones come back from where the job stored them (load_closed).
        self._closed: OrderedDict[Key, Agg] = OrderedDict()
        self._closed_memory = closed_memory
        self._load_closed = load_closed
        # Closed windows corrected by late readings, not emitted yet (their Agg
        # holds the revision last emitted).
        self._dirty: dict[Key, Agg] = {}
        # Closed windows emitted since the last take_corrections: not durable yet
        # where load_closed reads, so never evicted from memory before then.
        self._unsaved: dict[Key, Agg] = {}
        self.late = 0  # readings that arrived after their window closed (for stats)

    def _closes(self, start_us: int) -> int:
        return start_us + MINUTE_US + self.lateness_us

    def add(
        self,
        sensor_id: str,
        ts_us: int,
        value: float,
        in_range: bool,
        received_us: int,
        late: bool = False,
    ) -> list[Emit]:
        """Apply one reading of event time `ts_us`; `received_us` is how far it may
        move the clock (the job passes min(dt, receive time), capped).

        That moves the clock first (returned: the windows it closed);
        then the reading goes into the window of its event time, or, if that window
        is already closed, corrects it (emitted by the next take_corrections)."""
        emits = self.advance(received_us) if received_us > self.clock_us else []
        key = (sensor_id, window_start(ts_us))
        agg = self.open.get(key)
        if agg is None and self._closes(key[1]) <= self.clock_us:
            self.late += 1
            agg = self._dirty.get(key)
            if agg is None:
                agg = self._closed_window(key) or Agg()  # revision 0: never emitted
                self._dirty[key] = agg
            agg.add(value, in_range, late)
            return emits
        if agg is None:
            agg = self.open[key] = Agg()
            self._next_close = min(self._next_close, self._closes(key[1]))
        agg.add(value, in_range, late)
        return emits

    def advance(self, clock_us: int) -> list[Emit]:
        """Move the clock forward (never back); emit the windows that close."""
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
            emits.append(self._emit(key, agg))
        self._update_next_close()
        return emits

    def take_corrections(self) -> list[Emit]:
        """One emission per window corrected since the last call, with the next
        revision. The job calls it at each checkpoint, so a burst of late readings
        makes one revision per window and checkpoint; after the checkpoint every
        emission so far is durable (load_closed finds it)."""
        emits = [
            self._emit(key, self._dirty[key])
            for key in sorted(self._dirty, key=lambda k: (k[1], k[0]))
        ]
        self._dirty.clear()
        self._unsaved.clear()
        return emits

    def _emit(self, key: Key, agg: Agg) -> Emit:
        agg.revision += 1
        self._unsaved[key] = agg
        self._remember_closed(key, agg)
        return Emit(key[0], key[1], replace(agg))  # a copy: later changes do not leak

    def _update_next_close(self) -> None:
        self._next_close = min((self._closes(k[1]) for k in self.open), default=NEVER)

    def _closed_window(self, key: Key) -> Agg | None:
        agg = self._unsaved.get(key)
        if agg is None:
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
        """What must survive a restart: the clock, the open windows and the
        corrections not emitted yet (none when taken first, as the job does);
        windows emitted before are durable where their emissions were stored."""
        return {
            "clock": CLOCK_POLICY,
            "clock_us": self.clock_us,
            "open": [[k[0], k[1], asdict(a)] for k, a in self.open.items()],
            "dirty": [[k[0], k[1], asdict(a)] for k, a in self._dirty.items()],
        }

    def restore(self, snap: dict[str, object], clock_cap_us: int | None = None) -> None:
        """Continue from a snapshot. One written before the ingestion-time policy
        (no "clock" field) has an event-time clock, which one reading could drag
        into the future: it is capped at `clock_cap_us` (the job passes its wall
        clock plus the contract's max-ahead)."""
        clock = int(snap["clock_us"])  # type: ignore[call-overload]
        if snap.get("clock") != CLOCK_POLICY and clock_cap_us is not None:
            clock = min(clock, clock_cap_us)
        self.clock_us = clock
        self.open = _aggs(snap["open"])
        self._dirty = _aggs(snap.get("dirty", []))
        self._unsaved.clear()
        self._closed.clear()
        self._update_next_close()


def _aggs(entries: object) -> dict[Key, Agg]:
    rows: Iterable[list[object]] = entries  # type: ignore[assignment]
    return {(str(s), int(w)): Agg(**a) for s, w, a in rows}  # type: ignore[arg-type,call-overload]
