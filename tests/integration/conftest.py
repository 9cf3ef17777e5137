import subprocess
import sys

import boto3
import pytest

from local.services import free_port, port_open, wait_for
from tests.integration.harness import Pipeline, start_brokers, start_sql

S3_KEY, S3_SECRET, S3_BUCKET = "test-key", "test-secret", "lake"


@pytest.fixture(scope="session")
def brokers(tmp_path_factory):
    """One Mosquitto and one Kafka for the session (tests isolate by topic names)."""
    stack, mosquitto, kafka = start_brokers(tmp_path_factory.mktemp("brokers"))
    yield stack
    kafka.stop()
    mosquitto.stop()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """An S3 API on a local port (moto's server) with a bucket 'lake'."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("s3") / "moto.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    wait_for(lambda: port_open(port), 30, "S3 endpoint")
    url = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
    ).create_bucket(Bucket=S3_BUCKET)
    yield url
    proc.terminate()
    proc.wait()
    log.close()


@pytest.fixture(scope="session")
def sql(tmp_path_factory, s3_endpoint, brokers):
    """A Hive Metastore and a Trino for the session, able to read both a local and an
    S3 lake, and the session's Kafka (tests isolate by schema names)."""
    services = start_sql(
        tmp_path_factory.mktemp("sql"), s3_endpoint, S3_KEY, S3_SECRET, brokers.kafka_port
    )
    yield services
    services.stop()


@pytest.fixture
def pipeline(brokers, sql, tmp_path):
    p = Pipeline(brokers, tmp_path, sql_services=sql).start()
    yield p
    p.stop()


@pytest.fixture
def sql_pipeline(brokers, sql, tmp_path):
    p = Pipeline(brokers, tmp_path, sql_services=sql).start()
    p.wait_sql_ready()
    yield p
    p.stop()
