"""The quality job's pure state (stream_jobs.quality.QualityState) and the
attribution of dead letters to a sensor and minute."""

from __future__ import annotations

import json

import orjson
from hypothesis import given
from hypothesis import strategies as st

from iot_common.contract import DEFAULT_BOUNDS
from iot_common.errors import reason_code
from stream_jobs.quality import (
    CLOSE_AFTER_S,
    KEEP_MINUTES,
    MINUTE_US,
    SILENT_AFTER_S,
    Cell,
    QualityState,
    attribute,
)

T0 = 1_796_000_000_000_000 - 1_796_000_000_000_000 % MINUTE_US  # a minute start, 2026
CLOSE_US = int(CLOSE_AFTER_S * 1e6)


def expected(_sid: str) -> float:
    return 60.0


def no_load(keys: list[tuple[str, int]]) -> dict[tuple[str, int], Cell]:
    raise AssertionError(f"nothing was pruned: nothing to read back, not {keys}")


def test_a_minute_is_emitted_once_its_1m_window_came_with_every_figure():
    s = QualityState()
    s.take(T0, [], expected, no_load)  # the first run: silence counted from here on
    s.apply_minute("A", T0, count=55, out_of_range=3, late=4, revision=1)
    for _ in range(2):
        s.apply_dead_letter("A", T0, duplicate=True)
    s.apply_dead_letter("A", T0 + 5_000_000, duplicate=False)
    (e,) = s.take(T0 + MINUTE_US + 8_000_000, [], expected, no_load)
    q = e.quality
    assert (e.sensor_id, e.minute_us, e.revision) == ("A", T0, 1)
    assert (q.received, q.valid, q.out_of_range, q.duplicates, q.late, q.rejected) == (
        60,
        55,
        3,
        2,
        4,
        1,
    )
    assert 0 < q.score < 1
    assert s.take(T0 + MINUTE_US + 9_000_000, [], expected, no_load) == []  # nothing changed


def test_a_later_dead_letter_revises_the_minute_and_an_old_1m_revision_changes_nothing():
    s = QualityState()
    s.take(T0, [], expected, no_load)
    s.apply_minute("A", T0, count=60, out_of_range=0, late=0, revision=2)
    (first,) = s.take(T0 + MINUTE_US, [], expected, no_load)
    assert first.quality.score == 1.0
    s.apply_minute("A", T0, count=10, out_of_range=0, late=0, revision=1)
    assert s.take(T0 + MINUTE_US, [], expected, no_load) == []
    s.apply_dead_letter("A", T0, duplicate=False)
    (second,) = s.take(T0 + MINUTE_US, [], expected, no_load)
    assert second.revision == 2 and second.quality.rejected == 1
    assert second.quality.received == 60


def test_a_minute_with_dead_letters_only_closes_by_the_wall_clock():
    s = QualityState()
    s.take(T0, [], expected, no_load)
    s.apply_dead_letter("B", T0 + MINUTE_US, duplicate=False)
    end = T0 + 2 * MINUTE_US
    assert s.take(end + CLOSE_US - 1, [], expected, no_load) == []
    (e,) = s.take(end + CLOSE_US, [], expected, no_load)
    assert e.quality.rejected == 1 and e.quality.received == 0 and e.quality.score == 0.0


def test_a_sensor_that_stops_gets_minutes_of_zero_and_turns_silent():
    s = QualityState()
    s.take(T0, ["A", "never"], expected, no_load)
    s.apply_minute("A", T0 + MINUTE_US, count=60, out_of_range=0, late=0, revision=1)
    later = T0 + 4 * MINUTE_US + CLOSE_US
    emits = s.take(later, ["A", "never"], expected, no_load)
    # its minute, then a row of nothing for each minute that closed after it; none
    # before its first reading, none for a sensor that never sent
    assert [(e.sensor_id, e.minute_us, e.quality.received) for e in emits] == [
        ("A", T0 + MINUTE_US, 60),
        ("A", T0 + 2 * MINUTE_US, 0),
        ("A", T0 + 3 * MINUTE_US, 0),
    ]
    changes = {c.sensor_id: c for c in s.status_changes(later, ["A", "never"], expected)}
    assert changes["never"].status == "silent" and changes["never"].previous is None
    assert changes["A"].status == "silent"  # last reading 2 min 30 s ago


