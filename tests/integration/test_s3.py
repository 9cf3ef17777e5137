"""The archive on S3 is the same code path as on a directory: run the pipeline
against an S3 endpoint (moto's server, an S3 API on a local port)."""

from collections import Counter

import pytest
import s3fs

from local.services import wait_for
from tests.integration.conftest import S3_KEY, S3_SECRET
from tests.integration.harness import Pipeline, published, wait_exit

pytestmark = pytest.mark.integration

CREDENTIALS = {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}


def test_readings_are_archived_exactly_once_on_s3_and_queryable(
    brokers, sql, tmp_path, s3_endpoint
):
    env = {"LAKE_URL": "s3://lake/iot", "S3_ENDPOINT_URL": s3_endpoint, **CREDENTIALS}
    pipe = Pipeline(brokers, tmp_path, env_extra=env, sql_services=sql).start()
    try:
        gen = pipe.generator(seconds=3, interval_ms=50)
        assert wait_exit(gen, 60) == 0
        sent = published(gen)
        fs = s3fs.S3FileSystem(key=S3_KEY, secret=S3_SECRET, endpoint_url=s3_endpoint)

        def archived():
            return pipe.readings_payloads()

        wait_for(lambda: len(archived()) >= len(sent), 60, "readings on S3")
        assert Counter(archived()) == Counter(sent)
        files = fs.find("lake/iot/warehouse/raw/readings")
        assert any(f.endswith(".parquet") for f in files)
        assert any(f.endswith(".metadata.json") for f in files)
        pipe.jobs.kill9()  # recovery reads its offsets back from the table on S3
        pipe.jobs.start()
        pipe.wait_healthy(pipe.jobs, "WEB_PORT")
        gen = pipe.generator(seconds=2, interval_ms=50)
        assert wait_exit(gen, 60) == 0
        sent += published(gen)
        wait_for(lambda: len(archived()) >= len(sent), 60, "readings on S3")
        assert Counter(archived()) == Counter(sent)

        # Trino reads the same files through its native S3 client
        pipe.wait_sql_ready()
        rows = pipe.sql("SELECT payload FROM hive.raw.readings")
        assert Counter(r[0].encode() for r in rows) == Counter(sent)
        (location,) = pipe.sql(
            "SELECT DISTINCT regexp_extract(\"$path\", '^s3://lake/iot/warehouse/raw/readings/') "
            "FROM iceberg.raw.readings"
        )
        assert location == ["s3://lake/iot/warehouse/raw/readings/"]
    finally:
        pipe.stop()
