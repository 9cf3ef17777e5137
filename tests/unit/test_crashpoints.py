"""IOT_CRASH_AT is read from the environment: a wrong value is refused at start
with the list of steps, never silently ignored (a crash test would then pass
without crashing)."""

import pytest

from mqtt_bridge.crashpoints import STEPS, _target


def test_a_step_and_its_pass_count_are_parsed():
    assert _target(None) is None
    assert _target("") is None
    assert _target("bridge.produced") == ("bridge.produced", 1)
    assert _target("minute.written@3") == ("minute.written", 3)


@pytest.mark.parametrize(
    "value",
    ["bridge", "bridge.produced@x", "bridge.produced@0", "archive.readings", "BRIDGE.PRODUCED"],
)
def test_an_unknown_step_or_count_is_refused(value):
    with pytest.raises(ValueError, match="IOT_CRASH_AT="):
        _target(value)


def test_every_table_of_the_archive_has_its_three_steps():
    for table in ("readings", "sensors", "rejected"):
        for step in ("pending", "written", "committed"):
            assert f"archive.{table}.{step}" in STEPS
