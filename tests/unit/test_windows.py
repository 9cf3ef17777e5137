import json
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_jobs.windows import MINUTE_US, Agg, Emit, MinuteWindows, window_start

S = 1_000_000
T0 = 1_795_564_800 * S  # 2026-11-25 00:00:00 UTC, a minute boundary
YEAR_9999 = 253_370_764_800 * S  # 9999-01-01
MAX_AHEAD = 300 * S  # the contract's default DT_MAX_AHEAD_SECONDS


def figures(emit):
    a = emit.agg
    return (
        emit.sensor_id,
        (emit.window_start_us - T0) // MINUTE_US,
        a.count,
        a.mean,
        a.min,
        a.max,
        a.out_of_range_count,
        a.revision,
    )


def on_time(w, sensor, ts, value, in_range=True):
    """A reading received at its own event time (a device with a good clock)."""
    return w.add(sensor, ts, value, in_range, ts)


def test_boundaries_belong_to_the_minute_they_start():
    w = MinuteWindows(lateness_us=5 * S)
    assert on_time(w, "s", T0, 1.0) == []
    assert on_time(w, "s", T0 + 60 * S - 1, 3.0) == []  # 00:00:59.999999: still minute 0
    assert on_time(w, "s", T0 + 60 * S, 10.0) == []  # minute 1, minute 0 not closed yet
    emits = on_time(w, "s", T0 + 65 * S, 20.0)  # received at end of minute 0 + lateness
    assert [figures(e) for e in emits] == [("s", 0, 2, 2.0, 1.0, 3.0, 0, 1)]


def test_empty_minutes_emit_nothing_and_windows_close_in_time_order():
    w = MinuteWindows(lateness_us=0)
    on_time(w, "a", T0 + 5 * S, 1.0)
    on_time(w, "b", T0 + 6 * S, 2.0)
    emits = on_time(w, "a", T0 + 3 * MINUTE_US + S, 9.0)  # minutes 1 and 2 had no readings
    assert [figures(e)[:2] for e in emits] == [("a", 0), ("b", 0)]


def test_the_receive_time_closes_windows_not_the_event_time():
    w = MinuteWindows(lateness_us=5 * S)
    w.add("s", T0 + 10 * S, 1.0, True, T0 + 10 * S)
    # a reading dated an hour later, received now: minute 0 stays open
    assert w.add("s", T0 + 3600 * S, 2.0, True, T0 + 11 * S) == []
    assert w.clock_us == T0 + 11 * S
    (emit,) = w.advance(T0 + 65 * S)
    assert figures(emit) == ("s", 0, 1, 1.0, 1.0, 1.0, 0, 1)
    assert list(w.open) == [("s", T0 + 60 * MINUTE_US)]  # its own window, open


def test_out_of_order_within_lateness_is_on_time():
    w = MinuteWindows(lateness_us=10 * S)
    on_time(w, "s", T0 + 30 * S, 4.0)
    on_time(w, "s", T0 + 62 * S, 100.0)  # the clock is in minute 1 ...
    w.add("s", T0 + 59 * S, 6.0, True, T0 + 63 * S)  # ... minute 0 arrives: within lateness
    (emit,) = on_time(w, "s", T0 + 71 * S, 1.0)
    assert figures(emit) == ("s", 0, 2, 5.0, 4.0, 6.0, 0, 1)
    assert w.take_corrections() == []


def test_late_reading_corrects_the_window_at_the_next_checkpoint():
    w = MinuteWindows(lateness_us=2 * S)
    on_time(w, "s", T0 + 10 * S, 2.0)
    (first,) = on_time(w, "s", T0 + 63 * S, 7.0)
    assert figures(first) == ("s", 0, 1, 2.0, 2.0, 2.0, 0, 1)
    assert w.add("s", T0 + 20 * S, 4.0, True, T0 + 64 * S) == []  # late: not emitted at once
    assert w.late == 1
    (correction,) = w.take_corrections()
    assert figures(correction) == ("s", 0, 2, 3.0, 2.0, 4.0, 0, 2)
    assert first.agg.count == 1  # what was emitted is not changed afterwards
    assert w.take_corrections() == []


