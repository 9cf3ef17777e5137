"""`docker compose up -d` brings the whole platform up (issue 14), on the compose file
as users get it: start a Docker engine if none runs, build the images (their cache
lives in the engine's data root, outside the checkout), `up -d` under a project name
of its own on free host ports, wait until everything is healthy, then from the host:
publish readings in the original generator's format to the broker and find each
exactly once through Trino, in the S3 bucket and in the 1-minute means; see the
portal's pages and a Great Expectations run, log into Superset and find its
dashboards; restart the stream jobs and find nothing lost or doubled; `down` and
`up -d` again and find the state kept in the named volumes; `down -v`.

Run by `make compose-test` (IOT_COMPOSE_TEST=1; see conftest.py). Timings are
printed at the end (build, `up -d`, first reading queryable). IOT_COMPOSE_KEEP=1
leaves the project running for a look (then: docker-compose -p iot-ct down -v).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import paho.mqtt.client as mqtt
import pyarrow.parquet as pq
import pytest
import requests
import trino
from paho.mqtt.enums import CallbackAPIVersion

from iot_common import trino_client
from local.mqtt_auth import Credentials
from local.services import ROOT, free_port

PROJECT = os.environ.get("IOT_COMPOSE_PROJECT", "iot-ct")
SUPERSET_PASSWORD = "compose-test-admin"
DOCKER = ROOT / "docker"
TIMINGS: dict[str, float] = {}
ONE_SHOTS = {"kafka-init", "s3-init", "mqtt-accounts", "trino-accounts"}
# Trino's logins (trino-accounts): the test knows the admin's and the analysts'.
TRINO_ADMIN_PASSWORD = "compose-test-trino-admin"
TRINO_BI_PASSWORD = "compose-test-trino-bi"
# Only the device key matters here: the other secrets are made by mqtt-accounts.
DEVICE_KEYS = Credentials("-", "-", "-", "compose-test-device-secret")
SERVICES = {
    "mqtt-accounts",
    "trino-accounts",
    "mqtt_broker",
    "iot_data_generator",
    "kafka",
    "kafka-init",
    "s3",
    "s3-init",
    "postgres",
    "hive-metastore",
    "trino",
    "mqtt_bridge",
    "stream_jobs",
    "portal",
    "quality",
    "superset",
}

INSPECT = (
    "{{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
)

pytestmark = pytest.mark.timeout(3600)


def compose_cmd() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(2)


@dataclass
class Platform:
    env: dict[str, str]
    ports: dict[str, int]
    s3_key: str
    s3_secret: str
    bucket: str
    logs_on_failure: list[str] = field(default_factory=list)

    def compose(self, *args: str, check: bool = True, capture: bool = False) -> str:
        out = subprocess.run(
            [*compose_cmd(), "-p", PROJECT, *args],
            cwd=ROOT,
            env=self.env,
            check=check,
            text=True,
            stdout=subprocess.PIPE if capture else None,
        )
        return out.stdout or ""

    def states(self) -> dict[str, tuple[str, int, str]]:
        """service -> (status, exit code, health) of its container (one-shots' too)."""
        out = {}
        for service in SERVICES:
            cid = self.compose("ps", "-a", "-q", service, capture=True, check=False).split()
            if not cid:
                continue
            status, code, *health = subprocess.run(
                ["docker", "inspect", "-f", INSPECT, cid[0]],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            out[service] = (status, int(code), health[0] if health else "")
        return out

    def all_healthy(self) -> bool:
        states = self.states()
        for service in ONE_SHOTS:
            status, code, _ = states.get(service, ("missing", -1, ""))
            assert not (status == "exited" and code != 0), f"{service} failed: {states}"
        done = {s for s in ONE_SHOTS if states.get(s, ("",))[0] == "exited"}
        healthy = {s for s, (st, _c, h) in states.items() if st == "running" and h == "healthy"}
        return done | healthy == SERVICES

    def trino_ca(self) -> str:
        """Trino's certificate (made by trino-accounts), in a file on the host."""
        path = ROOT / "data" / f"compose-test-{PROJECT}-trino-ca.pem"
        if not path.exists():
            pem = self.compose("exec", "-T", "trino", "cat", "/trino-auth/ca.pem", capture=True)
            assert "BEGIN CERTIFICATE" in pem, pem
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(pem)
        return str(path)

    def trino(self, sql: str, bi: bool = False) -> list[list[Any]]:
        """Rows of `sql` through Trino's published HTTPS port: as the admin (catalog
        iceberg), or as the BI login (`bi`: catalog lake, read-only)."""
        conn = trino_client.connect(
            host="127.0.0.1",
            port=self.ports["HOST_TRINO_PORT"],
            user="bi" if bi else "iot-admin",
            password=TRINO_BI_PASSWORD if bi else TRINO_ADMIN_PASSWORD,
            ca_file=self.trino_ca(),
            catalog="lake" if bi else "iceberg",
            request_timeout=30,
        )
        cur = conn.cursor()
        cur.execute(sql)
        return [list(row) for row in cur.fetchall()]

    def try_trino(self, sql: str) -> list[list[Any]] | None:
        try:
            return self.trino(sql)
        except (trino.exceptions.Error, trino.exceptions.HttpError, OSError):
            return None

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.ports['HOST_S3_PORT']}",
            aws_access_key_id=self.s3_key,
            aws_secret_access_key=self.s3_secret,
            region_name="us-east-1",
        )

    def http(self, port: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"http://127.0.0.1:{self.ports[port]}{path}"
        return requests.request(kwargs.pop("method", "GET"), url, timeout=30, **kwargs)

    def publish(self, payloads: list[bytes]) -> None:
        """Each payload at QoS 1, confirmed by the broker, as its sensor would send it:
        logged in with the device's account, on the device's own topic `sensors/<id>`."""
        by_sensor: dict[str, list[bytes]] = {}
        for p in payloads:
            by_sensor.setdefault(json.loads(p)["id"], []).append(p)
        for sensor_id, mine in by_sensor.items():
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=sensor_id)
            client.username_pw_set(sensor_id, DEVICE_KEYS.device_password(sensor_id))
            client.connect("127.0.0.1", self.ports["HOST_MQTT_PORT"])
            client.loop_start()
            try:
                infos = [client.publish(f"sensors/{sensor_id}", p, qos=1) for p in mine]
                for info in infos:
                    info.wait_for_publish(timeout=30)
                    assert info.is_published()
            finally:
                client.loop_stop()
                client.disconnect()


