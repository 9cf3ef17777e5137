"""The SQL side without Trino: the views' text, and when they are created."""

import threading

import pytest
from trino.exceptions import HttpError, TrinoUserError

from stream_jobs.catalog import (
    SqlCatalog,
    kafka_table,
    live_view_sql,
    sql_catalog,
    sql_literal,
    view_sqls,
)
from stream_jobs.settings import StreamSettings


def test_literals_are_escaped():
    assert sql_literal("it's") == "'it''s'"


def test_views_are_replaceable_and_cover_bi_needs():
    current, enriched, minutes, *_quality = view_sqls("hive")
    assert current.startswith("CREATE OR REPLACE VIEW hive.raw.sensors_current")
    assert "NOT deleted" in current
    assert enriched.startswith("CREATE OR REPLACE VIEW hive.curated.readings_enriched")
    assert "in_range" in enriched and "event_date" in enriched
    assert minutes.startswith("CREATE OR REPLACE VIEW hive.curated.readings_1m")
    assert "ORDER BY revision DESC" in minutes


def test_views_are_made_over_the_schemas_they_are_given():
    sqls = view_sqls("iceberg", raw="t_raw", curated="t_cur")
    assert all(" hive." not in s and " raw." not in s and " curated." not in s for s in sqls)
    assert "FROM iceberg.t_raw.sensors s" in sqls[0]
    assert "FROM iceberg.t_raw.readings r" in sqls[1]
    assert "FROM iceberg.t_cur.readings_1m_revisions w" in sqls[2]


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


class Trino:
    """SqlCatalog.execute, recorded: `listed` is what the Kafka catalog's
    information_schema answers; `down` makes the next calls fail."""

    def __init__(self, listed=((1,),), down=0, error=HttpError):
        self.sqls: list[str] = []
        self.listed, self.down, self.error = [list(r) for r in listed], down, error

    def __call__(self, sql):
        if self.down:
            self.down -= 1
            raise self.error("Trino is starting")
        self.sqls.append(sql)
        return self.listed if "information_schema" in sql else []


def catalog_with(trino, **kwargs):
    """A catalog as the default settings make it (TRINO_*), with `kwargs` changed."""
    s = StreamSettings(_env_file=None)
    defaults = {
        "login": {"host": "localhost", "port": 8080, "user": "test"},
        "catalog": "iceberg",
        "raw": s.raw_schema,
        "curated": s.curated_schema,
        "kafka_catalog": "",
        "readings_topic": s.kafka_topic_readings,
        "live_horizon_s": s.live_view_horizon_seconds,
        "wait_for": lambda: True,
    }
    c = SqlCatalog(**{**defaults, **kwargs})
    c.execute = trino
    return c


def test_the_views_and_the_live_view_are_created_when_kafka_lists_the_topic():
    trino = Trino()
    catalog_with(trino, kafka_catalog="kafka").ensure_views()
    n = len(view_sqls("iceberg"))
    assert trino.sqls[:n] == view_sqls("iceberg")
    assert "information_schema.tables WHERE table_schema = 'iot'" in trino.sqls[n]
    assert trino.sqls[n + 1] == live_view_sql("iceberg", "raw", "kafka", "iot.readings", 60)


@pytest.mark.parametrize("kafka_catalog", ["", "kafka"])
def test_no_live_view_without_the_topic_in_trinos_kafka_catalog(kafka_catalog):
    trino = Trino(listed=((0,),))
    catalog_with(trino, kafka_catalog=kafka_catalog).ensure_views()
    assert not any("readings_live" in s for s in trino.sqls)
    n = len(view_sqls("iceberg"))
    assert len(trino.sqls) == (n if not kafka_catalog else n + 1)


def test_trino_unavailable_is_retried_until_the_views_exist():
    trino = Trino(down=2)
    catalog = catalog_with(trino)
    catalog.run(threading.Event(), retry_s=0)
    assert catalog.ready.is_set() and trino.sqls == view_sqls("iceberg")


def test_the_views_wait_for_the_tables():
    trino, calls = Trino(), []

    def tables_ready():
        calls.append(1)
        return len(calls) > 1

    catalog = catalog_with(trino, wait_for=tables_ready)
    catalog.run(threading.Event(), retry_s=0)
    assert len(calls) == 2 and catalog.ready.is_set()


def test_a_stop_ends_the_retries():
    stop = threading.Event()
    stop.set()
    catalog = catalog_with(Trino(down=1))
    catalog.run(stop, retry_s=0)
    assert not catalog.ready.is_set()


def test_a_user_error_on_the_kafka_catalog_costs_the_live_view_only():
    class MissingCatalog(Trino):
        def __call__(self, sql):
            if "information_schema" in sql:
                raise TrinoUserError({"message": "Catalog 'kafka' not found"})
            return super().__call__(sql)

    trino = MissingCatalog()
    catalog_with(trino, kafka_catalog="kafka").ensure_views()
    assert trino.sqls == view_sqls("iceberg")


def test_settings_name_the_catalog_and_schemas_or_turn_it_off():
    off = sql_catalog(StreamSettings(_env_file=None, trino_host=""))
    assert off.status == "off" and off.execute("DROP TABLE x") == []
    s = StreamSettings(
        _env_file=None,
        trino_host="trino",
        trino_catalog="iceberg",
        raw_schema="r",
        curated_schema="c",
        trino_kafka_catalog="",
        trino_password="pw",
        trino_ca_file="/ca.pem",
    )
    c = sql_catalog(s)
    assert c is not None
    assert c.login == {
        "host": "trino",
        "port": 8443,
        "user": "iot-stream-jobs",
        "password": "pw",
        "ca_file": "/ca.pem",
    }
    assert (c.login["host"], c.catalog, c.raw, c.curated, c.kafka_catalog) == (
        "trino",
        "iceberg",
        "r",
        "c",
        "",
    )
