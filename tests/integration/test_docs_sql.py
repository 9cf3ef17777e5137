"""Issue 16: the SQL the documents show runs. Every statement of every ```sql block
of README.md and docs/*.md, and of docs/queries.sql (whose answers
tests/integration/test_sql.py checks), runs against the real stack: Trino over the
Iceberg tables of a pipeline that has archived a few readings and a dead letter. A
statement that names the catalog `lake` runs as the BI login `bi`, as an analyst
would run it; any other as the admin. A block after `<!-- sql: no-run -->` is not
meant to run as written (DDL for admins, a template): it is reported as skipped.

What the test changes before running a statement, because the documents' examples
name what only a long-running stack has:
* time travel `FOR TIMESTAMP AS OF current_timestamp - INTERVAL '<n>' <unit>` goes
  back one second instead (the test's tables are seconds old, and a point before a
  table's first commit is an error);
* `FOR VERSION AS OF <snapshot id>` takes the table's current snapshot id;
* `readings_live` reads `readings` (the same columns): the test stack's Kafka catalog
  lists only the live view test's topic (harness.LIVE_UID)."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

import pytest

from iot_data_generator.readings import reading_payload
from local import trino_auth
from tests import docs_refs
from tests.integration.harness import Pipeline, mqtt_publish
from tests.integration.test_sql import wait_rows

pytestmark = pytest.mark.integration

QUERIES = "docs/queries.sql"
AS_OF_TIME = re.compile(
    r"(FOR\s+TIMESTAMP\s+AS\s+OF\s+current_timestamp\s*-\s*)INTERVAL\s+'\d+'\s+\w+", re.I
)
AS_OF_VERSION = re.compile(r"FROM\s+([\w.\"$]+)\s+FOR\s+VERSION\s+AS\s+OF\s+\d+", re.I)
LAKE = re.compile(rf"\b{trino_auth.BI_CATALOG}\.|'{trino_auth.BI_CATALOG}'")


def statements() -> list[object]:
    params: list[object] = []
    for doc in docs_refs.documents():
        for line, sql, runs in docs_refs.sql_statements((docs_refs.ROOT / doc).read_text()):
            skip = () if runs else (pytest.mark.skip(reason="<!-- sql: no-run -->"),)
            params.append(pytest.param(sql, id=f"{doc}:{line}", marks=skip))
    for line, sql in docs_refs.split_sql((docs_refs.ROOT / QUERIES).read_text()):
        params.append(pytest.param(sql, id=f"{QUERIES}:{line + 1}"))
    return params


@pytest.fixture(scope="module")
def docs_pipeline(brokers, sql, tmp_path_factory):
    """One pipeline for all statements: readings of two sensors, one dead letter."""
    pipe = Pipeline(brokers, tmp_path_factory.mktemp("docs-sql"), sql_services=sql).start()
    try:
        pipe.wait_sql_ready()
        now = datetime.utcnow()
        readings = [
            reading_payload(f"Sensor {i}", now - timedelta(seconds=10 - j), 10 * i + j)
            for j in range(3)
            for i in (1, 2)
        ]
        mqtt_publish(pipe.stack.mqtt_port, pipe.mqtt_topic, [*readings, b"not json"])
        wait_rows(pipe, len(readings))
        wait_rows(pipe, 1, "iceberg.raw.rejected")
        time.sleep(2)  # time travel one second back needs a commit older than that
        yield pipe
    finally:
        pipe.stop()


def as_run(pipe: Pipeline, sql: str, user: str) -> str:
    """`sql` with the changes in this module's docstring."""
    sql = AS_OF_TIME.sub(r"\1INTERVAL '1' SECOND", sql)
    sql = re.sub(r"\breadings_live\b", "readings", sql)

    def current_snapshot(m: re.Match[str]) -> str:
        catalog, schema, table = m.group(1).replace('"', "").split(".")
        ((snapshot,),) = pipe.sql(
            f'SELECT snapshot_id FROM {catalog}.{schema}."{table}$snapshots" '
            "ORDER BY committed_at DESC LIMIT 1",
            user,
        )
        return f"FROM {m.group(1)} FOR VERSION AS OF {snapshot}"

    return AS_OF_VERSION.sub(current_snapshot, sql)


@pytest.mark.parametrize("statement", statements())
def test_the_documents_sql_runs(docs_pipeline, statement: str) -> None:
    user = trino_auth.BI_USER if LAKE.search(statement) else trino_auth.ADMIN_USER
    sql = as_run(docs_pipeline, statement, user)
    try:
        docs_pipeline.sql(sql, user)
    except Exception as exc:  # noqa: BLE001 - any failure is the document's to fix
        pytest.fail(
            f"as {user}: {type(exc).__name__}: {exc}\n--- ran\n{sql}\n"
            "Correct the statement in the document (it must run on the platform as it is), "
            "or mark its block with <!-- sql: no-run --> on the line before when it is not "
            "meant to run as written."
        )
