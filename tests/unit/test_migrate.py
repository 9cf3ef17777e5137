"""The pure parts of the migration from the Hive layout (stream_jobs.migrate): legacy
checkpoints read, day folders named, rows kept only below the checkpoints and once."""

from datetime import date, datetime

import pyarrow as pa
import pytest

from stream_jobs.lake import Lake
from stream_jobs.migrate import (
    MigrationError,
    _day_folders,
    _roll_back,
    below_checkpoints,
    clean,
    day_of_folder,
    deduplicate,
    legacy_rows,
    plans,
    read_checkpoint,
    row_topics,
)
from stream_jobs.settings import StreamSettings
from stream_jobs.tables import READINGS, REJECTED, SENSORS

DLQ, TOPIC = "iot.readings.dlq", "iot.readings"


def kafka_rows(pairs, topics=None):
    """Rows with (kafka_partition, kafka_offset) pairs (None: no lineage) and a tag."""
    cols = {
        "kafka_partition": pa.array([p for p, _ in pairs], pa.int32()),
        "kafka_offset": pa.array([o for _, o in pairs], pa.int64()),
        "tag": pa.array(list(range(len(pairs))), pa.int64()),
    }
    if topics is not None:
        cols["kafka_topic"] = pa.array(topics, pa.string())
    return pa.table(cols)


# -- checkpoints ---------------------------------------------------------------------


def test_an_archive_checkpoint_with_a_pending_flush_is_read():
    doc = {
        "topic": TOPIC,
        "partition": 2,
        "next_offset": 30,
        "pending": {"next_offset": 35, "files": ["raw/readings/event_date=2026-01-02/x.parquet"]},
    }
    c = read_checkpoint(doc, "_checkpoints/readings/iot.readings+2.json")
    assert (c.topic, c.partition, c.next_offset) == (TOPIC, 2, 30)  # not the pending's 35
    assert c.pending_files == ("raw/readings/event_date=2026-01-02/x.parquet",)
    assert c.windows is None


def test_the_minute_jobs_checkpoint_keeps_its_windows():
    windows = {"clock_us": 5, "open": [["Sensor 1", 60_000_000, {"count": 1}]], "dirty": []}
    doc = {
        "topic": TOPIC,
        "partition": 0,
        "next_offset": 7,
        "windows": windows,
        "pending": {"files": ["curated/readings_1m_revisions/window_date=2026-01-01/y.parquet"]},
    }
    c = read_checkpoint(doc, "iot.readings+0.json")
    assert c.next_offset == 7 and c.windows == windows
    assert c.pending_files == ("curated/readings_1m_revisions/window_date=2026-01-01/y.parquet",)


def test_topic_and_partition_come_from_the_file_name_when_the_document_lacks_them():
    c = read_checkpoint({"next_offset": 3, "pending": None}, "/lake/_checkpoints/x/a.b.c+11.json")
    assert (c.topic, c.partition, c.next_offset, c.pending_files) == ("a.b.c", 11, 3, ())


@pytest.mark.parametrize(
    "doc", [None, [], {"topic": TOPIC, "partition": 0}, {"next_offset": "x", "partition": 0}]
)
def test_an_unreadable_checkpoint_stops_the_migration(doc):
    with pytest.raises(MigrationError):
        read_checkpoint(doc, "iot.readings+0.json")


def test_pending_flushes_are_rolled_back(tmp_path):
    lake = Lake(str(tmp_path))
    kept = lake.path("raw/readings/event_date=2026-01-01/a.parquet")
    pending = lake.path("raw/readings/event_date=2026-01-01/b.parquet")
    dead = lake.path("raw/rejected/received_date=2026-01-01/b.parquet")
    for path in (kept, pending, dead):
        lake.write_atomic(path, b"x")
    files = [lake.relative(pending), lake.relative(dead)]
    lake.write_json(
        lake.path("_checkpoints/readings/iot.readings+0.json"),
        {
            "topic": TOPIC,
            "partition": 0,
            "next_offset": 4,
            "pending": {"next_offset": 9, "files": files},
        },
    )
    [c] = _roll_back(lake, "readings")
    assert (c.next_offset, c.pending_files) == (4, ())
    assert lake.fs.exists(kept)
    assert not lake.fs.exists(pending) and not lake.fs.exists(dead)
    assert lake.read_json(lake.path("_checkpoints/readings/iot.readings+0.json"))["pending"] is None
    assert _roll_back(lake, "readings") == [c]  # again: nothing more to do


# -- day folders -------------------------------------------------------------------------


def test_the_date_comes_from_the_folder_name():
    assert day_of_folder("event_date=2026-11-24", "event_date") == date(2026, 11, 24)
    assert day_of_folder("/lake/raw/readings/event_date=2026-11-24/", "event_date") == date(
        2026, 11, 24
    )
    assert day_of_folder("received_date=__HIVE_DEFAULT_PARTITION__", "received_date") is None
    for folder, column in (
        ("event_date=2026-11-24", "received_date"),
        ("_c1", "event_date"),
        ("event_date", "event_date"),
        ("event_date=yesterday", "event_date"),
    ):
        with pytest.raises(ValueError):
            day_of_folder(folder, column)


def test_day_folders_include_compactions_subfolders(tmp_path):
    lake = Lake(str(tmp_path))
    for rel in (
        "raw/readings/event_date=2026-01-01/a.parquet",
        "raw/readings/event_date=2026-01-01/_c1/part-00000.parquet",
        "raw/readings/event_date=2026-01-01/.a.parquet.123.tmp",
        "raw/readings/event_date=2026-01-02/b.parquet",
        "raw/readings/stray.parquet",
    ):
        lake.write_atomic(lake.path(rel), b"x")
    plan = next(p for p in plans(StreamSettings()) if p.spec is READINGS)
    found = [(day, [lake.relative(f) for f in files]) for day, files in _day_folders(lake, plan)]
    assert found == [
        (
            date(2026, 1, 1),
            [
                "raw/readings/event_date=2026-01-01/_c1/part-00000.parquet",
                "raw/readings/event_date=2026-01-01/a.parquet",
            ],
        ),
        (date(2026, 1, 2), ["raw/readings/event_date=2026-01-02/b.parquet"]),
    ]


