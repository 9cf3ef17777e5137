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


def test_compaction_lands_when_a_writer_commits_during_it(sql, tmp_path):
    """The archiver commits every ROTATE_SECONDS and a compaction takes seconds, so
    a writer's commit often lands while a compaction rewrites: the compaction must
    still land (it conflicts only when a file it removes is gone), and neither the
    writer's rows nor its offsets may be lost or doubled."""
    from datetime import UTC, datetime, timedelta

    from stream_jobs.backfill import readings_slice
    from stream_jobs.iceberg import IcebergTable, committed_offsets, connect, offset_properties
    from stream_jobs.lake import Lake
    from stream_jobs.maintenance import Maintenance, MaintenancePolicy
    from stream_jobs.tables import READINGS

    uid = uuid.uuid4().hex[:8]
    lake = Lake(str(tmp_path / "lake"))

    def handle() -> IcebergTable:  # one per thread, as in the jobs
        return IcebergTable(
            READINGS,
            catalog=connect(f"thrift://127.0.0.1:{sql.stack.metastore_port}", lake),
            lake=lake,
            namespaces={"raw": f"raw_{uid}", "curated": f"curated_{uid}"},
            zstd_level=3,
        )

    writer, compactor = handle(), handle()
    today = datetime.now(UTC).date()
    past = today - timedelta(days=3)
    for i in range(5):  # five small files of a past day: a compaction's work
        compactor.commit(compactor.write(readings_slice(past, i * 100, 100, 10, 10**6, i)), {})
    writer.commit(writer.write(readings_slice(today, 0, 50, 10, 10**6, 9)), {})

    class Racing(Maintenance):
        """Lets the writer commit after the compaction read the table, before it commits."""

        def rewrite(self, t, files):
            rows = readings_slice(today, 50, 50, 10, 10**6, 10)
            writer.commit(writer.write(rows), offset_properties("iot.readings", {0: 100}))
            super().rewrite(t, files)

    maintenance = Racing([compactor], sql=None, policy=MaintenancePolicy(min_files=4))
    assert maintenance.compact(compactor) == 1

    table = compactor.refresh()
    per_day: dict[object, list[int]] = {}
    for task in table.scan().plan_files():
        per_day.setdefault(task.file.partition[0], []).append(task.file.record_count)
    assert sorted(map(sorted, per_day.values())) == [[50, 50], [500]]
    rows = table.scan().to_arrow()
    keys = set(zip(rows["sensor_id"].to_pylist(), rows["ts"].to_pylist(), strict=True))
    assert rows.num_rows == len(keys) == 600
    assert committed_offsets(table.properties, "iot.readings") == {0: 100}
