"""The quality indicator's formula: bounded, 1 only when nothing is wrong, and each
fault lowers it in proportion (stream_jobs.quality, docs/quality.md)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_jobs.quality import (
    DEGRADED_BELOW,
    LATE_WEIGHT,
    SILENT_AFTER_S,
    MinuteQuality,
    expected_per_minute,
    status,
)

counts = st.integers(0, 10_000)


@st.composite
def minutes(draw):
    received = draw(counts)
    duplicates = draw(st.integers(0, received))
    unique = received - duplicates
    return MinuteQuality(
        expected=draw(st.floats(0, 10_000, allow_nan=False)),
        received=received,
        duplicates=duplicates,
        out_of_range=draw(st.integers(0, unique)),
        late=draw(st.integers(0, unique)),
        rejected=draw(counts),
    )


@given(minutes())
def test_the_score_and_its_factors_are_in_0_1(q):
    for value in (q.score, q.completeness, q.validity, q.timeliness):
        assert 0.0 <= value <= 1.0


@given(minutes())
def test_the_score_is_1_only_when_nothing_is_wrong(q):
    perfect = (
        q.received >= q.expected
        and q.received > 0
        and q.duplicates == q.out_of_range == q.late == q.rejected == 0
    )
    assert (q.score == 1.0) == perfect


@given(minutes(), st.sampled_from(["duplicates", "out_of_range", "late", "rejected"]))
def test_one_more_fault_never_raises_the_score(q, fault):
    from dataclasses import replace

    worse = replace(q, **{fault: getattr(q, fault) + 1})
    if fault in ("duplicates",):
        worse = replace(worse, received=q.received + 1)  # a duplicate is one more received
    if fault in ("out_of_range", "late") and getattr(q, fault) >= q.unique:
        return  # cannot be more than the readings there are
    assert worse.score <= q.score + 1e-12


def test_each_fault_lowers_a_full_minute_in_proportion():
    full = MinuteQuality(expected=60, received=60)
    assert full.score == 1.0
    assert MinuteQuality(expected=60, received=30).score == pytest.approx(0.5)  # silent half
    assert MinuteQuality(expected=60, received=60, out_of_range=6).score == pytest.approx(0.9)
    assert MinuteQuality(expected=60, received=66, duplicates=6).score == pytest.approx(60 / 66)
    assert MinuteQuality(expected=60, received=60, rejected=15).score == pytest.approx(60 / 75)
    late = MinuteQuality(expected=60, received=60, late=60)
    assert late.score == pytest.approx(1 - LATE_WEIGHT)
    assert MinuteQuality(expected=60).score == 0.0  # nothing came


def test_expected_readings_follow_the_sensors_interval():
    assert expected_per_minute(1000) == 60
    assert expected_per_minute(250) == 240
    assert expected_per_minute(0) == 0


def test_status_silent_degraded_ok():
    assert status([1.0, 1.0], silent_for_s=SILENT_AFTER_S) == "silent"
    assert status([1.0, DEGRADED_BELOW - 0.2], silent_for_s=0) == "degraded"
    assert status([1.0, 0.95], silent_for_s=3) == "ok"
    assert status([], silent_for_s=3) == "ok"
