"""Trino's access control as a BI analyst meets it (local/trino_auth.py): the BI login
reads the raw and curated tables and views in its catalog `lake`, over TLS with its
password, and can change nothing: every CREATE, INSERT, UPDATE, DELETE, MERGE, ALTER
(table procedures included), DROP, CALL and GRANT is refused, and the tables are as
they were afterwards. The admin then inserts, compacts and drops the same table, so a
refusal is about the login, not the statement. A wrong password, an unknown user, or
plain HTTP: no entry."""

from datetime import datetime, timedelta

import pytest
import trino
from trino.exceptions import HttpError, TrinoUserError

from iot_common import trino_client
from iot_data_generator.readings import reading_payload
from local import trino_auth
from tests.integration.harness import mqtt_publish
from tests.integration.test_sql import wait_rows

pytestmark = pytest.mark.integration

BI = trino_auth.BI_USER
LAKE = trino_auth.BI_CATALOG


def refused(pipe, sql: str, user: str = BI) -> str:
    """The error name Trino answers `sql` with, as `user`."""
    with pytest.raises(TrinoUserError) as caught:
        pipe.sql(sql, user)
    return str(caught.value.error_name)


def test_the_bi_login_reads_and_cannot_create_insert_alter_or_drop(sql_pipeline):
    pipe = sql_pipeline
    t0 = datetime.utcnow() - timedelta(minutes=5)
    readings = [reading_payload(f"Sensor {i}", t0 + timedelta(seconds=i), i) for i in (1, 2, 3)]
    mqtt_publish(pipe.stack.mqtt_port, pipe.mqtt_topic, readings)
    wait_rows(pipe, len(readings))
    u = pipe.uid

    # It reads: the tables, the views (with their owner's rights: it has none on
    # iceberg), metadata tables, and the JDBC metadata DBeaver's navigator reads.
    assert pipe.sql(f"SELECT count(*) FROM {LAKE}.raw.readings", BI) == [[3]]
    assert pipe.sql(f"SELECT count(*) FROM {LAKE}.curated.readings_enriched", BI) == [[3]]
    assert len(pipe.sql(f"SELECT * FROM {LAKE}.raw.sensors_current", BI)) == 5
    assert pipe.sql(f'SELECT count(*) > 0 FROM {LAKE}.raw."readings$snapshots"', BI) == [[True]]
    tables = pipe.sql(
        f"SELECT table_name FROM system.jdbc.tables WHERE table_cat = '{LAKE}' "
        f"AND table_schem = 'raw_{u}'",
        BI,
    )
    assert ["readings"] in tables
    assert pipe.sql("SHOW CATALOGS", BI) == [[LAKE], ["system"]]

    # A table of its own for the attempts, made by the admin, so that a refusal is
    # not a missing table.
    admin_scratch = f"iceberg.raw_{u}.scratch"
    pipe.sql(f"CREATE TABLE {admin_scratch} (id bigint, note varchar)")
    pipe.sql(f"INSERT INTO {admin_scratch} VALUES (1, 'kept')")
    scratch = f"{LAKE}.raw_{u}.scratch"
    before = pipe.sql(f"SELECT count(*) FROM {LAKE}.raw.readings", BI)
    snapshots = pipe.sql(f'SELECT count(*) FROM {LAKE}.raw."readings$snapshots"', BI)
    readings_table = f"{LAKE}.raw_{u}.readings"

    attempts = {
        "create schema": f"CREATE SCHEMA {LAKE}.bi_{u}",
        "create table": f"CREATE TABLE {LAKE}.raw_{u}.mine (id bigint)",
        "create table as": f"CREATE TABLE {LAKE}.raw_{u}.copy AS SELECT * FROM {readings_table}",
        "create view": f"CREATE VIEW {LAKE}.curated_{u}.mine AS SELECT 1 AS one",
        "insert": f"INSERT INTO {scratch} VALUES (2, 'no')",
        "insert into readings": f"INSERT INTO {readings_table} SELECT * FROM {readings_table}",
        "update": f"UPDATE {scratch} SET note = 'no'",
        "delete": f"DELETE FROM {scratch}",
        "delete readings": f"DELETE FROM {readings_table} WHERE value > 0",
        "truncate": f"TRUNCATE TABLE {scratch}",
        "merge": (
            f"MERGE INTO {scratch} t USING (VALUES (1)) s(id) ON t.id = s.id "
            "WHEN MATCHED THEN DELETE"
        ),
        "add column": f"ALTER TABLE {scratch} ADD COLUMN extra varchar",
        "rename table": f"ALTER TABLE {scratch} RENAME TO {LAKE}.raw_{u}.renamed",
        "set properties": f"ALTER TABLE {scratch} SET PROPERTIES format_version = 2",
        "optimize": f"ALTER TABLE {readings_table} EXECUTE optimize",
        "expire snapshots": (
            f"ALTER TABLE {readings_table} EXECUTE expire_snapshots(retention_threshold => '1m')"
        ),
        "remove orphan files": (
            f"ALTER TABLE {readings_table} EXECUTE remove_orphan_files(retention_threshold => '1m')"
        ),
        "comment": f"COMMENT ON TABLE {scratch} IS 'no'",
        "drop table": f"DROP TABLE {scratch}",
        "drop readings": f"DROP TABLE {readings_table}",
        "drop view": f"DROP VIEW {LAKE}.curated_{u}.readings_enriched",
        "drop schema": f"DROP SCHEMA {LAKE}.raw_{u} CASCADE",
        "call": f"CALL {LAKE}.system.unregister_table('raw_{u}', 'scratch')",
        "grant": f"GRANT SELECT ON {scratch} TO USER someone",
        "the admins' catalog": f"SELECT count(*) FROM iceberg.raw_{u}.readings",
        "the hive catalog": f"SELECT count(*) FROM hive.raw_{u}.readings",
        "kafka": "SHOW SCHEMAS FROM kafka",
        "other users' queries": "SELECT count(*) FROM system.runtime.queries",
    }
    answers = {name: refused(pipe, sql) for name, sql in attempts.items()}
    assert answers == dict.fromkeys(attempts, "PERMISSION_DENIED")

    # Nothing changed.
    assert pipe.sql(f"SELECT count(*) FROM {LAKE}.raw.readings", BI) == before
    assert pipe.sql(f'SELECT count(*) FROM {LAKE}.raw."readings$snapshots"', BI) == snapshots
    assert pipe.sql(f"SELECT * FROM {admin_scratch}") == [[1, "kept"]]
    assert pipe.sql(f"SHOW COLUMNS FROM {admin_scratch}") == [
        ["id", "bigint", "", ""],
        ["note", "varchar", "", ""],
    ]

    # The admin may (so the statements were valid): in its catalog, iceberg.
    pipe.sql(f"INSERT INTO {admin_scratch} VALUES (2, 'admin')")
    pipe.sql(f"ALTER TABLE {admin_scratch} EXECUTE optimize")
    pipe.sql(f"DROP TABLE {admin_scratch}")


def test_no_entry_without_the_right_password_or_over_plain_http(sql):
    login = sql.stack.trino_login(BI)

    def run(**changed):
        conn = trino_client.connect(**{**login, **changed}, request_timeout=30)
        try:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            return cur.fetchall()
        finally:
            conn.close()

    assert run() == [[1]]
    with pytest.raises(HttpError, match="401"):
        run(password="not-the-password")
    with pytest.raises(HttpError, match="401"):
        run(user="nobody", password="whatever")
    # Plain HTTP (Trino's internal port): a user name without a password is refused
    # there, and the client will not send a password over it.
    with pytest.raises(HttpError, match="403"):
        run(port=sql.stack.trino_port, password=None)
    with pytest.raises(trino.exceptions.TrinoAuthError, match="TLS/SSL is required"):
        trino.dbapi.connect(
            host="127.0.0.1",
            port=sql.stack.trino_port,
            user=BI,
            auth=trino.auth.BasicAuthentication(BI, login["password"]),
        ).cursor().execute("SELECT 1")