def test_a_sensors_first_minute_is_partial_and_does_not_count_toward_its_status():
    s = QualityState()
    s.take(T0, ["A"], expected, no_load)
    s.apply_minute("A", T0, count=12, out_of_range=0, late=0, revision=1)  # started at :48
    s.apply_minute("A", T0 + MINUTE_US, count=60, out_of_range=0, late=0, revision=1)
    now = T0 + 2 * MINUTE_US + 1
    s.take(now, ["A"], expected, no_load)
    assert s.recent_scores(expected) == {"A": [1.0]}
    assert [c.status for c in s.status_changes(now, ["A"], expected)] == ["ok"]


def test_status_follows_the_recent_scores_and_the_last_reading():
    s = QualityState()
    s.take(T0, ["A"], expected, no_load)
    for m in range(5):
        s.apply_minute("A", T0 + m * MINUTE_US, count=60, out_of_range=0, late=0, revision=1)
    now = T0 + 5 * MINUTE_US + 1
    s.take(now, ["A"], expected, no_load)
    assert [(c.status, c.previous) for c in s.status_changes(now, ["A"], expected)] == [
        ("ok", None)
    ]
    for m in range(5, 10):
        s.apply_minute("A", T0 + m * MINUTE_US, count=40, out_of_range=20, late=0, revision=1)
    now = T0 + 10 * MINUTE_US + 1
    s.take(now, ["A"], expected, no_load)
    (change,) = s.status_changes(now, ["A"], expected)
    assert (change.status, change.previous) == ("degraded", "ok")
    assert change.recent_score is not None and abs(change.recent_score - 40 / 60) < 1e-9
    silent_at = change.last_reading_us + int(SILENT_AFTER_S * 1e6)  # type: ignore[operator]
    assert s.status_changes(silent_at - 1, ["A"], expected) == []
    (change,) = s.status_changes(silent_at, ["A"], expected)
    assert change.status == "silent"


def test_pruned_minutes_are_read_back_when_touched_again():
    s = QualityState()
    s.take(T0, [], expected, no_load)
    s.apply_minute("A", T0, count=60, out_of_range=0, late=0, revision=1)
    s.take(T0 + MINUTE_US, [], expected, no_load)
    s.prune(T0 + (KEEP_MINUTES + 2) * MINUTE_US)
    assert ("A", T0) not in s.cells
    loads = []

    def load(keys: list[tuple[str, int]]) -> dict[tuple[str, int], Cell]:
        loads.append(keys)
        return {("A", T0): Cell(count=60, revision=1)}

    s.apply_dead_letter("A", T0, duplicate=True)
    s.apply_dead_letter("B", T0, duplicate=False)  # never emitted: nothing to read back
    emits = s.take(T0 + (KEEP_MINUTES + 2) * MINUTE_US, [], expected, load)
    assert loads == [[("A", T0), ("B", T0)]]  # one batch
    e = next(e for e in emits if e.sensor_id == "A")
    b = next(e for e in emits if e.sensor_id == "B")
    assert (b.revision, b.quality.rejected) == (1, 1)
    assert (e.revision, e.quality.received, e.quality.duplicates) == (2, 61, 1)


def test_the_state_survives_its_snapshot():
    s = QualityState()
    s.take(T0, ["A"], expected, no_load)
    s.apply_minute("A", T0, count=5, out_of_range=1, late=2, revision=3)
    s.apply_dead_letter("B", T0, duplicate=False)
    s.status_changes(T0, ["A"], expected)
    back = QualityState.restore(orjson.loads(orjson.dumps(s.snapshot())))
    assert back == s