def test_a_late_reading_for_a_minute_without_data_is_a_new_window():
    w = MinuteWindows(lateness_us=0)
    on_time(w, "s", T0 + 5 * MINUTE_US, 1.0)
    assert w.add("s", T0 + S, 8.0, True, T0 + 5 * MINUTE_US + S) == []
    (emit,) = w.take_corrections()
    assert figures(emit) == ("s", 0, 1, 8.0, 8.0, 8.0, 0, 1)


def test_out_of_range_readings_are_counted_but_kept_out_of_the_mean():
    w = MinuteWindows(lateness_us=0)
    on_time(w, "s", T0 + S, 10.0)
    on_time(w, "s", T0 + 2 * S, 99.0, in_range=False)
    on_time(w, "s", T0 + 3 * S, 20.0)
    (emit,) = w.advance(T0 + MINUTE_US)
    assert figures(emit) == ("s", 0, 2, 15.0, 10.0, 20.0, 1, 1)


def test_a_window_of_only_out_of_range_readings_has_no_mean():
    w = MinuteWindows(lateness_us=0)
    on_time(w, "s", T0 + S, 99.0, in_range=False)
    (emit,) = w.advance(T0 + MINUTE_US)
    assert (emit.agg.count, emit.agg.mean, emit.agg.min, emit.agg.out_of_range_count) == (
        0,
        None,
        None,
        1,
    )


def test_snapshot_and_restore_continue_exactly():
    a = MinuteWindows(lateness_us=5 * S)
    b = MinuteWindows(lateness_us=5 * S)
    series = [(T0 + i * 7 * S, float(i)) for i in range(20)]
    for ts, v in series[:9]:
        on_time(a, "s", ts, v)
        on_time(b, "s", ts, v)
    restored = MinuteWindows(lateness_us=5 * S)
    restored.restore(json.loads(json.dumps(a.snapshot())))
    rest_a = [figures(e) for ts, v in series[9:] for e in on_time(restored, "s", ts, v)]
    rest_b = [figures(e) for ts, v in series[9:] for e in on_time(b, "s", ts, v)]
    assert rest_a == rest_b and rest_a


def test_snapshot_round_trips_pending_corrections_too():
    a = MinuteWindows(lateness_us=0)
    on_time(a, "s", T0 + S, 1.0)
    on_time(a, "s", T0 + MINUTE_US + S, 2.0)  # closes minute 0
    a.add("s", T0 + 2 * S, 3.0, True, T0 + MINUTE_US + 2 * S)  # late: a correction due
    snap = json.loads(json.dumps(a.snapshot()))
    restored = MinuteWindows(lateness_us=0)
    restored.restore(snap)
    assert restored.snapshot() == snap
    assert [figures(e) for e in restored.take_corrections()] == [
        figures(e) for e in a.take_corrections()
    ]
    # as the job writes it: corrections taken first, none left in the checkpoint
    assert a.snapshot()["dirty"] == []


def test_old_checkpoints_restore_with_their_clock_capped():
    # written before the ingestion-time policy: an event-time clock, dragged to 9999
    agg = {"count": 1, "sum": 4.0, "min": 4.0, "max": 4.0, "out_of_range_count": 0, "revision": 0}
    old = {"clock_us": YEAR_9999, "open": [["s", T0, agg]]}
    w = MinuteWindows(lateness_us=0)
    w.restore(old, clock_cap_us=T0 + 30 * S)
    assert w.clock_us == T0 + 30 * S
    assert list(w.open) == [("s", T0)]
    (emit,) = on_time(w, "t", T0 + MINUTE_US, 1.0)  # minute 0 closes on time
    assert figures(emit) == ("s", 0, 1, 4.0, 4.0, 4.0, 0, 1)
    # a snapshot of the ingestion-time clock is taken as it is
    new = MinuteWindows(lateness_us=0)
    new.restore(w.snapshot(), clock_cap_us=T0)
    assert new.clock_us == T0 + MINUTE_US


