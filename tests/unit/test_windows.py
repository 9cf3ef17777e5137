from stream_jobs.windows import MINUTE_US, Agg, MinuteWindows

S = 1_000_000
T0 = 1_795_564_800 * S  # 2026-11-25 00:00:00 UTC, a minute boundary


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


def test_boundaries_belong_to_the_minute_they_start():
    w = MinuteWindows(lateness_us=5 * S)
    assert w.add("s", T0, 1.0) == []
    assert w.add("s", T0 + 60 * S - 1, 3.0) == []  # 00:00:59.999999: still minute 0
    assert w.add("s", T0 + 60 * S, 10.0) == []  # 00:01:00: minute 1, minute 0 not closed yet
    emits = w.add("s", T0 + 65 * S, 20.0)  # end of minute 0 + lateness
    assert [figures(e) for e in emits] == [("s", 0, 2, 2.0, 1.0, 3.0, 0, 1)]


def test_empty_minutes_emit_nothing_and_windows_close_in_time_order():
    w = MinuteWindows(lateness_us=0)
    w.add("a", T0 + 5 * S, 1.0)
    w.add("b", T0 + 6 * S, 2.0)
    emits = w.add("a", T0 + 3 * MINUTE_US + S, 9.0)  # minutes 1 and 2 had no readings
    assert [figures(e)[:2] for e in emits] == [("a", 0), ("b", 0)]


def test_out_of_order_within_lateness_is_on_time():
    w = MinuteWindows(lateness_us=10 * S)
    w.add("s", T0 + 30 * S, 4.0)
    w.add("s", T0 + 62 * S, 100.0)  # the clock is in minute 1 ...
    w.add("s", T0 + 59 * S, 6.0)  # ... a reading of minute 0 arrives: within lateness
    (emit,) = w.add("s", T0 + 71 * S, 1.0)
    assert figures(emit) == ("s", 0, 2, 5.0, 4.0, 6.0, 0, 1)


def test_late_reading_re_emits_the_window_with_corrected_figures():
    w = MinuteWindows(lateness_us=2 * S)
    w.add("s", T0 + 10 * S, 2.0)
    (first,) = w.add("s", T0 + 63 * S, 7.0)
    assert figures(first) == ("s", 0, 1, 2.0, 2.0, 2.0, 0, 1)
    (correction,) = w.add("s", T0 + 20 * S, 4.0)  # after the window closed
    assert figures(correction) == ("s", 0, 2, 3.0, 2.0, 4.0, 0, 2)
    assert first.agg.count == 1  # what was emitted is not changed afterwards


def test_a_late_reading_for_a_minute_without_data_is_a_new_window():
    w = MinuteWindows(lateness_us=0)
    w.add("s", T0 + 5 * MINUTE_US, 1.0)
    (emit,) = w.add("s", T0 + S, 8.0)
    assert figures(emit) == ("s", 0, 1, 8.0, 8.0, 8.0, 0, 1)


def test_out_of_range_readings_are_counted_but_kept_out_of_the_mean():
    w = MinuteWindows(lateness_us=0)
    w.add("s", T0 + S, 10.0)
    w.add("s", T0 + 2 * S, 99.0, in_range=False)
    w.add("s", T0 + 3 * S, 20.0)
    (emit,) = w.advance(T0 + MINUTE_US)
    assert figures(emit) == ("s", 0, 2, 15.0, 10.0, 20.0, 1, 1)


def test_a_window_of_only_out_of_range_readings_has_no_mean():
    w = MinuteWindows(lateness_us=0)
    w.add("s", T0 + S, 99.0, in_range=False)
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
        a.add("s", ts, v)
        b.add("s", ts, v)
    restored = MinuteWindows(lateness_us=5 * S)
    restored.restore(a.snapshot())
    rest_a = [figures(e) for ts, v in series[9:] for e in restored.add("s", ts, v)]
    rest_b = [figures(e) for ts, v in series[9:] for e in b.add("s", ts, v)]
    assert rest_a == rest_b and rest_a


def test_evicted_closed_windows_are_loaded_back_for_corrections():
    store = {("s", T0): Agg(count=3, sum=6.0, min=1.0, max=3.0, revision=1)}
    w = MinuteWindows(lateness_us=0, closed_memory=1, load_closed=store.get)
    w.add("s", T0 + 5 * MINUTE_US, 1.0)
    (emit,) = w.add("s", T0 + S, 5.0)
    assert figures(emit) == ("s", 0, 4, 2.75, 1.0, 5.0, 0, 2)