def test_dead_letters_are_attributed_by_id_and_dt_else_receive_time():
    received = T0 + 90_000_000
    bad_value = b'{"id": "Sensor 1", "dt": "2026-11-30T10:00:30", "value": "hot"}'
    sid, minute = attribute(bad_value, received, DEFAULT_BOUNDS)  # type: ignore[misc]
    assert sid == "Sensor 1" and minute % MINUTE_US == 0
    assert attribute(b'{"id": "S", "dt": "yesterday"}', received, DEFAULT_BOUNDS) == (
        "S",
        T0 + MINUTE_US,
    )
    assert attribute(b"not json", received, DEFAULT_BOUNDS) is None
    assert attribute(b'{"dt": "2026-11-30T10:00:30"}', received, DEFAULT_BOUNDS) is None
    assert attribute(b'[{"id": "S"}]', received, DEFAULT_BOUNDS) is None
    assert reason_code("duplicate: 'S' already reported") == "duplicate"


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=2**62))
def test_attribution_never_raises(payload: bytes, received: int) -> None:
    found = attribute(payload, received, DEFAULT_BOUNDS)
    assert found is None or (isinstance(found[0], str) and found[1] % MINUTE_US == 0)


@given(
    st.dictionaries(
        st.sampled_from(["id", "dt", "value"]),
        st.one_of(st.text(max_size=30), st.integers(), st.none(), st.floats()),
    ),
    st.integers(min_value=0, max_value=2**62),
)
def test_attribution_of_any_json_object(doc: dict[str, object], received: int) -> None:
    found = attribute(json.dumps(doc).encode(), received, DEFAULT_BOUNDS)
    if found is not None:
        assert found[0] == doc["id"]


def test_an_equal_1m_revision_with_other_figures_replaces_the_first():
    """After a crash the 1-minute job may emit a revision again, with the figures
    its replay reached: the later emission is the one its table holds."""
    s = QualityState()
    s.take(T0, [], expected, no_load)
    s.apply_minute("A", T0, count=30, out_of_range=0, late=0, revision=1)
    s.apply_minute("A", T0, count=45, out_of_range=0, late=0, revision=1)
    (e,) = s.take(T0 + MINUTE_US, [], expected, no_load)
    assert e.quality.received == 45
    s.apply_minute("A", T0, count=45, out_of_range=0, late=0, revision=1)
    assert s.take(T0 + MINUTE_US, [], expected, no_load) == []  # the same emission again


def test_ids_only_dead_letters_name_get_no_status_and_unknown_silent_ones_are_forgotten():
    """Ids are untrusted: what is kept of sensors not in the list stays bounded."""
    s = QualityState()
    s.take(T0, ["A"], expected, no_load)
    for i in range(50):
        s.apply_dead_letter(f"evil {i}", T0, duplicate=False)
    s.apply_minute("stranger", T0, count=60, out_of_range=0, late=0, revision=1)
    now = T0 + MINUTE_US + CLOSE_US
    s.take(now, ["A"], expected, no_load)
    assert {c.sensor_id for c in s.status_changes(now, ["A"], expected)} == {"A", "stranger"}
    later = T0 + (KEEP_MINUTES + 5) * MINUTE_US
    s.take(later, ["A"], expected, no_load)
    s.status_changes(later, ["A"], expected)  # stranger: silent
    s.prune(later, ["A"])
    assert set(s.statuses) == {"A"} and "stranger" not in s.last_reading_us
    assert not any(sid.startswith("evil") for sid, _ in s.cells)


def test_while_catching_up_no_minute_is_closed_by_the_wall_clock():
    s = QualityState()
    s.take(T0, ["A"], expected, no_load)
    s.apply_minute("A", T0, count=60, out_of_range=0, late=0, revision=1)
    s.apply_dead_letter("A", T0 + MINUTE_US, duplicate=False)
    later = T0 + 10 * MINUTE_US
    (e,) = s.take(later, ["A"], expected, no_load, close=False)  # its 1m window came
    assert e.minute_us == T0
    emits = s.take(later, ["A"], expected, no_load)  # caught up: the rest closes
    assert [x.minute_us for x in emits] == [T0 + m * MINUTE_US for m in range(1, 9)]


def test_a_replayed_1m_emission_of_a_pruned_minute_changes_nothing():
    s = QualityState()
    s.take(T0, [], expected, no_load)
    s.apply_minute("A", T0, count=60, out_of_range=0, late=0, revision=2)
    s.take(T0 + MINUTE_US, [], expected, no_load)
    s.prune(T0 + (KEEP_MINUTES + 2) * MINUTE_US)
    s.apply_minute("A", T0, count=60, out_of_range=0, late=0, revision=2)  # again

    def load(keys):
        return {("A", T0): Cell(count=60, revision=1)}

    assert s.take(T0 + (KEEP_MINUTES + 2) * MINUTE_US, [], expected, load) == []