def run_script(name: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        [str(DOCKER / name)], check=True, capture_output=True, text=True, env=env
    ).stdout
    return out.strip()


@pytest.fixture(scope="session")
def engine() -> Iterator[None]:
    """A Docker engine: the running one, or one started here and stopped at the end."""
    said = run_script("ensure-dockerd.sh")
    yield
    if said.startswith("started "):
        pid = int(said.split()[1])
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)


@pytest.fixture(scope="module")
def platform(engine: None) -> Iterator[Platform]:
    run_script("base-image.sh")
    ports = {
        name: free_port()
        for name in (
            "HOST_MQTT_PORT",
            "HOST_KAFKA_PORT",
            "HOST_S3_PORT",
            "HOST_TRINO_PORT",
            "HOST_PORTAL_PORT",
            "HOST_SUPERSET_PORT",
        )
    }
    s3_key, s3_secret = "compose-test", "compose-test-secret"
    env = {
        **os.environ,
        **{k: str(v) for k, v in ports.items()},
        "EXTRA_CA_CERTS_B64": run_script("ca-certs.sh"),
        "S3_ACCESS_KEY": s3_key,
        "S3_SECRET_KEY": s3_secret,
        "S3_BUCKET": "lake",
        "METASTORE_DB_PASSWORD": "compose-test-db",
        "SUPERSET_ADMIN_USER": "admin",
        "SUPERSET_ADMIN_PASSWORD": SUPERSET_PASSWORD,
        "SUPERSET_SECRET_KEY": "compose-test-secret-key",
        # The key of the devices' MQTT passwords, from which the test derives theirs.
        "MQTT_DEVICE_SECRET": DEVICE_KEYS.device_secret,
        "TRINO_ADMIN_PASSWORD": TRINO_ADMIN_PASSWORD,
        "TRINO_BI_PASSWORD": TRINO_BI_PASSWORD,
        # A run a minute (each takes a few seconds here), so the test sees one.
        "QUALITY_EVERY_SECONDS": "60",
    }
    p = Platform(env, ports, s3_key, s3_secret, "lake")
    started = time.monotonic()
    p.compose("build")
    TIMINGS["build_s"] = time.monotonic() - started
    p.compose("down", "-v", "--remove-orphans", check=False)
    try:
        started = time.monotonic()
        p.compose("up", "-d")
        TIMINGS["up_d_returned_s"] = time.monotonic() - started
        first = "SELECT count(*) FROM iceberg.raw.readings"
        wait_until(
            lambda: (r := p.try_trino(first)) is not None and r[0][0] > 0,
            300,
            "a first reading of the generator queryable through Trino",
        )
        TIMINGS["up_d_to_first_reading_queryable_s"] = time.monotonic() - started
        wait_until(p.all_healthy, 300, "every service healthy")
        TIMINGS["up_d_to_all_healthy_s"] = time.monotonic() - started
        yield p
    except BaseException:
        p.compose("ps", check=False)
        p.compose("logs", "--no-color", "--tail=80", check=False)
        raise
    finally:
        print("\ncompose-test timings:", json.dumps({k: round(v, 1) for k, v in TIMINGS.items()}))
        if os.environ.get("IOT_COMPOSE_KEEP") != "1":
            p.compose("down", "-v", check=False)


