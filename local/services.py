"""How each service of the platform runs without Docker: its config, preparation,
command and readiness, and SERVICES, the one table of them in start order.

Both `make up` (through supervisord) and the integration tests (as plain
subprocesses on free ports) start services from here, with the same config
files that docker-compose mounts (mosquitto/, kafka/); only ports and data
directories are rewritten. A Stack holds one copy's ports and directories and
writes its config files under `<data>/run`; each service is one record of
SERVICES, so its name, order, preparation, command and probe cannot disagree.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iot_common import topics
from iot_common.contract import parse_sensors
from iot_common.settings import DEFAULT_SENSORS_FILE
from local import mqtt_auth, trino_auth
from local.common import (
    ROOT,
    StackError,
    dotenv,
    free_port,
    new_secret,
    port_open,
    versions,
    wait_for,
)
from local.install import (
    java_bin,
    kafka_libs,
    metastore_home,
    mosquitto_bin,
    trino_cli,
    trino_home,
    trino_java_home,
)
from local.mqtt_auth import Account, Credentials, unfit_sensor_ids
from local.postgres import Postgres

__all__ = [
    "ROOT",
    "SERVICES",
    "Service",
    "Stack",
    "StackError",
    "free_port",
    "health",
    "port_open",
    "trino_cli",
    "versions",
    "wait_for",
]


def set_properties(path: Path, values: dict[str, str]) -> None:
    """Set keys of a Java .properties file in place (replacing or appending lines)."""
    lines = path.read_text().splitlines()
    todo = dict(values)
    for i, line in enumerate(lines):
        key = line.split("=", 1)[0].strip()
        if key in todo and not line.lstrip().startswith("#"):
            lines[i] = f"{key}={todo.pop(key)}"
    lines += [f"{k}={v}" for k, v in todo.items()]
    path.write_text("\n".join(lines) + "\n")


def _http_json(port: int, path: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except (urllib.error.URLError, OSError, ValueError):
        return None


@dataclass
class Stack:
    """Ports and directories of one running copy of the platform."""

    data: Path
    mqtt_port: int = 1883
    kafka_port: int = 9092
    controller_port: int = 9093
    bridge_health_port: int = 8081
    generator_metrics_port: int = 8082
    stream_web_port: int = 6066
    metastore_port: int = 9083
    postgres_port: int = 5433  # not 5432: a system PostgreSQL may hold that
    # PostgreSQL's directory (default data/postgres). Every folder above it must be
    # open to the `postgres` user when the stack runs as root.
    postgres_dir: Path | None = None
    trino_port: int = 8080  # Trino's plain HTTP: its internal traffic and /v1/info only
    trino_https_port: int = 8443  # where clients log in (local.trino_auth)
    portal_port: int = 8090
    superset_port: int = 8088
    lake_url: str = ""
    # S3 endpoint and keys, when lake_url is s3://... (else unused)
    s3_endpoint: str = ""
    s3_key: str = ""
    s3_secret: str = ""
    # Topics Trino's Kafka catalog exposes (the live view reads the readings topic).
    trino_kafka_topics: str = topics.READINGS
    env: dict[str, str] = field(default_factory=dict)  # extra env for the Python services
    # The broker's accounts (local.mqtt_auth): the platform's, from these secrets, and
    # any added while it runs (add_mqtt_accounts).
    mqtt_credentials: Credentials = field(default_factory=Credentials.random)
    mqtt_topic: str = "sensors"
    mqtt_extra_accounts: list[Account] = field(default_factory=list)
    # Trino's logins (local.trino_auth), from these secrets.
    trino_credentials: trino_auth.Credentials = field(default_factory=trino_auth.Credentials.random)
    # The schemas BI logins may read (a regular expression; tests use their own).
    trino_bi_schemas: str = trino_auth.BI_SCHEMAS

    def __post_init__(self) -> None:
        self.data = self.data.resolve()
        if self.postgres_dir is None:
            self.postgres_dir = self.data / "postgres"
        if not self.lake_url:
            self.lake_url = str(self.data / "lake")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def run_dir(self) -> Path:
        return self.data / "run"

    @property
    def log_dir(self) -> Path:
        return self.data / "logs"

    # mosquitto --------------------------------------------------------------

    @property
    def mqtt_auth_dir(self) -> Path:
        return self.run_dir / "mosquitto-auth"

    def sensor_ids(self) -> list[str]:
        """The ids of the sensor list the services read (SENSORS_FILE or the default)."""
        path = Path(self.env.get("SENSORS_FILE") or os.environ.get("SENSORS_FILE") or "")
        data = (path if path.name else DEFAULT_SENSORS_FILE).read_bytes()
        return list(parse_sensors(data))

    def mqtt_accounts(self) -> list[Account]:
        ids = self.sensor_ids()
        for sensor_id in unfit_sensor_ids(ids):
            print(f"no MQTT account for sensor {sensor_id!r}: its id cannot be a topic level")
        accounts = self.mqtt_credentials.platform_accounts(self.mqtt_topic, ids)
        return [*accounts, *self.mqtt_extra_accounts]

    def write_mqtt_auth(self) -> None:
        """The password and ACL files of the broker's accounts (read at its start and
        at SIGHUP: reload_mqtt_auth)."""
        mqtt_auth.write(self.mqtt_auth_dir, self.mqtt_accounts())

    def add_mqtt_accounts(self, accounts: list[Account]) -> None:
        """Accounts added to a running broker: written, then Mosquitto reloads them."""
        self.mqtt_extra_accounts += accounts
        self.reload_mqtt_auth()

    def reload_mqtt_auth(self) -> None:
        """Write the accounts again and have the running Mosquitto reload them."""
        self.write_mqtt_auth()
        pid = int((self.run_dir / "mosquitto.pid").read_text())
        os.kill(pid, signal.SIGHUP)

    def mqtt_login(self, username: str, password: str) -> bool:
        """Whether the broker accepts this login now (after a reload: when it took)."""
        return mqtt_auth.login_ok("127.0.0.1", self.mqtt_port, username, password)

    def mosquitto_conf(self) -> Path:
        text = (ROOT / "mosquitto" / "mosquitto.conf").read_text()
        text = re.sub(r"(?m)^listener 1883$", f"listener {self.mqtt_port} 127.0.0.1", text)
        # Access control as mosquitto.conf sets it (docs/security.md), with this
        # stack's accounts.
        self.write_mqtt_auth()
        for option, path in (
            ("password_file", self.mqtt_auth_dir / mqtt_auth.PASSWD_NAME),
            ("acl_file", self.mqtt_auth_dir / mqtt_auth.ACL_NAME),
        ):
            text = re.sub(rf"(?m)^{option} .*$", f"{option} {path}", text)
        # Its pid, for a reload of the accounts (SIGHUP: reload_mqtt_auth).
        text += f"\npid_file {self.run_dir / 'mosquitto.pid'}\n"
        persist = self.data / "mosquitto"
        persist.mkdir(parents=True, exist_ok=True)
        text = re.sub(r"(?m)^persistence_location .*$", f"persistence_location {persist}/", text)
        # Started as root, mosquitto drops to user 'mosquitto', which cannot write our
        # persistence directory; stay the user who runs the stack instead.
        text += f"\nuser {getpass.getuser()}\n"
        out = self.run_dir / "mosquitto.conf"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        return out

    def mosquitto_cmd(self) -> list[str]:
        return [mosquitto_bin(), "-c", str(self.mosquitto_conf())]

    def mosquitto_ready(self) -> bool:
        return port_open(self.mqtt_port)

    # kafka ------------------------------------------------------------------------

    def kafka_properties(self) -> Path:
        base = (ROOT / "kafka" / "server.properties").read_text()
        overrides = {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.kafka_port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.kafka_port}",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "log.dirs": str(self.data / "kafka"),
        }
        out = self.run_dir / "kafka.properties"
        out.parent.mkdir(parents=True, exist_ok=True)
        extra = "".join(f"{k}={v}\n" for k, v in overrides.items())
        out.write_text(f"{base}\n# local/services.py overrides (a later key wins)\n{extra}")
        return out

    def kafka_java(self) -> list[str]:
        return [
            java_bin(),
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={ROOT / 'kafka' / 'log4j2.properties'}",
            "-cp",
            f"{kafka_libs()}/*",
        ]

    def kafka_format(self) -> None:
        """Format the KRaft storage once (first start of this data directory)."""
        props = self.kafka_properties()
        if (self.data / "kafka" / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(
            [
                *self.kafka_java(),
                "kafka.tools.StorageTool",
                "format",
                # "=": a random id may start with "-" and be taken for an option
                f"--cluster-id={cluster_id}",
                "-c",
                str(props),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def kafka_cmd(self) -> list[str]:
        return [*self.kafka_java(), "kafka.Kafka", str(self.kafka_properties())]

    def kafka_ready(self) -> bool:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        if not port_open(self.kafka_port):
            return False
        try:
            AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
            return True
        except KafkaException:
            return False

    # hive metastore ---------------------------------------------------------------------

    def metastore_conf(self) -> Path:
        """The shared metastore-site.xml, plus the lake's S3 endpoint and keys if any."""
        out = self.run_dir / "metastore-conf"
        out.mkdir(parents=True, exist_ok=True)
        src = ROOT / "hive-metastore" / "conf"
        shutil.copy(src / "metastore-log4j2.properties", out)
        xml = (src / "metastore-site.xml").read_text()
        # The loopback only: the metastore has no authentication (docs/security.md).
        extra = {"metastore.thrift.bind.host": "127.0.0.1"}
        if self.s3_endpoint:
            extra["fs.s3a.endpoint"] = self.s3_endpoint
            extra["fs.s3a.connection.ssl.enabled"] = str(self.s3_endpoint.startswith("https"))
        if self.s3_key:
            extra["fs.s3a.aws.credentials.provider"] = (
                "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
            )
            extra["fs.s3a.access.key"] = self.s3_key
            extra["fs.s3a.secret.key"] = self.s3_secret
        props = "".join(
            f"  <property><name>{k}</name><value>{v}</value></property>\n" for k, v in extra.items()
        )
        (out / "metastore-site.xml").write_text(
            xml.replace("</configuration>", f"{props}</configuration>")
        )
        return out

    # postgresql (the metastore's database) ------------------------------------------

    @property
    def pg_root(self) -> Path:
        assert self.postgres_dir is not None
        return self.postgres_dir

    @property
    def postgres(self) -> Postgres:
        return Postgres(self.pg_root, self.postgres_port)

    def _pg_password(self) -> str:
        """The metastore's database password: METASTORE_DB_PASSWORD, else one made
        at the first start and kept beside the metastore's data (never committed)."""
        given = os.environ.get("METASTORE_DB_PASSWORD")
        if given:
            return given
        path = self.data / "metastore" / "db-password"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_secret())
            path.chmod(0o600)
        return path.read_text().strip()

    def postgres_cmd(self) -> list[str]:
        return self.postgres.command()

    def postgres_ready(self) -> bool:
        return self.postgres.ready()

    def postgres_init(self) -> None:
        """A PostgreSQL cluster in postgres_dir, once (local socket: trust; TCP: password)."""
        self.postgres.init()

    def metastore_env(self) -> dict[str, str]:
        return {
            "METASTORE_DB_DIR": str(self.data / "metastore"),
            "METASTORE_HOME": str(metastore_home()),
            "METASTORE_JDBC_URL": f"jdbc:postgresql://127.0.0.1:{self.postgres_port}/metastore",
            "METASTORE_JDBC_DRIVER": "org.postgresql.Driver",
            "METASTORE_DB_USER": "hive",
            "METASTORE_DB_PASSWORD": self._pg_password(),
        }

    def metastore_java(self) -> list[str]:
        conf = self.metastore_conf()
        # Java 17 (the default JDK): Hadoop 3.3 fails on Java 25 (Subject.getSubject).
        return [
            java_bin(),
            "-Xmx512m",
            f"-Dlog4j.configurationFile={conf / 'metastore-log4j2.properties'}",
            "-cp",
            f"{conf}:{metastore_home() / 'libs'}/*",
        ]

    def metastore_init(self) -> None:
        """The metastore's database and schema, once: PostgreSQL's cluster, role and
        database, then Hive's schema (PostgreSQL is started for it if not running)."""
        postgres = self.postgres
        postgres.init()
        db = self.data / "metastore"
        db.mkdir(parents=True, exist_ok=True)
        with postgres.running():
            postgres.metastore_database(self._pg_password())
            # Hive's schema is there once its VERSION table is.
            tables = "SELECT count(*) FROM pg_tables WHERE tablename = 'VERSION'"
            ready = postgres.psql(tables, database="metastore") == "1"
            if ready:
                return
            subprocess.run(
                [
                    *self.metastore_java(),
                    "org.apache.hadoop.hive.metastore.tools.schematool.MetastoreSchemaTool",
                    "-initSchema",
                    "-dbType",
                    "postgres",
                ],
                check=True,
                cwd=db,
                env={**os.environ, **self.metastore_env()},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def metastore_cmd(self) -> list[str]:
        return [
            *self.metastore_java(),
            "org.apache.hadoop.hive.metastore.HiveMetaStore",
            "-p",
            str(self.metastore_port),
        ]

    def metastore_ready(self) -> bool:
        return port_open(self.metastore_port)

    # trino ------------------------------------------------------------------------------

    def trino_etc(self) -> Path:
        """The shared trino/etc with this stack's ports, metastore and S3 settings."""
        out = self.run_dir / "trino-etc"
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(ROOT / "trino" / "etc", out)
        # Logins over TLS and the access rules (local.trino_auth; docs/security.md).
        trino_auth.render(
            self.trino_auth_dir, self.trino_credentials, bi_schemas=self.trino_bi_schemas
        )
        set_properties(
            out / "config.properties",
            {
                "http-server.http.port": str(self.trino_port),
                "discovery.uri": f"http://127.0.0.1:{self.trino_port}",
                **trino_auth.server_properties(self.trino_auth_dir, self.trino_https_port),
            },
        )
        for name, text in trino_auth.etc_files(self.trino_auth_dir).items():
            (out / name).write_text(text)
        # The loopback only, here (its HTTP server binds to node.bind-ip): no one else
        # on the network may run SQL (docs/security.md). Compose keeps 0.0.0.0 in the
        # container and publishes the port on the host's loopback.
        set_properties(
            out / "node.properties",
            {"node.internal-address": "127.0.0.1", "node.bind-ip": "127.0.0.1"},
        )
        hive = {"hive.metastore.uri": f"thrift://127.0.0.1:{self.metastore_port}"}
        if self.s3_endpoint:
            hive.update({"s3.endpoint": self.s3_endpoint, "s3.path-style-access": "true"})
        if self.s3_key:
            hive.update({"s3.aws-access-key": self.s3_key, "s3.aws-secret-key": self.s3_secret})
        set_properties(out / "catalog" / "hive.properties", hive)
        set_properties(out / "catalog" / "iceberg.properties", hive)
        set_properties(out / "catalog" / f"{trino_auth.BI_CATALOG}.properties", hive)
        set_properties(
            out / "catalog" / "kafka.properties",
            {"kafka.nodes": self.bootstrap, "kafka.table-names": self.trino_kafka_topics},
        )
        return out

    def trino_cmd(self) -> list[str]:
        home = trino_home()
        java_home = trino_java_home()
        if not (Path(java_home) / "bin" / "java").exists():
            raise StackError(
                f"Trino {versions()['TRINO_VERSION']} needs Java 24+; "
                f"none at {java_home} (set TRINO_JAVA_HOME)"
            )
        return [
            "env",
            f"JAVA_HOME={java_home}",
            f"PATH={java_home}/bin:{os.environ['PATH']}",
            str(home / "bin" / "launcher"),
            "run",
            f"--etc-dir={self.trino_etc()}",
            f"--data-dir={self.data / 'trino'}",
        ]

    @property
    def trino_auth_dir(self) -> Path:
        """Trino's password file, rules, certificate and shared secret (kept across
        restarts: clients trust the certificate)."""
        return self.data / "trino-auth"

    @property
    def trino_ca_file(self) -> Path:
        return self.trino_auth_dir / trino_auth.CA_FILE

    def trino_login(self, user: str = trino_auth.ADMIN_USER) -> dict[str, Any]:
        """A login for iot_common.trino_client.connect (the admin's by default)."""
        return {
            "host": "127.0.0.1",
            "port": self.trino_https_port,
            "user": user,
            "password": self.trino_credentials.password(user),
            "ca_file": str(self.trino_ca_file),
        }

    def trino_service_env(self, user: str) -> dict[str, str]:
        """A Python service's Trino login, as its settings read it."""
        return {"TRINO_USER": user, "TRINO_PASSWORD": self.trino_credentials.password(user)}

    def trino_ready(self) -> bool:
        """Trino has an active node (its HTTP server is up well before that), and it
        takes the admin's login over TLS."""
        import trino

        from iot_common import trino_client

        try:
            conn = trino_client.connect(**self.trino_login(), request_timeout=5)
            cur = conn.cursor()
            # Queries fail with NO_NODES_AVAILABLE until the node has announced itself.
            cur.execute("SELECT count(*) FROM system.runtime.nodes WHERE state = 'active'")
            return bool(cur.fetchall()[0][0] >= 1)
        except (trino.exceptions.Error, trino.exceptions.HttpError, OSError):
            return False

    # python services ------------------------------------------------------------------

    def python_env(self) -> dict[str, str]:
        return {
            "MQTT_HOST": "127.0.0.1",
            "MQTT_PORT": str(self.mqtt_port),
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "LAKE_URL": self.lake_url,
            "HEALTH_PORT": str(self.bridge_health_port),
            "WEB_PORT": str(self.stream_web_port),
            # The portal reads the catalogue from the stream jobs' web server.
            "PORTAL_PORT": str(self.portal_port),
            "STREAM_JOBS_URL": f"http://127.0.0.1:{self.stream_web_port}",
            # Great Expectations' Data Docs: written by the quality runs, served by the portal.
            "QUALITY_DOCS_DIR": str(self.data / "quality" / "data_docs"),
            "DATADIR": str(self.data / "stream_jobs"),
            "TRINO_HOST": "127.0.0.1",
            "TRINO_PORT": str(self.trino_https_port),
            "TRINO_CA_FILE": str(self.trino_ca_file),
            "METASTORE_HOST": "127.0.0.1",
            "METASTORE_PORT": str(self.metastore_port),
            "PYTHONUNBUFFERED": "1",
            **({"S3_ENDPOINT_URL": self.s3_endpoint} if self.s3_endpoint else {}),
            **(
                {"AWS_ACCESS_KEY_ID": self.s3_key, "AWS_SECRET_ACCESS_KEY": self.s3_secret}
                if self.s3_key
                else {}
            ),
            **self.env,
        }

    def bridge_ready(self) -> bool:
        health = _http_json(self.bridge_health_port, "/health")
        return bool(health and health.get("healthy"))

    def stream_jobs_ready(self) -> bool:
        """Healthy, and its SQL views over the tables made."""
        health = _http_json(self.stream_web_port, "/health")
        return bool(health and health.get("healthy") and health.get("sql_views") == "ready")

    def portal_ready(self) -> bool:
        health = _http_json(self.portal_port, "/health")
        return bool(health and health.get("healthy"))

    # superset (BI, optional: `make superset` installs it) ---------------------------

    def superset_env(self) -> dict[str, str]:
        """Superset's own settings (bi/superset_config.py, bi/superset_service.py):
        its secrets from the environment, else `.env` (make superset writes them)."""
        given = {**dotenv(), **os.environ, **self.env}
        return {
            "SUPERSET_CONFIG_PATH": str(ROOT / "bi" / "superset_config.py"),
            "SUPERSET_HOME": str(self.data / "superset"),
            "SUPERSET_PORT": str(self.superset_port),
            "SUPERSET_TRINO_URI": f"trino://{SUPERSET_TRINO_USER}@127.0.0.1:{self.trino_https_port}"
            f"/{SUPERSET_CATALOG}",
            "SUPERSET_TRINO_PASSWORD": self.trino_credentials.password(SUPERSET_TRINO_USER),
            "SUPERSET_TRINO_CA_FILE": str(self.trino_ca_file),
            "SUPERSET_ADMIN_USER": given.get("SUPERSET_ADMIN_USER", "admin"),
            # "Last day" is computed from Superset's clock; our times are UTC.
            "TZ": "UTC",
            **{k: given[k] for k in SUPERSET_SECRETS if k in given},
            **{k: given[k] for k in ("RAW_SCHEMA", "CURATED_SCHEMA") if k in given},
        }

    def superset_cmd(self) -> list[str]:
        return [str(SUPERSET_PYTHON), str(ROOT / "bi" / "superset_service.py")]

    def superset_ready(self) -> bool:
        """Its web server answers /health (it starts once the dashboards are imported)."""
        try:
            url = f"http://127.0.0.1:{self.superset_port}/health"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False


# -- the services --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Service:
    """One program of the stack: how supervisord runs it and how it is probed."""

    name: str  # supervisord's program, and its log file <name>.log
    order: int  # supervisord's priority: lower starts first and stops last
    command: Callable[[Stack], list[str]]
    # Run by `make up` before supervisord starts anything; does its work once.
    prepare: Callable[[Stack], None] | None = None
    # Healthy now? (None: not probed; `make up` waits for every probed service)
    ready: Callable[[Stack], bool] | None = None
    stop_signal: str = "TERM"
    # Environment of this service only (the shared one is the Python services').
    env: Callable[[Stack], dict[str, str]] | None = None
    # Part of the stack on this machine? (False: skipped; an optional, installed part)
    enabled: Callable[[], bool] = lambda: True
    # Started only once every probed service is healthy (supervisord's autostart off):
    # the generator, whose first readings the broker keeps for no one until the
    # bridge's persistent session exists.
    after_ready: bool = False


# Apache Superset: its own virtualenv (`make superset`), its login and key in .env.
SUPERSET_PYTHON = ROOT / ".venv-superset" / "bin" / "python"
SUPERSET_SECRETS = ("SUPERSET_SECRET_KEY", "SUPERSET_ADMIN_PASSWORD")
SUPERSET_TRINO_USER = trino_auth.SUPERSET_USER
SUPERSET_CATALOG = trino_auth.BI_CATALOG  # our tables, read-only


QUALITY_PYTHON = ROOT / ".venv-quality" / "bin" / "python"  # the Makefile makes it


def _python(module: str) -> Callable[[Stack], list[str]]:
    """A Python service of this checkout, run by this interpreter."""
    return lambda _stack: [sys.executable, "-m", module]


# Every service of the stack, in start order.
SERVICES: tuple[Service, ...] = (
    # The metastore's database: first up, last down. Its cluster is made by the
    # metastore's preparation (which needs it, and starts it for the schema).
    Service(
        name="postgres",
        order=5,
        command=Stack.postgres_cmd,
        ready=Stack.postgres_ready,
        stop_signal="INT",  # TERM waits for every client to leave; INT is its fast shutdown
    ),
    Service(
        name="mosquitto",
        order=10,
        command=Stack.mosquitto_cmd,
        ready=Stack.mosquitto_ready,
    ),
    Service(
        name="kafka",
        order=10,
        command=Stack.kafka_cmd,
        prepare=Stack.kafka_format,
        ready=Stack.kafka_ready,
    ),
    Service(
        name="hive_metastore",
        order=10,
        command=Stack.metastore_cmd,
        prepare=Stack.metastore_init,
        ready=Stack.metastore_ready,
    ),
    Service(
        name="trino",
        order=15,
        command=Stack.trino_cmd,
        ready=Stack.trino_ready,
    ),
    Service(
        name="mqtt_bridge",
        order=20,
        command=_python("mqtt_bridge"),
        ready=Stack.bridge_ready,
        env=lambda s: {
            "MQTT_USERNAME": mqtt_auth.BRIDGE_USER,
            "MQTT_PASSWORD": s.mqtt_credentials.bridge,
            "MQTT_CLIENT_ID": mqtt_auth.BRIDGE_USER,
        },
    ),
    Service(
        name="stream_jobs",
        order=20,
        command=_python("stream_jobs"),
        ready=Stack.stream_jobs_ready,
        env=lambda s: s.trino_service_env(trino_auth.JOBS_USER),
    ),
    Service(
        name="iot_data_generator",
        order=30,
        command=_python("iot_data_generator"),
        after_ready=True,
        env=lambda s: {
            "METRICS_PORT": str(s.generator_metrics_port),
            "MQTT_USERNAME": mqtt_auth.GENERATOR_USER,
            "MQTT_PASSWORD": s.mqtt_credentials.generator,
        },
    ),
    # The web entry point: reads the stream jobs' catalogue and Trino, serves pages.
    Service(
        name="portal",
        order=40,
        command=_python("portal"),
        ready=Stack.portal_ready,
        env=lambda s: {
            **s.trino_service_env(trino_auth.PORTAL_USER),
            "TRINO_CATALOG": trino_auth.BI_CATALOG,
        },
    ),
    # Great Expectations over what is archived, every QUALITY_EVERY_SECONDS, in a
    # virtualenv of its own (GX's pins and pandas stay out of ours): `make up`
    # creates it (the Makefile's .venv-quality target). Not probed: a run that
    # fails is logged and the next one comes.
    Service(
        name="quality",
        order=40,
        command=lambda _stack: [str(QUALITY_PYTHON), "-m", "expectations", "--every", "600"],
        env=lambda s: s.trino_service_env(trino_auth.QUALITY_USER),
    ),
    # BI dashboards (bi/): started when `make superset` has installed it. It imports
    # the dashboards (waiting for Trino and the views), then serves.
    Service(
        name="superset",
        order=40,
        command=Stack.superset_cmd,
        ready=Stack.superset_ready,
        env=Stack.superset_env,
        enabled=SUPERSET_PYTHON.exists,
    ),
)


def health(stack: Stack) -> dict[str, bool]:
    """Every probed service: healthy now? (in start order)"""
    return {s.name: s.ready(stack) for s in SERVICES if s.ready is not None and s.enabled()}
