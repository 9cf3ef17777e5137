from stream_jobs.catalog import create_table_sql, kafka_table, live_view_sql, sql_literal, view_sqls
from stream_jobs.tables import READINGS, SENSORS


def test_readings_ddl_types_partitioning_and_comments():
    sql = create_table_sql(READINGS, "hive", "raw", "file:///lake/raw/readings")
    assert sql.startswith("CREATE TABLE IF NOT EXISTS hive.raw.readings (")
    assert "ts timestamp(6) COMMENT 'Event time: the payload''s dt, UTC, microseconds'" in sql
    assert "value double COMMENT" in sql and "kafka_offset bigint" in sql
    assert "kafka_partition integer" in sql
    # the partition column comes last, as Hive wants
    assert sql.index("event_date date") > sql.index("kafka_offset bigint")
    assert "partitioned_by = ARRAY['event_date']" in sql
    assert "external_location = 'file:///lake/raw/readings'" in sql


def test_unpartitioned_table_has_no_partitioning():
    sql = create_table_sql(SENSORS, "hive", "raw", "s3://bucket/raw/sensors")
    assert "partitioned_by" not in sql and "deleted boolean" in sql


def test_literals_are_escaped():
    assert sql_literal("it's") == "'it''s'"


def test_views_are_replaceable_and_cover_bi_needs():
    current, enriched, minutes = view_sqls("hive")
    assert current.startswith("CREATE OR REPLACE VIEW hive.raw.sensors_current")
    assert "NOT deleted" in current
    assert enriched.startswith("CREATE OR REPLACE VIEW hive.curated.readings_enriched")
    assert "in_range" in enriched and "event_date" in enriched
    assert minutes.startswith("CREATE OR REPLACE VIEW hive.curated.readings_1m")
    assert "ORDER BY revision DESC" in minutes


def test_kafka_tables_are_named_as_trinos_connector_names_them():
    assert kafka_table("iot.readings") == ("iot", "readings")
    assert kafka_table("readings") == ("default", "readings")


def test_live_view_splits_archive_and_topic_at_one_instant():
    sql = live_view_sql("hive", "raw", "kafka", "iot.readings", 60)
    boundary = "CAST(current_timestamp AT TIME ZONE 'UTC' AS timestamp(3)) - INTERVAL '60' SECOND"
    # the same instant on both sides, strict on one and inclusive on the other
    assert f"WHERE received_at < {boundary}" in sql
    assert f"WHERE _timestamp >= {boundary}" in sql
    assert 'FROM kafka."iot"."readings"' in sql
    assert sql.count("UNION ALL") == 1


def test_rejected_table_has_the_topic_before_its_partition_column():
    from stream_jobs.tables import REJECTED

    sql = create_table_sql(REJECTED, "hive", "raw", "file:///lake/raw/rejected")
    assert "kafka_topic varchar COMMENT" in sql
    assert (
        sql.index("kafka_offset bigint")
        < sql.index("kafka_topic")
        < sql.index("payload_size bigint")
        < sql.index("payload_sha256 varchar")
        < sql.index("received_date date")
    )
    comment = REJECTED.comments["reason_code"]
    for code in ("dt_too_old", "dt_in_future", "internal_error", "kafka_rejected"):
        assert code in comment


def test_an_existing_table_gets_the_columns_it_lacks():
    from stream_jobs.catalog import add_column_sqls
    from stream_jobs.tables import REJECTED

    old = [f.name for f in REJECTED.schema if f.name != "kafka_topic"] + ["received_date"]
    (sql,) = add_column_sqls(REJECTED, "hive", "raw", old)
    assert sql.startswith(
        "ALTER TABLE hive.raw.rejected ADD COLUMN IF NOT EXISTS kafka_topic varchar COMMENT '"
    )
    assert add_column_sqls(REJECTED, "hive", "raw", [*old, "KAFKA_TOPIC"]) == []


def test_many_new_partitions_of_a_table_are_registered_with_one_sync():
    from stream_jobs.catalog import PartitionAdded, plan_registrations
    from stream_jobs.tables import REJECTED

    days = [PartitionAdded(READINGS, f"event_date=2026-01-{d:02d}") for d in range(1, 21)]
    few = [PartitionAdded(REJECTED, "received_date=2026-01-01")] * 3  # duplicates
    plan = plan_registrations([*days, *few, days[0]], sync_above=16)
    assert [(p.table.name, len(p.items), p.sync) for p in plan] == [
        ("readings", 20, True),
        ("rejected", 1, False),
    ]
    plan = plan_registrations(days[:16], sync_above=16)
    assert len(plan) == 16 and not any(p.sync for p in plan)
    assert plan_registrations([]) == []