def test_evicted_closed_windows_are_loaded_back_for_corrections():
    store = {("s", T0): Agg(count=3, sum=6.0, min=1.0, max=3.0, revision=1)}
    w = MinuteWindows(lateness_us=0, closed_memory=1, load_closed=store.get)
    on_time(w, "s", T0 + 5 * MINUTE_US, 1.0)
    w.add("s", T0 + S, 5.0, True, T0 + 5 * MINUTE_US + S)
    (emit,) = w.take_corrections()
    assert figures(emit) == ("s", 0, 4, 2.75, 1.0, 5.0, 0, 2)


def test_windows_emitted_since_the_last_checkpoint_are_not_evicted():
    # load_closed reads what checkpoints made durable: a window closed since the
    # last checkpoint is not there yet, so it must stay in memory until then
    w = MinuteWindows(lateness_us=0, closed_memory=1, load_closed=lambda _k: None)
    for i in range(5):
        on_time(w, f"s{i}", T0 + S, float(i))
    assert len(on_time(w, "x", T0 + MINUTE_US, 0.0)) == 5  # five windows close
    w.add("s0", T0 + 2 * S, 10.0, True, T0 + MINUTE_US + S)
    (emit,) = w.take_corrections()
    assert figures(emit) == ("s0", 0, 2, 5.0, 0.0, 10.0, 0, 2)


# -- one sensor or one reading cannot move the clock -----------------------------------


def steady(sensors, minutes, start=T0):
    """One reading per sensor and 10 s, received 3 ms after its dt (as over MQTT)."""
    out = []
    for i in range(minutes * 6):
        for n, sensor in enumerate(sensors):
            dt = start + i * 10 * S + n * 1000
            out.append((sensor, dt, float((i * 7 + n) % 40), dt + 3000))
    return out


def exact(readings):
    """The plain aggregate per (sensor, window start) of (sensor, dt, value, ...)."""
    aggs: dict[tuple[str, int], Agg] = {}
    for sensor, dt, value, *_ in readings:
        aggs.setdefault((sensor, window_start(dt)), Agg()).add(value, True)
    return {k: (a.count, a.sum, a.min, a.max) for k, a in aggs.items()}


def run(w, readings, checkpoint_every=50):
    emits: list[Emit] = []
    for i, (sensor, dt, value, received) in enumerate(readings):
        emits += w.add(sensor, dt, value, True, received)
        if i % checkpoint_every == checkpoint_every - 1:
            emits += w.take_corrections()
    return emits


def by_window(emits, sensors=None):
    out: dict[tuple[str, int], list[Emit]] = {}
    for e in emits:
        if sensors is None or e.sensor_id in sensors:
            out.setdefault((e.sensor_id, e.window_start_us), []).append(e)
    return out


def test_a_reading_dated_years_ahead_closes_no_other_window():
    good = steady(["a", "b"], minutes=5)
    readings = [*good[:40], ("bad", YEAR_9999, 1.0, good[39][3]), *good[40:]]
    w = MinuteWindows(lateness_us=5 * S)
    emits = run(w, readings) + w.take_corrections()
    assert w.clock_us == readings[-1][3]  # the newest receive time, not 9999
    windows = by_window(emits, {"a", "b"})
    done = {k: v for k, v in exact(good).items() if k[1] + MINUTE_US + 5 * S <= w.clock_us}
    assert set(windows) == set(done)
    for key, (emit,) in windows.items():  # each once, revision 1, exact
        assert emit.agg.revision == 1
        assert (emit.agg.count, emit.agg.sum, emit.agg.min, emit.agg.max) == done[key]
    assert w.late == 0
    assert ("bad", window_start(YEAR_9999)) in w.open  # its own window waits for its time


def test_a_sensor_hours_ahead_closes_no_other_window():
    good = steady(["a", "b"], minutes=4)
    ahead = [("ahead", dt + 3 * 3600 * S, v, rcv) for _, dt, v, rcv in steady(["x"], 4)]
    readings = sorted(good + ahead, key=lambda r: r[3])
    w = MinuteWindows(lateness_us=5 * S)
    emits = run(w, readings) + w.take_corrections()
    assert [e.sensor_id for e in emits if e.sensor_id == "ahead"] == []  # not due yet
    assert all(e.agg.revision == 1 for e in emits)
    assert w.late == 0
    w.advance(T0 + 4 * 3600 * S)  # hours later its own windows close, each once
    ahead_windows = {k for k in w.open if k[0] == "ahead"}
    assert ahead_windows == set()


