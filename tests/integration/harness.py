"""Start and stop the platform's real services from tests, on free ports."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from pyiceberg.exceptions import NoSuchTableError

from iot_common import trino_client
from iot_data_generator.readings import fleet
from local import trino_auth
from local.common import StackError
from local.mqtt_auth import Account, Rule
from local.services import ROOT, Stack, free_port, port_open, wait_for
from stream_jobs.iceberg import connect
from stream_jobs.lake import Lake
from stream_jobs.settings import StreamSettings


class Proc:
    """One service process, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.base_env = dict(env)  # as created (a test may change `env` for a restart)
        self.p: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with open(self.log, "ab") as out:
            self.p = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def kill9(self) -> None:
        assert self.p is not None
        os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait()

    def stop(self, timeout: float = 45) -> int | None:
        if not self.alive:
            return self.p.returncode if self.p else None
        assert self.p is not None
        os.killpg(self.p.pid, signal.SIGTERM)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
            return self.p.wait()

    def tail(self, n: int = 40, quiet: bool = False) -> str:
        """The log's last `n` lines; `quiet` leaves out librdkafka's connection noise."""
        lines = self.log.read_text(errors="replace").splitlines()
        if quiet:
            lines = [ln for ln in lines if "Connect to ipv4" not in ln and "|FAIL|" not in ln]
        return "\n".join(lines[-n:])


# The account mqtt_publish uses: it may publish anywhere (a test's own gateway; one
# connection at a time, as the broker's client id is the username).
TEST_PUBLISHER = Account("iot-test-publisher", secrets.token_urlsafe(16), (("write", "#"),))


def add_account(stack: Stack, username: str, rules: tuple[Rule, ...]) -> Account:
    """A new broker account, once the running broker has reloaded its accounts."""
    account = Account(username, secrets.token_urlsafe(16), rules)
    stack.add_mqtt_accounts([account])
    wait_for(lambda: stack.mqtt_login(username, account.password), 20, f"MQTT login {username}")
    return account


def start_brokers(data: Path) -> tuple[Stack, Proc, Proc]:
    """Mosquitto (access control on, as `make up` runs it) and a KRaft Kafka on free
    ports, data under `data`."""
    stack = Stack(data, mqtt_port=free_port(), kafka_port=free_port(), controller_port=free_port())
    stack.mqtt_extra_accounts.append(TEST_PUBLISHER)
    stack.log_dir.mkdir(parents=True, exist_ok=True)
    mosquitto = Proc("mosquitto", stack.mosquitto_cmd(), {}, stack.log_dir / "mosquitto.log")
    mosquitto.start()
    kafka = Proc("kafka", stack.kafka_cmd(), {}, stack.log_dir / "kafka.log")
    try:
        stack.kafka_format()
        kafka.start()
        wait_for(lambda: port_open(stack.mqtt_port), 20, "mosquitto")
        wait_for(stack.kafka_ready, 90, "kafka")
    except BaseException:
        kafka.stop()  # leave nothing running behind a failed start
        mosquitto.stop()
        raise
    return stack, mosquitto, kafka


@dataclass
class SqlServices:
    """A Hive Metastore and a Trino on free ports (shared by tests; schemas isolate)."""

    stack: Stack
    postgres: Proc
    metastore: Proc
    trino: Proc

    def query(self, sql: str, user: str = trino_auth.ADMIN_USER) -> list[list[Any]]:
        """Run `sql` as `user` (the admin by default) and fetch its rows."""
        import trino

        # A restarted Trino answers a few seconds before it schedules table scans.
        deadline = time.monotonic() + 30
        while True:
            conn = trino_client.connect(
                **self.stack.trino_login(user),
                catalog="hive",
                request_timeout=120,
            )
            try:
                cur = conn.cursor()
                cur.execute(sql)
                return cur.fetchall()  # type: ignore[no-any-return]
            except trino.exceptions.TrinoQueryError as exc:
                if exc.error_name != "NO_NODES_AVAILABLE" or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
            finally:
                conn.close()

    def bi_env(self, user: str = trino_auth.BI_USER) -> dict[str, str]:
        """The settings of a service that logs in to Trino as a BI user (read-only,
        catalog `lake`): the portal, the quality runs, Superset."""
        login = self.stack.trino_login(user)
        return {
            "TRINO_HOST": login["host"],
            "TRINO_PORT": str(login["port"]),
            "TRINO_USER": user,
            "TRINO_PASSWORD": login["password"],
            "TRINO_CA_FILE": login["ca_file"],
            "TRINO_CATALOG": trino_auth.BI_CATALOG,
        }

    def restart(self) -> None:
        for p in (self.trino, self.metastore):
            p.stop()
        self.metastore.start()
        self.trino.start()
        wait_for(lambda: port_open(self.stack.metastore_port), 60, "metastore")
        wait_for(self.stack.trino_ready, 120, "trino")

    def stop(self) -> None:
        for p in (self.trino, self.metastore, self.postgres):
            p.stop()
        assert self.stack.postgres_dir is not None
        shutil.rmtree(self.stack.postgres_dir, ignore_errors=True)