def readings(minute: datetime, n: int, first_value: int) -> list[bytes]:
    """n readings in the original generator's format, dated within `minute`:
    {"id": "Sensor k", "dt": naive UTC ISO-8601, "value": int}."""
    return [
        json.dumps(
            {
                "id": f"Sensor {i % 4 + 1}",
                "dt": (minute + timedelta(seconds=2 * i, microseconds=4321)).isoformat(),
                "value": first_value + i,
            }
        ).encode()
        for i in range(n)
    ]


def archived(p: Platform, sent: list[bytes], since: datetime) -> dict[str, int]:
    """payload -> how often raw.readings holds it (of those sent)."""
    quoted = ", ".join("'" + s.decode().replace("'", "''") + "'" for s in sent)
    rows = p.try_trino(
        "SELECT payload, count(*) FROM iceberg.raw.readings "
        f"WHERE ts >= TIMESTAMP '{since:%Y-%m-%d %H:%M:%S}' AND payload IN ({quoted}) "
        "GROUP BY payload"
    )
    return {r[0]: r[1] for r in rows or []}


def test_readings_published_from_the_host_are_found_once_everywhere(platform: Platform) -> None:
    p = platform
    # A minute well in the past: the generator (dt = now) never writes to it, so its
    # windows hold only these readings (late readings update their windows).
    minute = (datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=30)).replace(
        second=0, microsecond=0
    )
    sent = readings(minute, 20, first_value=10)
    started = time.monotonic()
    p.publish(sent)
    wait_until(
        lambda: len(archived(p, sent, minute)) == len(sent),
        180,
        "the published readings in iceberg.raw.readings",
    )
    TIMINGS["published_to_queryable_s"] = time.monotonic() - started
    assert archived(p, sent, minute) == {s.decode(): 1 for s in sent}

    # In the S3 bucket: the data files Trino read them from, read back over S3.
    paths = p.trino(
        'SELECT DISTINCT "$path" FROM iceberg.raw.readings '
        f"WHERE ts >= TIMESTAMP '{minute:%Y-%m-%d %H:%M:%S}' "
        f"AND ts < TIMESTAMP '{minute + timedelta(minutes=1):%Y-%m-%d %H:%M:%S}'"
    )
    s3, found = p.s3(), []
    for (path,) in paths:
        assert path.startswith(f"s3://{p.bucket}/"), path
        key = path.removeprefix(f"s3://{p.bucket}/")
        body = s3.get_object(Bucket=p.bucket, Key=key)["Body"].read()
        found += pq.read_table(io.BytesIO(body), columns=["payload"]).column(0).to_pylist()
    assert sorted(f for f in found if f.encode() in sent) == sorted(s.decode() for s in sent)

    # The 1-minute means of that minute, per sensor.
    expected: dict[str, list[int]] = {}
    for s in sent:
        reading = json.loads(s)
        expected.setdefault(reading["id"], []).append(reading["value"])
    want = {k: (sum(v) / len(v), len(v)) for k, v in expected.items()}

    def means() -> bool:
        rows = p.try_trino(
            "SELECT sensor_id, mean, count FROM iceberg.curated.readings_1m "
            f"WHERE window_date = DATE '{minute:%Y-%m-%d}' "
            f"AND window_start = TIMESTAMP '{minute:%Y-%m-%d %H:%M:%S}'"
        )
        return rows is not None and {r[0]: (r[1], r[2]) for r in rows} == want

    wait_until(means, 180, f"the 1-minute means {want}")


