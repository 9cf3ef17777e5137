"""Step 2 as DBeaver sees it: through Trino's JDBC driver (io.trino:trino-jdbc at
TRINO_VERSION, from Maven Central, the driver DBeaver downloads), connected as
docs/sql.md says (jdbc:trino://HOST:PORT/lake over TLS trusting Trino's certificate,
the BI login and its password), every
example query of docs/queries.sql runs and answers the column labels and rows the
Python client answers; the navigator's metadata (DatabaseMetaData.getTables and
getColumns) lists our tables and views, and every column of our tables with the doc
declared in stream_jobs.tables; the tables' and views' own comments, which Trino's
getTables leaves empty, read with SQL through the driver, are the declared ones.
The JDBC side is tests/jdbc/JdbcProbe.java, run by the default Java 17 in
source-launch mode (it needs the JDK's compiler, not only a JRE)."""

import base64
import json
import os
import subprocess
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from iot_common import trino_client
from iot_data_generator.readings import reading_payload
from local import trino_auth
from local.install import java_bin, trino_jdbc
from local.services import ROOT, wait_for
from stream_jobs.catalogue import view_comments
from stream_jobs.tables import TABLES
from tests.integration.harness import mqtt_publish
from tests.integration.test_sql import TIME_TRAVEL, named_queries, wait_rows

pytestmark = pytest.mark.integration

USER = trino_auth.BI_USER  # the analysts' login: read-only, the `lake` catalog


def ours(pipe, sql: str) -> str:
    """`sql` written for iceberg.raw / iceberg.curated, on this test's schemas (as
    Pipeline.sql rewrites it)."""
    for catalog in ("iceberg", "hive", trino_auth.BI_CATALOG):
        for schema in ("raw", "curated"):
            sql = sql.replace(f"{catalog}.{schema}.", f"{catalog}.{schema}_{pipe.uid}.")
    return sql


def python_client(pipe, sql: str) -> tuple[list[str], list[list[Any]]]:
    """Column labels and rows as the Python client answers them."""
    login = pipe.sql_services.stack.trino_login(USER)
    conn = trino_client.connect(**login, catalog=trino_auth.BI_CATALOG)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        rows = cur.fetchall()
        return [d[0] for d in cur.description], rows
    finally:
        conn.close()


