"""Trino's `iceberg` catalog over our Hive Metastore commits, and compacts while
it does: what the metastore's move from Derby to PostgreSQL was for (Derby
refused every Iceberg commit). The tables' move to Iceberg builds on this."""

import uuid

import pytest

pytestmark = pytest.mark.integration


def test_iceberg_tables_commit_and_optimize_through_the_metastore(sql, tmp_path):
    schema = f"iceberg.check_{uuid.uuid4().hex[:8]}"
    location = tmp_path / "warehouse"
    location.mkdir()
    sql.query(f"CREATE SCHEMA {schema} WITH (location = 'file://{location}')")
    try:
        sql.query(
            f"CREATE TABLE {schema}.readings (sensor_id varchar, ts timestamp(6), value double) "
            "WITH (partitioning = ARRAY['day(ts)'], sorted_by = ARRAY['sensor_id', 'ts'])"
        )
        for i in range(3):  # three commits, three snapshots, three files
            sql.query(
                f"INSERT INTO {schema}.readings VALUES "
                f"('Sensor {i}', TIMESTAMP '2026-11-30 10:00:0{i}.123456', {i}.5)"
            )
        # CREATE TABLE commits an empty snapshot; each INSERT one with its file.
        files_added = (
            f"SELECT sum(CAST(element_at(summary, 'added-data-files') AS integer)) "
            f'FROM {schema}."readings$snapshots"'
        )
        assert sql.query(files_added) == [[3]]
        sql.query(f"ALTER TABLE {schema}.readings EXECUTE optimize")
        assert sql.query(f'SELECT count(*) FROM {schema}."readings$files"') == [[1]]
        assert sql.query(f"SELECT count(*), sum(value) FROM {schema}.readings") == [[3, 4.5]]
        ts = sql.query(f"SELECT max(ts) FROM {schema}.readings")[0][0]
        assert ts.microsecond == 123456
    finally:
        sql.query(f"DROP TABLE IF EXISTS {schema}.readings")
        sql.query(f"DROP SCHEMA IF EXISTS {schema}")


def test_our_tables_as_trino_shows_them(sql_pipeline):
    """The stream jobs' tables: Iceberg, partitioned by day, sorted by sensor and
    time, documented column by column, and reachable by their former hive.* names."""
    from datetime import UTC, datetime, timedelta

    from tests.integration.harness import mqtt_publish

    dt = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=123456, tzinfo=None)
    mqtt_publish(
        sql_pipeline.stack.mqtt_port,
        sql_pipeline.mqtt_topic,
        [b'{"id": "Sensor 1", "dt": "%s", "value": 17}' % dt.isoformat().encode()],
    )
    sql_pipeline.wait_archived("readings", 1)
    ((ddl,),) = sql_pipeline.sql("SHOW CREATE TABLE iceberg.raw.readings")
    assert "partitioning = ARRAY['day(ts)']" in ddl
    assert "sorted_by = ARRAY['sensor_id ASC NULLS FIRST','ts ASC NULLS FIRST']" in ddl
    assert "format_version = 2" in ddl
    shown = sql_pipeline.sql("SHOW COLUMNS FROM iceberg.raw.readings")
    columns = {name: comment for name, _type, _extra, comment in shown}
    assert columns["ts"].startswith("Event time")
    assert all(columns.values()), "every column has a comment"
    (table_comment,) = sql_pipeline.sql(
        "SELECT comment FROM system.metadata.table_comments WHERE catalog_name = 'iceberg' "
        f"AND schema_name = 'raw_{sql_pipeline.uid}' AND table_name = 'readings'"
    )
    assert table_comment[0].startswith("Every accepted sensor reading")
    # The name used before the move still answers, through Trino's redirection.
    assert sql_pipeline.sql("SELECT count(*), max(ts) FROM hive.raw.readings") == (
        sql_pipeline.sql("SELECT count(*), max(ts) FROM iceberg.raw.readings")
    )
    assert sql_pipeline.sql("SELECT count(*) FROM hive.curated.readings_1m")[0][0] >= 0