def test_the_portal_shows_sensors_and_a_quality_run(platform: Platform) -> None:
    p = platform
    page = p.http("HOST_PORTAL_PORT", "/")
    assert page.status_code == 200 and "Sensor 1" in page.text, page.text[:500]
    catalogue = p.http("HOST_PORTAL_PORT", "/catalogue.json").json()
    assert "raw.readings" in json.dumps(catalogue)
    # The quality service's runs land in the volume the portal serves them from.
    summary = wait_until(
        lambda: (r := p.http("HOST_PORTAL_PORT", "/quality/latest.json")).ok and r.json(),
        180,
        "a Great Expectations run in the portal",
    )
    assert summary.get("suites"), summary
    docs = p.http("HOST_PORTAL_PORT", "/quality/docs/index.html")
    assert docs.status_code == 200 and "expectation" in docs.text.lower()


def test_superset_serves_the_dashboards_kept_in_the_repository(platform: Platform) -> None:
    p = platform
    session = requests.Session()
    base = f"http://127.0.0.1:{p.ports['HOST_SUPERSET_PORT']}"
    token = session.post(
        f"{base}/api/v1/security/login",
        json={"username": "admin", "password": SUPERSET_PASSWORD, "provider": "db"},
        timeout=30,
    ).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    found = session.get(f"{base}/api/v1/dashboard/", timeout=30).json()["result"]
    slugs = {d["slug"] for d in found}
    assert {"iot-sensors-now", "iot-sensor-readings", "iot-data-quality"} <= slugs, slugs
    # Its connection to Trino works: SQL Lab counts the readings.
    session.headers["X-CSRFToken"] = session.get(
        f"{base}/api/v1/security/csrf_token/", timeout=30
    ).json()["result"]
    (database,) = session.get(f"{base}/api/v1/database/", timeout=30).json()["result"]
    ran = session.post(
        f"{base}/api/v1/sqllab/execute/",
        json={
            "database_id": database["id"],
            "sql": "SELECT count(*) AS n FROM raw.readings",
            "runAsync": False,
        },
        headers={"Referer": base},
        timeout=120,
    )
    assert ran.status_code == 200, ran.text[:500]
    assert ran.json()["data"][0]["n"] > 0, ran.text[:500]