def test_a_sensor_hours_behind_corrects_only_its_own_windows():
    good = steady(["a", "b"], minutes=5)
    behind = [("slow", dt - 3 * 3600 * S, v, rcv) for _, dt, v, rcv in steady(["x"], 5)]
    readings = sorted(good + behind, key=lambda r: r[3])
    w = MinuteWindows(lateness_us=5 * S)
    emits = run(w, readings, checkpoint_every=20)
    emits += w.advance(readings[-1][3] + MINUTE_US + 5 * S) + w.take_corrections()
    windows = by_window(emits)
    want = exact(readings)
    assert set(windows) == set(want)
    for key, revisions in windows.items():
        newest = revisions[-1].agg
        assert (newest.count, newest.sum, newest.min, newest.max) == want[key]
        assert [e.agg.revision for e in revisions] == list(range(1, len(revisions) + 1))
        if key[0] != "slow":
            assert len(revisions) == 1  # the others: once each, exact
    assert w.late == len(behind)  # every reading of the slow sensor is late ...
    slow = [len(v) for k, v in windows.items() if k[0] == "slow"]
    assert max(slow) <= 2  # ... and its 6 readings a minute give a revision per checkpoint


def test_a_reading_received_after_its_window_closed_is_late_even_the_first():
    store = {("s", T0): Agg(count=1, sum=2.0, min=2.0, max=2.0, revision=1)}
    w = MinuteWindows(lateness_us=5 * S, load_closed=store.get)
    on_time(w, "t", T0 + 64 * S, 0.0)
    # the clock moves to its receive time first, then the reading finds minute 0 closed
    assert w.add("s", T0 + 30 * S, 4.0, True, T0 + 65 * S) == []
    (emit,) = w.take_corrections()
    assert figures(emit) == ("s", 0, 2, 3.0, 2.0, 4.0, 0, 2)  # onto the stored revision


def test_a_burst_of_late_readings_gives_one_revision_per_window_and_checkpoint():
    w = MinuteWindows(lateness_us=0)
    clock = T0 + 10 * MINUTE_US
    w.advance(clock)
    for i in range(90):  # 90 late readings, 3 windows, one checkpoint
        w.add("s", T0 + (i % 3) * MINUTE_US + i * 10_000, float(i), True, clock + i)
    emits = w.take_corrections()
    assert [(figures(e)[1], e.agg.count, e.agg.revision) for e in emits] == [
        (0, 30, 1),
        (1, 30, 1),
        (2, 30, 1),
    ]
    w.add("s", T0 + S, 100.0, True, clock + 100)
    (again,) = w.take_corrections()
    assert (again.agg.count, again.agg.revision) == (31, 2)


# -- any interleaving ------------------------------------------------------------------

LATENESS = 5 * S
ON_TIME = ("on0", "on1", "on2")  # received within the lateness after their dt (or ahead)
WILD = ("slow", "wild")  # any dt within the bounds


@dataclass
class Lake:
    """What checkpoints make durable: every emission, and the newest per window."""

    rows: list[Emit] = field(default_factory=list)
    newest: dict[tuple[str, int], Agg] = field(default_factory=dict)

    def load(self, key):
        agg = self.newest.get(key)
        return None if agg is None else Agg(**vars(agg))

    def commit(self, emits):
        for e in emits:
            self.rows.append(e)
            self.newest[(e.sensor_id, e.window_start_us)] = e.agg


