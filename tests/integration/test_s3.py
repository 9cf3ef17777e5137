"""The archive on S3 is the same code path as on a directory: run the pipeline
against an S3 endpoint (moto's server, an S3 API on a local port)."""

import subprocess
import sys
from collections import Counter

import boto3
import pyarrow.dataset as ds
import pytest
import s3fs

from local.services import free_port, port_open, wait_for
from tests.integration.harness import Pipeline, published, wait_exit

pytestmark = pytest.mark.integration

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret"}


@pytest.fixture
def s3_endpoint(tmp_path):
    port = free_port()
    log = open(tmp_path / "moto.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    wait_for(lambda: port_open(port), 30, "S3 endpoint")
    url = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test-key",
        aws_secret_access_key="test-secret",
    ).create_bucket(Bucket="lake")
    yield url
    proc.terminate()
    proc.wait()
    log.close()


def test_readings_are_archived_exactly_once_on_s3(brokers, tmp_path, s3_endpoint):
    env = {"LAKE_URL": "s3://lake/iot", "S3_ENDPOINT_URL": s3_endpoint, **CREDENTIALS}
    pipe = Pipeline(brokers, tmp_path, env_extra=env).start()
    try:
        gen = pipe.generator(seconds=3, interval_ms=50)
        assert wait_exit(gen, 60) == 0
        sent = published(gen)
        fs = s3fs.S3FileSystem(key="test-key", secret="test-secret", endpoint_url=s3_endpoint)

        def archived():
            if not fs.exists("lake/iot/raw/readings"):
                return []
            fs.invalidate_cache()
            table = ds.dataset(
                "lake/iot/raw/readings", filesystem=fs, format="parquet", partitioning="hive"
            ).to_table()
            return [p.encode() for p in table["payload"].to_pylist()]

        wait_for(lambda: len(archived()) >= len(sent), 60, "readings on S3")
        assert Counter(archived()) == Counter(sent)
        assert fs.exists("lake/iot/_checkpoints/readings")
        pipe.jobs.kill9()  # recovery reads its checkpoints back from S3
        pipe.jobs.start()
        pipe.wait_healthy(pipe.jobs, "WEB_PORT")
        gen = pipe.generator(seconds=2, interval_ms=50)
        assert wait_exit(gen, 60) == 0
        sent += published(gen)
        wait_for(lambda: len(archived()) >= len(sent), 60, "readings on S3")
        assert Counter(archived()) == Counter(sent)
    finally:
        pipe.stop()