def test_a_blank_id_names_no_sensor_and_a_day_old_dt_counts_now():
    received = T0 + 90_000_000
    assert (
        attribute(b'{"id": "   ", "dt": "2026-11-30T10:00:00"}', received, DEFAULT_BOUNDS) is None
    )
    old = orjson.dumps({"id": "S", "dt": "2001-01-01T00:00:00", "value": "x"})
    assert attribute(old, received, DEFAULT_BOUNDS) == ("S", T0 + MINUTE_US)


def a_job():
    from stream_jobs.scoring import QualityJob, SensorList

    class Table:  # the job touches its table only at checkpoints
        pass

    return QualityJob(
        Table(),  # type: ignore[arg-type]
        consumer_config={"bootstrap.servers": "unused"},
        producer=None,  # type: ignore[arg-type]
        sensors=SensorList(lambda: [], 1000),
        minutes_topic="m",
        dlq_topic="d",
        out_topic="q",
        status_topic="s",
        commit_s=1,
        bounds=DEFAULT_BOUNDS,
    )


def test_the_job_reads_1m_emissions_from_before_late_count_existed():
    """An existing installation's 1-minute topic holds emissions without late_count."""
    job = a_job()
    old = {
        "sensor_id": "A",
        "window_start": "2026-11-30T10:00:00.000000",
        "count": 60,
        "out_of_range_count": 0,
        "revision": 1,
    }
    job.apply("m", 0, 0, orjson.dumps(old), None, 0)
    job.apply("m", 0, 1, orjson.dumps({**old, "count": 2**40, "revision": 2}), None, 0)
    job.apply("m", 0, 2, orjson.dumps({**old, "window_start": "9999-12-31T23:59:00"}), None, 0)
    assert (job.stats.minutes_in, job.stats.skipped) == (1, 2)
    (cell,) = job.state.cells.values()
    assert (cell.count, cell.late, cell.minute_revision) == (60, 0, 1)


def test_hostile_dead_letters_are_counted_or_skipped_never_raised():
    """Dead letters are whatever reached the bridge: any bytes, any headers."""
    job = a_job()
    named = orjson.dumps({"id": "A", "dt": "2026-11-30T10:00:30", "value": "x"})
    records = [
        (named, [("reason", b"\xff\xfe: not UTF-8"), ("received_at", b"garbage")]),
        (named, {"reason": "duplicate: again", "received_at": None}),
        (named, None),
        (b"\x00" * 5000, [("reason", None)]),
        (None, [("received_at", b"2026-11-30T10:01:00Z")]),
        (b'{"id": ["A"], "dt": 5}', []),
    ]
    for offset, (value, headers) in enumerate(records):
        job.apply("d", 0, offset, value, headers, 1_796_000_000_000)
    assert job.stats.skipped == 0 and job.stats.dead_letters_in == 6
    assert job.stats.unattributed == 3
    (cell,) = job.state.cells.values()
    assert (cell.duplicates, cell.rejected) == (1, 2)


def test_the_sensor_list_skips_what_it_cannot_use():
    from stream_jobs.scoring import SensorList

    entries = [
        (b"A", orjson.dumps({"range": [0, 1], "interval_ms": 2000})),
        (b"B", orjson.dumps({"interval_ms": "fast"})),
        (b"C", orjson.dumps({"interval_ms": -5})),
        (b"D", b"not json"),
        (b"E", orjson.dumps({"interval_ms": True})),
        (b"F", b'{"interval_ms": 1e400}'),  # beyond a float
        (b"\xff", orjson.dumps({"interval_ms": 1000})),
        (b"G", orjson.dumps({"interval_ms": 500})),
        (b"G", None),  # removed
        (None, b"{}"),
    ]
    sensors = SensorList(lambda: entries, 1000)
    sensors.refresh()
    assert sensors.known == ["A", "B", "C", "D", "E", "F"]
    assert sensors.expected("A") == 30.0
    assert {sensors.expected(s) for s in "BCDEF"} == {60.0}  # the default interval
    assert sensors.expected("never listed") == 60.0