# Settings that close 1-minute windows and rotate files within seconds, for tests
# that watch the figures of a few real-time minutes.
FAST_WINDOWS = {
    "WINDOW_LATENESS_SECONDS": "1",
    "WINDOW_IDLE_SECONDS": "2",
    "WINDOW_COMMIT_SECONDS": "1",
    "ROTATE_SECONDS": "1",
}

# Trino's Kafka catalog lists its topics at start; tests that query the live view
# run their pipeline with this uid (Pipeline(uid=LIVE_UID)).
LIVE_UID = "live"


def start_sql(
    data: Path,
    s3_endpoint: str = "",
    s3_key: str = "",
    s3_secret: str = "",
    kafka_port: int = 9092,
) -> SqlServices:
    stack = Stack(
        data,
        kafka_port=kafka_port,
        metastore_port=free_port(),
        postgres_port=free_port(),
        # Not under pytest's folders: the `postgres` user must be able to reach it.
        postgres_dir=Path(tempfile.mkdtemp(prefix="iot-pg-")),
        trino_port=free_port(),
        trino_https_port=free_port(),
        s3_endpoint=s3_endpoint,
        s3_key=s3_key,
        s3_secret=s3_secret,
        trino_kafka_topics=f"{LIVE_UID}.readings",
        # Each pipeline's schemas are raw_<uid> and curated_<uid>.
        trino_bi_schemas="(raw|curated)(_.*)?",
    )
    stack.log_dir.mkdir(parents=True, exist_ok=True)
    stack.postgres_init()
    postgres = Proc("postgres", stack.postgres_cmd(), {}, stack.log_dir / "postgres.log").start()
    wait_for(stack.postgres_ready, 30, "postgres")
    stack.metastore_init()
    metastore = Proc(
        "metastore", stack.metastore_cmd(), stack.metastore_env(), stack.log_dir / "metastore.log"
    ).start()
    trino = Proc("trino", stack.trino_cmd(), {}, stack.log_dir / "trino.log").start()
    wait_for(lambda: port_open(stack.metastore_port), 60, "metastore")
    wait_for(stack.trino_ready, 180, "trino")
    return SqlServices(stack, postgres, metastore, trino)