step = st.tuples(
    st.sampled_from(ON_TIME + WILD),
    st.one_of(st.integers(0, 3 * S), st.integers(0, 90 * S)),  # receive time increment
    st.integers(0, 10**9),  # where dt falls, see below
    st.integers(-5, 50),  # value (outside 0..45: out of range)
    st.sampled_from([""] * 12 + ["checkpoint", "restart", "crash"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=120), st.integers(1, 4))
def test_any_interleaving_gives_exact_newest_revisions(steps, memory):
    lake = Lake()

    def fresh():
        return MinuteWindows(LATENESS, closed_memory=memory, load_closed=lake.load)

    w, pending = fresh(), []
    durable = json.dumps(w.snapshot())
    since_checkpoint = []  # readings after the checkpoint: replayed after a crash
    readings, received = [], T0

    def apply(sensor, dt, value, rcv):
        pending.extend(w.add(sensor, dt, value, 0 <= value <= 45, rcv))

    for sensor, increment, where, value, action in steps:
        received += increment
        if sensor in ON_TIME:  # up to the lateness behind, up to MAX_AHEAD ahead
            dt = received - LATENESS + 1 + where % (LATENESS + MAX_AHEAD)
        elif sensor == "slow":  # up to 3 minutes behind
            dt = received - where % (3 * MINUTE_US)
        elif where % 2:  # wild: anywhere from the year 2000 (the floor) to MAX_AHEAD ahead
            dt = received + MAX_AHEAD - where * 800_000
        else:  # or near its receive time
            dt = received + MAX_AHEAD - where % (10 * MINUTE_US)
        reading = (sensor, dt, float(value), received)
        readings.append(reading)
        since_checkpoint.append(reading)
        apply(*reading)
        if action in ("checkpoint", "restart"):
            pending += w.take_corrections()
            lake.commit(pending)
            pending, since_checkpoint = [], []
            durable = json.dumps(w.snapshot())
            if action == "restart":
                w = fresh()
                w.restore(json.loads(durable))
        elif action == "crash":  # what is not checkpointed is lost, and read again
            w, pending = fresh(), []
            w.restore(json.loads(durable))
            for r in since_checkpoint:
                apply(*r)
    pending += w.advance(received + 10 * 365 * 86_400 * S) + w.take_corrections()
    lake.commit(pending)
    assert json.loads(json.dumps(w.snapshot()))["open"] == []

    want: dict[tuple[str, int], Agg] = {}
    for sensor, dt, value, _ in readings:
        want.setdefault((sensor, window_start(dt)), Agg()).add(value, 0 <= value <= 45)
    revisions: dict[tuple[str, int], list[int]] = {}
    for e in lake.rows:
        revisions.setdefault((e.sensor_id, e.window_start_us), []).append(e.agg.revision)
    assert set(revisions) == set(want)
    for key, agg in want.items():
        assert revisions[key] == list(range(1, len(revisions[key]) + 1))  # each once, in order
        newest = lake.newest[key]
        assert (newest.count, newest.sum, newest.min, newest.max, newest.out_of_range_count) == (
            agg.count,
            agg.sum,
            agg.min,
            agg.max,
            agg.out_of_range_count,
        )
        if key[0] in ON_TIME:
            assert revisions[key] == [1]  # emitted exactly once


def test_late_readings_are_counted_in_their_window_and_survive_a_restart():
    w = MinuteWindows(lateness_us=5 * S)
    w.add("s", T0, 1.0, True, T0, late=True)
    w.add("s", T0 + S, 99.0, False, T0 + S, late=True)  # out of range and late: both
    w.add("s", T0 + 2 * S, 2.0, True, T0 + 2 * S)
    restored = MinuteWindows(lateness_us=5 * S)
    restored.restore(json.loads(json.dumps(w.snapshot())))
    (emit,) = on_time(restored, "s", T0 + 65 * S, 3.0)
    assert (emit.agg.count, emit.agg.out_of_range_count, emit.agg.late_count) == (2, 1, 2)


def test_a_checkpoint_from_before_late_counts_restores_with_none():
    agg = {"count": 1, "sum": 4.0, "min": 4.0, "max": 4.0, "out_of_range_count": 0, "revision": 0}
    w = MinuteWindows(lateness_us=0)
    w.restore({"clock": "received", "clock_us": T0, "open": [["s", T0, agg]]})
    (emit,) = w.advance(T0 + 60 * S)
    assert emit.agg.late_count == 0 and emit.agg.count == 1