def test_the_rows_of_a_day_get_the_current_columns_and_the_folders_date():
    old = pa.table(  # a dead letter from before kafka_topic, payload_size, payload_sha256
        {
            "reason": ["not_json: x"],
            "reason_code": ["not_json"],
            "payload": [b"x"],
            "payload_text": ["x"],
            "mqtt_topic": ["sensors"],
            "received_at": pa.array([datetime(2026, 1, 1, 12)], pa.timestamp("us")),
            "kafka_partition": pa.array([0], pa.int32()),
            "kafka_offset": pa.array([4], pa.int64()),
        }
    )
    rows = legacy_rows([old, old.slice(0, 0)], REJECTED, date(2026, 1, 1))
    assert rows.schema == REJECTED.table_schema
    row = rows.to_pylist()[0]
    assert row["kafka_topic"] is None and row["payload_size"] is None
    assert row["received_date"] == date(2026, 1, 1)
    assert row_topics(rows, DLQ).to_pylist() == [DLQ]  # no kafka_topic: the dead-letter topic


def test_a_date_column_in_a_file_gives_way_to_the_folders():
    t = pa.table(
        {
            "sensor_id": ["Sensor 1"],
            "ts": pa.array([datetime(2026, 1, 1, 12)], pa.timestamp("us")),
            "event_date": pa.array([date(1999, 1, 1)], pa.date32()),
        }
    )
    rows = legacy_rows([t], READINGS, date(2026, 1, 1))
    assert rows.schema == READINGS.table_schema
    assert rows.column("event_date").to_pylist() == [date(2026, 1, 1)]


def test_an_unpartitioned_table_gets_no_date_column():
    rows = legacy_rows([pa.table({"sensor_id": ["s"]})], SENSORS, None)
    assert rows.schema == SENSORS.table_schema and rows.num_rows == 1


# -- below the checkpoints, once ------------------------------------------------------------


def test_only_rows_below_their_partitions_checkpoint_are_kept():
    rows = kafka_rows([(0, 0), (0, 9), (0, 10), (1, 3), (1, 4), (2, 100), (None, None)])
    topics = row_topics(rows, TOPIC)
    kept = below_checkpoints(rows, topics, {(TOPIC, 0): 10, (TOPIC, 1): 4})
    # (0, 10) and (1, 4) are at or past the checkpoint; partition 2 has none: kept,
    # as are rows without lineage (backfill).
    assert kept.column("tag").to_pylist() == [0, 1, 3, 5, 6]
    assert below_checkpoints(rows, topics, {}) == rows


def test_the_checkpoint_of_a_rows_own_topic_applies():
    # Dead letters of two topics: the DLQ's (kafka_topic null in older files) and
    # the readings topic's, each with its own checkpoint of partition 0.
    rows = kafka_rows([(0, 5), (0, 5), (0, 20), (0, 20)], [None, TOPIC, DLQ, TOPIC])
    kept = below_checkpoints(rows, row_topics(rows, DLQ), {(DLQ, 0): 6, (TOPIC, 0): 30})
    assert kept.column("tag").to_pylist() == [0, 1, 3]


def test_duplicates_are_kept_once_rows_without_offsets_all():
    rows = kafka_rows([(0, 1), (0, 2), (None, None), (0, 1), (None, None), (1, 1), (0, 2)])
    once = deduplicate(rows, row_topics(rows, TOPIC))
    assert once.column("tag").to_pylist() == [0, 1, 2, 4, 5]
    assert deduplicate(once, row_topics(once, TOPIC)) == once


def test_the_same_offset_of_two_topics_is_two_records():
    rows = kafka_rows([(0, 1), (0, 1), (0, 1)], [DLQ, TOPIC, None])
    once = deduplicate(rows, row_topics(rows, DLQ))
    assert once.column("tag").to_pylist() == [0, 1]  # the null topic is the DLQ: a duplicate


def test_clean_filters_deduplicates_and_names_partitions_without_checkpoint():
    rows = kafka_rows([(0, 1), (0, 1), (0, 7), (3, 0), (None, None)])
    kept, unknown = clean(rows, TOPIC, {(TOPIC, 0): 5})
    assert kept.column("tag").to_pylist() == [0, 3, 4]
    assert unknown == {(TOPIC, 3)}
    no_lineage = pa.table({"sensor_id": ["a", "a"]})  # the 1-minute table: as it is
    assert clean(no_lineage, TOPIC, {(TOPIC, 0): 5}) == (no_lineage, set())


def test_empty_days_stay_empty():
    rows = kafka_rows([])
    assert deduplicate(rows, row_topics(rows, TOPIC)).num_rows == 0
    assert clean(rows, TOPIC, {(TOPIC, 0): 1})[0].num_rows == 0


def test_rejected_takes_offsets_from_its_own_and_the_readings_checkpoints():
    s = StreamSettings(kafka_topic_readings="r", kafka_topic_dlq="d", kafka_topic_sensors="s")
    by_table = {p.spec.name: (p.topic, p.checkpoints) for p in plans(s)}
    assert by_table == {
        "readings": ("r", ("readings",)),
        "sensors": ("s", ("sensors",)),
        "rejected": ("d", ("rejected", "readings")),
        "readings_1m_revisions": ("r", ("readings_1m_revisions",)),
    }
