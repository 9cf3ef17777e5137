"""IOT_CRASH_AT is read from the environment: a wrong value is refused at start
with the list of steps, never silently ignored (a crash test would then pass
without crashing)."""

import pytest

from iot_common.crashpoints import STEPS, _target
from stream_jobs.tables import TABLES


def test_a_step_and_its_pass_count_are_parsed():
    assert _target(None) is None
    assert _target("") is None
    assert _target("bridge.produced") == ("bridge.produced", 1)
    assert _target("iceberg.readings.committed@3") == ("iceberg.readings.committed", 3)
    assert _target("minute.emitted") == ("minute.emitted", 1)


@pytest.mark.parametrize(
    "value",
    [
        "bridge",
        "bridge.produced@x",
        "bridge.produced@0",
        "BRIDGE.PRODUCED",
        "iceberg.readings",
        "iceberg.nosuchtable.written",
        "iceberg.readings.written@-1",
        # the steps of the hand-made checkpoints, gone with them
        "archive.readings.pending",
        "archive.readings.committed",
        "minute.pending",
        "minute.written",
    ],
)
def test_an_unknown_step_or_count_is_refused(value):
    with pytest.raises(ValueError, match="IOT_CRASH_AT="):
        _target(value)


@pytest.mark.parametrize("table", [t.name for t in TABLES])
def test_every_table_has_the_steps_of_its_commits_and_its_maintenance(table):
    for step in (
        f"iceberg.{table}.written",
        f"iceberg.{table}.metadata",
        f"iceberg.{table}.committed",
        f"compaction.{table}.written",
        f"expiry.{table}.start",
    ):
        assert step in STEPS
        assert _target(step) == (step, 1)


def test_steps_are_unique_and_named_without_placeholders():
    assert len(STEPS) == len(set(STEPS))
    assert not any("<" in s or ">" in s for s in STEPS)
    assert {"bridge.produced", "bridge.confirmed", "bridge.dead_lettered", "minute.emitted"} <= set(
        STEPS
    )