def jdbc_probe(pipe, statements: list[str], schemas: list[str], work) -> list[dict[str, Any]]:
    """JdbcProbe's JSON lines: one per statement, then the metadata of `schemas`."""
    file = work / "statements.b64"
    file.write_text("".join(base64.b64encode(s.encode()).decode() + "\n" for s in statements))
    # As docs/sql.md sets DBeaver up: TLS, trusting Trino's own certificate (PEM).
    stack = pipe.sql_services.stack
    url = (
        f"jdbc:trino://127.0.0.1:{stack.trino_https_port}/{trino_auth.BI_CATALOG}"
        f"?SSL=true&SSLTrustStorePath={stack.trino_ca_file}"
    )
    done = subprocess.run(
        [
            java_bin(),
            # timestamp with time zone values arrive as java.sql.Timestamp (an instant),
            # printed in the JVM's zone: UTC, to compare them with the Python client's.
            "-Duser.timezone=UTC",
            "-cp",
            str(trino_jdbc()),
            str(ROOT / "tests" / "jdbc" / "JdbcProbe.java"),
            url,
            USER,
            str(file),
            *schemas,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TRINO_PASSWORD": stack.trino_login(USER)["password"]},
    )
    (work / "probe.jsonl").write_text(done.stdout)  # to read when an assertion fails
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def from_jdbc(value: Any, type_name: str) -> Any:
    """A value JdbcProbe printed, as the Python client gives it (timestamps naive UTC)."""
    if value is None:
        return None
    if type_name.startswith("timestamp"):
        return datetime.fromisoformat(value)
    if type_name == "date":
        return date.fromisoformat(value)
    return value


def from_python(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def test_dbeavers_driver_runs_every_example_query_and_shows_the_comments(sql_pipeline, tmp_path):
    pipe = sql_pipeline
    # Two minutes back: their 1-minute windows close within seconds (the jobs' clock is
    # the receive time), so sensor_minutes answers the same to both clients.
    t0 = datetime.utcnow() - timedelta(minutes=2)
    first = [
        reading_payload(f"Sensor {i}", t0 + timedelta(seconds=j), 10 * i + j)
        for j in range(3)
        for i in (1, 2)
    ]
    mqtt_publish(pipe.stack.mqtt_port, pipe.mqtt_topic, [*first, b"not json"])
    wait_rows(pipe, len(first))
    wait_rows(pipe, 1, "iceberg.raw.rejected")
    time.sleep(4.5)  # the last reading in a commit of its own, seconds after the others
    last = reading_payload("Sensor 1", t0 + timedelta(seconds=3), 99)  # out of range 0..45
    mqtt_publish(pipe.stack.mqtt_port, pipe.mqtt_topic, [last])
    wait_rows(pipe, len(first) + 1)
    minutes = (
        "SELECT sum(count + out_of_range_count) FROM iceberg.curated.readings_1m "
        "WHERE sensor_id = 'Sensor 1'"
    )
    wait_for(lambda: pipe.sql(minutes) == [[4]], 90, "Sensor 1's minutes with its 4 readings")

    queries = named_queries()
    assert len(queries) > 0 and TIME_TRAVEL in queries
    # Time travel to a fixed point between the last two commits rather than "a minute
    # ago" (the test's table is younger than a minute, and a point that moves with the
    # clock would pass the last commit between the two clients' runs).
    ((last_commit,),) = pipe.sql('SELECT max(committed_at) FROM iceberg.raw."readings$snapshots"')
    point = (last_commit - timedelta(seconds=2)).astimezone(UTC)
    relative = "current_timestamp - INTERVAL '1' MINUTE"
    assert relative in queries[TIME_TRAVEL]
    queries[TIME_TRAVEL] = queries[TIME_TRAVEL].replace(
        relative, f"TIMESTAMP '{point:%Y-%m-%d %H:%M:%S.%f} UTC'"
    )
    names = list(queries)
    statements = [ours(pipe, queries[name]) for name in names]
    # Nothing is written meanwhile (no readings, windows closed, maintenance's first
    # pass comes after 5 minutes), so the snapshot-dependent queries (recent_commits,
    # files_per_day) answer the same to both clients too: no query is left out.
    expected = {name: python_client(pipe, sql) for name, sql in zip(names, statements, strict=True)}

    schemas = [f"raw_{pipe.uid}", f"curated_{pipe.uid}"]
    # Trino's getTables leaves REMARKS empty (system.jdbc.tables has no comments), so
    # tables' and views' comments are read with SQL, as docs/sql.md tells DBeaver users.
    comments_sql = (
        "SELECT schema_name, table_name, comment FROM system.metadata.table_comments "
        f"WHERE catalog_name = '{trino_auth.BI_CATALOG}' "
        f"AND schema_name IN ('{schemas[0]}', '{schemas[1]}')"
    )
    out = jdbc_probe(pipe, [*statements, comments_sql], schemas, tmp_path)

    answers = [o for o in out if "statement" in o]
    assert [a["statement"] for a in answers] == list(range(len(queries) + 1))
    *answers, comments = answers
    for name, answer in zip(names, answers, strict=True):
        assert "error" not in answer, f"{name}: {answer.get('error')}"
        labels, rows = expected[name]
        assert answer["columns"] == labels, name
        got = [
            [from_jdbc(v, t) for v, t in zip(row, answer["types"], strict=True)]
            for row in answer["rows"]
        ]
        want = [[from_python(v) for v in row] for row in rows]
        if "ORDER BY" not in queries[name].upper():
            got, want = sorted(got, key=repr), sorted(want, key=repr)
        assert got == want, name
    by_name = dict(zip(names, answers, strict=True))
    assert len(by_name["sensor_history"]["rows"]) == 4  # the data reached both clients

    # The navigator: every column of every table with its doc, in the order declared.
    tables = {o["table"]: o for o in out if "table" in o}
    columns: dict[str, list[tuple[str, Any]]] = {}
    for o in out:
        if "column" in o:
            schema, table, column = o["column"].split(".")
            columns.setdefault(f"{schema}.{table}", []).append((column, o["remarks"]))
    declared = {f"{spec.zone}_{pipe.uid}.{spec.name}": spec for spec in TABLES}
    assert {n for n, t in tables.items() if t["type"] == "TABLE"} == set(declared)
    for name, spec in declared.items():
        assert columns[name] == [(f.name, spec.doc(f.name)) for f in spec.documented_schema]
    # The views, each with its comment (raw.readings_live only where Trino's Kafka
    # catalog lists the pipeline's topic: not this test's).
    view_docs = {}
    for key, comment in view_comments().items():
        zone, _, view = key.partition(".")
        view_docs[f"{zone}_{pipe.uid}.{view}"] = comment
    del view_docs[f"raw_{pipe.uid}.readings_live"]
    assert {n for n, t in tables.items() if t["type"] == "VIEW"} == set(view_docs)
    assert all(columns.get(view) for view in view_docs)  # the navigator lists their columns
    assert all(t["remarks"] is None for t in tables.values())  # what docs/sql.md says
    assert "error" not in comments, comments.get("error")
    assert {f"{schema}.{table}": comment for schema, table, comment in comments["rows"]} == {
        **{name: spec.description for name, spec in declared.items()},
        **view_docs,
    }
