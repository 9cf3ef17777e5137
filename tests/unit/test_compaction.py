from datetime import date

import pytest

from stream_jobs.compaction import CompactedPlacement, compacted_tables, folder_date, generation
from stream_jobs.errors import LakeError
from stream_jobs.lake import Lake
from stream_jobs.tables import READINGS


def test_folder_dates_and_generations():
    assert folder_date("event_date=2026-11-25") == date(2026, 11, 25)
    assert folder_date("event_date=__HIVE_DEFAULT_PARTITION__") is None
    assert generation("raw/readings/event_date=2026-11-25") == 0
    assert generation("raw/readings/event_date=2026-11-25/_c12") == 12


def test_days_close_after_the_configured_age(tmp_path):
    placement = CompactedPlacement(
        None, "raw", Lake(str(tmp_path)), closed_after_days=1, today=lambda: date(2026, 11, 25)
    )
    assert placement.is_closed("event_date=2026-11-24")
    assert not placement.is_closed("event_date=2026-11-25")
    # open days never ask the metastore (there is none here): their folder
    assert placement.relative_dir(READINGS, "event_date=2026-11-25") == (
        "raw/readings/event_date=2026-11-25"
    )


def test_lake_paths_from_metastore_locations(tmp_path):
    lake = Lake(str(tmp_path))
    assert lake.relative(f"file:{tmp_path}/raw/readings/x=1") == "raw/readings/x=1"
    assert lake.relative(lake.uri("raw", "sensors")) == "raw/sensors"
    with pytest.raises(LakeError):
        lake.relative("file:/elsewhere/raw")


def test_compacted_files_are_bounded():
    import pyarrow as pa

    from stream_jobs import compaction

    old = compaction.FILE_ROWS
    compaction.FILE_ROWS = 4
    try:
        parts = compacted_tables([pa.table({"a": range(5)}), pa.table({"a": range(5)})])
    finally:
        compaction.FILE_ROWS = old
    assert [p.num_rows for p in parts] == [4, 4, 2]


def test_compaction_is_off_unless_enabled(monkeypatch):
    from stream_jobs.settings import StreamSettings

    monkeypatch.delenv("COMPACTION_ENABLED", raising=False)
    assert StreamSettings(_env_file=None).compaction_enabled is False
    monkeypatch.setenv("COMPACTION_ENABLED", "true")
    assert StreamSettings(_env_file=None).compaction_enabled is True