@dataclass
class Pipeline:
    """Bridge + stream jobs for one test, isolated by topic names, ids and lake
    (and SQL schemas raw_<uid> / curated_<uid> when given SQL services)."""

    stack: Stack
    work: Path
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    env_extra: dict[str, str] = field(default_factory=dict)
    sql_services: SqlServices | None = None

    def __post_init__(self) -> None:
        self.lake = self.work / "lake"
        self.mqtt_topic = f"sensors-{self.uid}"
        self.env = {
            **self.stack.python_env(),
            "MQTT_TOPIC": self.mqtt_topic,
            "KAFKA_TOPIC_READINGS": f"{self.uid}.readings",
            "KAFKA_TOPIC_DLQ": f"{self.uid}.readings.dlq",
            "KAFKA_TOPIC_SENSORS": f"{self.uid}.sensors",
            "KAFKA_TOPIC_1M": f"{self.uid}.readings.1m",
            "KAFKA_TOPIC_QUALITY_1M": f"{self.uid}.quality.1m",
            "KAFKA_TOPIC_QUALITY_STATUS": f"{self.uid}.quality.status",
            "CONSUMER_GROUP_PREFIX": f"archive-{self.uid}",
            "APP_ID": f"jobs-{self.uid}",
            "LAKE_URL": str(self.lake),
            "DATADIR": str(self.work / "faust"),
            "HEALTH_PORT": str(free_port()),
            "WEB_PORT": str(free_port()),
            "ROTATE_SECONDS": "1",
            "LOGGING_LEVEL": "INFO",
        }
        assert self.sql_services is not None, "the tables live in the metastore: pass sql_services"
        self.env.update(
            {
                "TRINO_HOST": "127.0.0.1",
                "TRINO_PORT": str(self.sql_services.stack.trino_https_port),
                "TRINO_CA_FILE": str(self.sql_services.stack.trino_ca_file),
                # The stream jobs' login (they make the views); BI services get their own.
                **self.sql_services.stack.trino_service_env(trino_auth.JOBS_USER),
                "METASTORE_HOST": "127.0.0.1",
                "METASTORE_PORT": str(self.sql_services.stack.metastore_port),
                "RAW_SCHEMA": f"raw_{self.uid}",
                "CURATED_SCHEMA": f"curated_{self.uid}",
            }
        )
        self.env.update(self.env_extra)
        # This pipeline's bridge account: it may read its topics only.
        topic = self.mqtt_topic
        bridge = add_account(
            self.stack, f"bridge-{self.uid}", (("read", topic), ("read", f"{topic}/#"))
        )
        bridge_env = {
            **self.env,
            "MQTT_USERNAME": bridge.username,
            "MQTT_PASSWORD": bridge.password,
            "MQTT_CLIENT_ID": bridge.username,  # the broker makes it the username anyway
        }
        py = sys.executable
        self.bridge = Proc(
            "bridge", [py, "-m", "mqtt_bridge"], bridge_env, self.work / "bridge.log"
        )
        self.jobs = Proc(
            "stream_jobs", [py, "-m", "stream_jobs"], self.env, self.work / "stream_jobs.log"
        )

    def start(self) -> Pipeline:
        self.bridge.start()
        self.jobs.start()
        self.wait_healthy(self.bridge, "HEALTH_PORT")
        self.wait_healthy(self.jobs, "WEB_PORT")
        return self

    def wait_healthy(self, proc: Proc, port_env: str, timeout: float = 60) -> None:
        def ready() -> bool:
            if not proc.alive:
                raise AssertionError(f"{proc.name} exited:\n{proc.tail()}")
            return _http_ok(int(self.env[port_env]))

        wait_for(ready, timeout, proc.name)

    def stop(self) -> None:
        for p in (self.bridge, self.jobs):
            p.stop()

    def sql(self, query: str, user: str = trino_auth.ADMIN_USER) -> list[list[Any]]:
        """Run a query written for iceberg.raw / iceberg.curated (or the hive.* and
        lake.* names) against this test's schemas, as `user` (the admin by default)."""
        assert self.sql_services is not None
        for catalog in ("iceberg", "hive", trino_auth.BI_CATALOG):
            for schema in ("raw", "curated"):
                query = query.replace(f"{catalog}.{schema}.", f"{catalog}.{schema}_{self.uid}.")
        return self.sql_services.query(query, user)

    def health(self, port_env: str = "WEB_PORT") -> dict[str, Any]:
        """A service's /health: the stream jobs' (WEB_PORT) or the bridge's (HEALTH_PORT)."""
        import json
        import urllib.request

        url = f"http://127.0.0.1:{self.env[port_env]}/health"
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def _health_or_error(self, port_env: str) -> object:
        try:
            return self.health(port_env)
        except OSError as e:
            return f"unreachable ({e})"

    def wait_sql_ready(self, timeout: float = 90) -> None:
        import json
        import urllib.request

        def ready() -> bool:
            url = f"http://127.0.0.1:{self.env['WEB_PORT']}/health"
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(json.loads(r.read()).get("sql_views") == "ready")

        wait_for(ready, timeout, "SQL views")

    def sensors_file(self, n: int) -> Path:
        path = self.work / f"fleet-{n}.json"
        path.write_bytes(orjson.dumps(fleet(n)))
        return path

    def generator(self, seconds: float, interval_ms: int, **env: str) -> Proc:
        """A generator of its own account (which may publish under this pipeline's topic)."""
        name = uuid.uuid4().hex[:6]
        log = self.work / f"published-{name}.hex"
        topic = self.mqtt_topic
        account = add_account(
            self.stack, f"gen-{self.uid}-{name}", (("write", topic), ("write", f"{topic}/#"))
        )
        gen_env = {
            **self.env,
            "RUN_SECONDS": str(seconds),
            "INTERVAL_MS": str(interval_ms),
            "PUBLISHED_LOG": str(log),
            "MQTT_QOS": "1",
            "MQTT_USERNAME": account.username,
            "MQTT_PASSWORD": account.password,
            **{k.upper(): v for k, v in env.items()},
        }
        proc = Proc(
            "generator",
            [sys.executable, "-m", "iot_data_generator"],
            gen_env,
            self.work / "generator.log",
        )
        proc.published_log = log  # type: ignore[attr-defined]
        return proc.start()

    def table(self, name: str) -> pa.Table:
        """A table as its last commit has it, read with pyiceberg (empty before its first)."""
        assert self.sql_services is not None
        zone = "curated" if name.startswith("readings_1m") else "raw"
        settings = StreamSettings(**self.settings_env())
        catalog = connect(
            f"thrift://127.0.0.1:{self.sql_services.stack.metastore_port}",
            Lake(self.env["LAKE_URL"], settings.storage_options()),
            settings.iceberg_s3(),
        )
        try:
            table = catalog.load_table(f"{zone}_{self.uid}.{name}")
        except NoSuchTableError:
            return pa.table({})
        return table.scan().to_arrow()

    def settings_env(self) -> dict[str, Any]:
        """The S3 settings of this pipeline, as StreamSettings fields."""
        keys = ("lake_url", "s3_endpoint_url", "aws_access_key_id", "aws_secret_access_key")
        return {k: self.env[k.upper()] for k in keys if k.upper() in self.env}

    def readings_payloads(self) -> list[bytes]:
        t = self.table("readings")
        return [p.encode() for p in t["payload"].to_pylist()] if t.num_rows else []

    def wait_archived(self, table: str, n: int, timeout: float = 90) -> None:
        def enough() -> bool:
            return self.table(table).num_rows >= n

        try:
            wait_for(enough, timeout, f"{n} rows in {table}")
        except StackError as e:
            # CI keeps the head of a failure: the figures first, then the logs
            # without librdkafka's reconnect lines.
            raise AssertionError(
                f"{e}: {self.table(table).num_rows} archived\n"
                f"bridge /health: {self._health_or_error('HEALTH_PORT')}\n"
                f"jobs /health: {self._health_or_error('WEB_PORT')}\n"
                f"--- bridge log\n{self.bridge.tail(30, quiet=True)}\n"
                f"--- jobs log\n{self.jobs.tail(60, quiet=True)}"
            ) from e
        time.sleep(2.5)  # a duplicate would land within a rotation or two