def test_access_control_at_the_broker_and_the_catalogs_network(platform: Platform) -> None:
    """No anonymous MQTT client; a device only on its own topic; the metastore out of
    reach of every container but Trino's and the stream jobs'; Trino's BI login
    read-only (docs/security.md)."""
    p = platform
    port = p.ports["HOST_MQTT_PORT"]
    refused = subprocess.run(
        ["mosquitto_pub", "-p", str(port), "-t", "sensors", "-q", "1", "-m", "{}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0 and "not authorised" in refused.stderr, refused.stderr
    login = ["-u", "Sensor 1", "-P", DEVICE_KEYS.device_password("Sensor 1")]
    ok = subprocess.run(
        ["mosquitto_pub", "-p", str(port), *login, "-t", "sensors/Sensor 1", "-q", "1", "-m", "{}"],
        capture_output=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr

    probe = "import socket; socket.create_connection(('hive-metastore', 9083), timeout=5)"
    for service in ("stream_jobs", "portal", "mqtt_bridge"):
        done = subprocess.run(
            [*compose_cmd(), "-p", PROJECT, "exec", "-T", service, "python", "-c", probe],
            cwd=ROOT,
            env=p.env,
            capture_output=True,
            check=False,
        )
        reaches = done.returncode == 0
        assert reaches == (service == "stream_jobs"), (service, done.stderr[-300:])

    # Trino: the BI login reads its read-only catalog and may change nothing there;
    # no entry with a wrong password.
    assert p.trino("SELECT count(*) FROM lake.raw.readings", bi=True)[0][0] > 0
    assert p.trino("SHOW CATALOGS", bi=True) == [["lake"], ["system"]]
    for statement in (
        "CREATE SCHEMA lake.mine",
        "DELETE FROM lake.raw.readings",
        "ALTER TABLE lake.raw.readings EXECUTE optimize",
        "DROP TABLE lake.raw.readings",
    ):
        with pytest.raises(trino.exceptions.TrinoUserError) as caught:
            p.trino(statement, bi=True)
        assert caught.value.error_name == "PERMISSION_DENIED", statement
    wrong = trino_client.connect(
        host="127.0.0.1",
        port=p.ports["HOST_TRINO_PORT"],
        user="bi",
        password="not-the-password",
        ca_file=p.trino_ca(),
    )
    with pytest.raises(trino.exceptions.HttpError, match="401"):
        wrong.cursor().execute("SELECT 1")


def test_a_restarted_stream_job_loses_and_doubles_nothing(platform: Platform) -> None:
    p = platform
    minute = (datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=20)).replace(
        second=0, microsecond=0
    )
    before = readings(minute, 12, first_value=20)
    p.publish(before)
    wait_until(lambda: len(archived(p, before, minute)) == len(before), 180, "first batch")
    p.compose("restart", "stream_jobs")
    after = readings(minute + timedelta(seconds=30), 12, first_value=5)
    p.publish(after)
    wait_until(p.all_healthy, 300, "every service healthy after the restart")
    sent = before + after
    wait_until(lambda: len(archived(p, sent, minute)) == len(sent), 180, "both batches")
    assert archived(p, sent, minute) == {s.decode(): 1 for s in sent}


def test_state_survives_down_and_up(platform: Platform) -> None:
    """`down` (without -v) removes the containers and keeps the named volumes: after
    `up -d` the archive, Kafka's topics and the metastore are what they were."""
    p = platform
    minute = (datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=40)).replace(
        second=0, microsecond=0
    )
    sent = readings(minute, 8, first_value=40)
    p.publish(sent)
    wait_until(lambda: len(archived(p, sent, minute)) == len(sent), 180, "the readings")
    (before,) = p.trino("SELECT count(*) FROM iceberg.raw.readings")[0]
    p.compose("down")
    started = time.monotonic()
    p.compose("up", "-d")
    wait_until(p.all_healthy, 300, "every service healthy after down and up")
    TIMINGS["up_d_again_to_all_healthy_s"] = time.monotonic() - started
    assert archived(p, sent, minute) == {s.decode(): 1 for s in sent}
    # The generator goes on where it was: the table only grows.
    wait_until(
        lambda: (
            (r := p.try_trino("SELECT count(*) FROM iceberg.raw.readings")) and r[0][0] > before
        ),
        120,
        "new readings after up",
    )