def published(proc: Proc) -> list[bytes]:
    log: Path = proc.published_log  # type: ignore[attr-defined]
    return [bytes.fromhex(line) for line in log.read_text().split()]


def wait_exit(proc: Proc, timeout: float) -> int:
    assert proc.p is not None
    return proc.p.wait(timeout)


def _http_ok(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


Waiter = Callable[[], bool]


def mqtt_publish(
    port: int, topic: str, payloads: list[bytes], qos: int = 1, account: Account = TEST_PUBLISHER
) -> None:
    """Publish and wait until the broker confirmed each message."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=account.username)
    client.username_pw_set(account.username, account.password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, p, qos=qos) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


# -- several stream-job members in one consumer group (added for test_scale_out_jobs) -------


def jobs_member(pipe: Pipeline, name: str) -> Proc:
    """One more stream-jobs process of `pipe`, as `pipe.jobs` is started, in the same
    consumer groups (same settings) but with its own web port (its WEB_PORT in
    `env`) and Faust data folder. Not started."""
    env = {
        **pipe.env,
        "WEB_PORT": str(free_port()),
        "DATADIR": str(pipe.work / f"faust-{name}"),
    }
    return Proc(name, [sys.executable, "-m", "stream_jobs"], env, pipe.work / f"{name}.log")


def member_health(proc: Proc) -> dict[str, Any] | None:
    """A stream-jobs process's /health (on the WEB_PORT of its env); None if it does
    not answer."""
    import json
    import urllib.request

    url = f"http://127.0.0.1:{proc.env['WEB_PORT']}/health"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]
    except OSError:
        return None


def wait_member_healthy(proc: Proc, timeout: float = 90) -> None:
    def ready() -> bool:
        if not proc.alive:
            raise AssertionError(f"{proc.name} exited:\n{proc.tail()}")
        return _http_ok(int(proc.env["WEB_PORT"]))

    wait_for(ready, timeout, proc.name)


def pause(proc: Proc) -> None:
    """SIGSTOP: the process stalls (as in a long GC pause or a frozen VM), holding
    whatever it holds, until resume()."""
    assert proc.p is not None
    os.killpg(proc.p.pid, signal.SIGSTOP)


def resume(proc: Proc) -> None:
    assert proc.p is not None
    os.killpg(proc.p.pid, signal.SIGCONT)
