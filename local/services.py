"""How each service of the platform runs without Docker: its config and command.

Both `make up` (through supervisord) and the integration tests (as plain
subprocesses on free ports) start services from here, with the same config
files that docker-compose mounts (mosquitto/, kafka/); only ports and data
directories are rewritten.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from iot_common import topics

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("IOT_CACHE_DIR", Path.home() / ".cache" / "iot-platform"))


class StackError(Exception):
    """A service could not be installed or started; the message says what to do."""


def versions() -> dict[str, str]:
    """Pinned versions of the non-Python parts (versions.env)."""
    out = {}
    for line in (ROOT / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


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


def wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise StackError(f"{what} did not become ready within {timeout_s:.0f} s")


# -- installation -----------------------------------------------------------------


def _mvn(*args: str) -> None:
    if shutil.which("mvn") is None:
        raise StackError(
            "Maven (mvn) is needed once to fetch the Java services: apt-get install maven"
        )
    subprocess.run(["mvn", "-q", "-B", *args], check=True)


def _maven_classpath(name: str, pom: Path, props: dict[str, str]) -> Path:
    """The runtime classpath of `pom` from Maven Central, cached outside the checkout."""
    target = CACHE / name / "libs"
    if (target / ".complete").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    print(f"fetching {name} from Maven into {target} ...", flush=True)
    _mvn(
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={target}",
        "-DincludeScope=runtime",
        *(f"-D{k}={v}" for k, v in props.items()),
    )
    (target / ".complete").touch()
    return target


def _maven_artifact(artifact: str, dest: Path) -> Path:
    """One artifact (group:name:version:type[:classifier]) copied into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    _mvn("dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={dest}")
    _group, name, version, kind, *classifier = artifact.split(":")
    suffix = f"-{classifier[0]}" if classifier else ""
    return dest / f"{name}-{version}{suffix}.{kind}"


def kafka_libs() -> Path:
    """The Kafka broker's classpath."""
    v = versions()
    return _maven_classpath(
        f"kafka-{v['KAFKA_VERSION']}",
        ROOT / "kafka" / "pom.xml",
        {"kafka.version": v["KAFKA_VERSION"], "log4j.version": v["LOG4J_VERSION"]},
    )


def metastore_home() -> Path:
    """The standalone Hive Metastore: classpath in libs/, schema scripts in scripts/."""
    v = versions()
    # The name carries the JDBC driver's version: a cache made before it was added
    # (or for another version) is not taken for complete.
    home = CACHE / f"hive-metastore-{v['HIVE_VERSION']}-pgjdbc-{v['POSTGRESQL_JDBC_VERSION']}"
    _maven_classpath(
        home.name,
        ROOT / "hive-metastore" / "pom.xml",
        {
            "hive.version": v["HIVE_VERSION"],
            "hadoop.version": v["HADOOP_VERSION"],
            "derby.version": v["DERBY_VERSION"],
            "postgresql.jdbc.version": v["POSTGRESQL_JDBC_VERSION"],
            "aws.sdk.version": v["AWS_SDK_VERSION"],
        },
    )
    scripts = home / "scripts" / "metastore" / "upgrade" / "derby"
    if not scripts.is_dir():
        # The schema scripts ship only in the binary distribution (also on Maven Central).
        tarball = _maven_artifact(
            f"org.apache.hive:hive-standalone-metastore-server:{v['HIVE_VERSION']}:tar.gz:bin",
            home / "dl",
        )
        subprocess.run(
            [
                "tar",
                "xzf",
                str(tarball),
                "-C",
                str(home),
                "--strip-components=1",
                "--wildcards",
                "*/scripts/metastore/upgrade/derby/*",
                "*/scripts/metastore/upgrade/postgres/*",
            ],
            check=True,
        )
        shutil.rmtree(home / "dl")
    return home


def trino_home() -> Path:
    """Trino server with the plugins we use, from the Maven Central tarball."""
    v = versions()
    plugins = ("hive", "iceberg", "kafka")
    # Named by its plugins: a cache trimmed to another set is not taken for this one.
    home = CACHE / f"trino-server-{v['TRINO_VERSION']}-{'-'.join(plugins)}"
    if (home / ".complete").exists():
        return home
    tarball = _maven_artifact(
        f"io.trino:trino-server:{v['TRINO_VERSION']}:tar.gz", CACHE / "downloads"
    )
    shutil.rmtree(home, ignore_errors=True)
    # Plugins share jars as hard links, so the whole tarball is unpacked, then trimmed.
    unpacked = CACHE / f"trino-server-{v['TRINO_VERSION']}"
    shutil.rmtree(unpacked, ignore_errors=True)
    subprocess.run(["tar", "xzf", str(tarball), "-C", str(CACHE)], check=True)
    for plugin in (unpacked / "plugin").iterdir():
        if plugin.name not in plugins:
            shutil.rmtree(plugin)
    unpacked.rename(home)
    tarball.unlink()
    (home / ".complete").touch()
    return home


def trino_cli() -> Path:
    v = versions()
    jar = CACHE / f"trino-cli-{v['TRINO_VERSION']}-executable.jar"
    if not jar.exists():
        _maven_artifact(f"io.trino:trino-cli:{v['TRINO_VERSION']}:jar:executable", CACHE)
    return jar


def postgres_bin() -> Path:
    """The newest PostgreSQL server Debian's packages installed."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise StackError(
            "PostgreSQL is missing (the metastore's database): apt-get install postgresql"
        )
    return found[-1].parent


def as_postgres() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as Debian's `postgres` user
    (setpriv execs, so signals reach the server itself); as anyone else, as them."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]


def java_bin() -> str:
    """The machine's default JDK (17) for Kafka and the metastore. JAVA_HOME is not
    consulted on purpose: it may point at the Java 25 that Trino needs and the
    metastore cannot run on."""
    found = shutil.which("java")
    if not found:
        raise StackError("Java 17 is needed: apt-get install openjdk-17-jre-headless")
    return found


# -- the stack's layout --------------------------------------------------------------


@dataclass
class Stack:
    """Ports and directories of one running copy of the platform."""

    data: Path
    mqtt_port: int = 1883
    kafka_port: int = 9092
    controller_port: int = 9093
    bridge_health_port: int = 8081
    stream_web_port: int = 6066
    metastore_port: int = 9083
    postgres_port: int = 5433  # not 5432: a system PostgreSQL may hold that
    # PostgreSQL's directory (default data/postgres). Every folder above it must be
    # open to the `postgres` user when the stack runs as root.
    postgres_dir: Path | None = None
    trino_port: int = 8080
    lake_url: str = ""
    # S3 endpoint and keys, when lake_url is s3://... (else unused)
    s3_endpoint: str = ""
    s3_key: str = ""
    s3_secret: str = ""
    # Topics Trino's Kafka catalog exposes (the live view reads the readings topic).
    trino_kafka_topics: str = topics.READINGS
    env: dict[str, str] = field(default_factory=dict)  # extra env for the Python services

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

    def mosquitto_conf(self) -> Path:
        text = (ROOT / "mosquitto" / "mosquitto.conf").read_text()
        text = re.sub(r"(?m)^listener 1883$", f"listener {self.mqtt_port} 127.0.0.1", text)
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
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise StackError("Mosquitto is missing: apt-get install mosquitto")
        return [binary, "-c", str(self.mosquitto_conf())]

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
        extra = {}
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

    def _pg_password(self) -> str:
        """The metastore's database password: METASTORE_DB_PASSWORD, else one made
        at the first start and kept beside the metastore's data (never committed)."""
        given = os.environ.get("METASTORE_DB_PASSWORD")
        if given:
            return given
        path = self.data / "metastore" / "db-password"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(24))
            path.chmod(0o600)
        return path.read_text().strip()

    def postgres_cmd(self) -> list[str]:
        return [
            *as_postgres(),
            str(postgres_bin() / "postgres"),
            "-D",
            str(self.pg_root / "data"),
            "-c",
            "listen_addresses=127.0.0.1",
            "-p",
            str(self.postgres_port),
            "-k",
            str(self.pg_root / "sock"),
        ]

    def postgres_ready(self) -> bool:
        return (
            subprocess.run(
                [
                    str(postgres_bin() / "pg_isready"),
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.postgres_port),
                    "-U",
                    "postgres",
                ],
                check=False,
            ).returncode
            == 0
        )

    def postgres_init(self) -> None:
        """A PostgreSQL cluster in postgres_dir, once (local socket: trust; TCP: password)."""
        root = self.pg_root
        if (root / "data" / "PG_VERSION").exists():
            return
        root.mkdir(parents=True, exist_ok=True)
        (root / "sock").mkdir(exist_ok=True)
        if os.geteuid() == 0:
            for path in (root, root / "sock"):
                shutil.chown(path, "postgres", "postgres")
        root.chmod(0o700)
        subprocess.run(
            [
                *as_postgres(),
                str(postgres_bin() / "initdb"),
                "-D",
                str(root / "data"),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    @contextlib.contextmanager
    def postgres_running(self) -> Iterator[None]:
        """PostgreSQL answering for the duration: the running one, or one started
        for this and stopped after (fast shutdown)."""
        if self.postgres_ready():
            yield
            return
        proc = subprocess.Popen(
            self.postgres_cmd(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for(self.postgres_ready, 30, "PostgreSQL")
            yield
        finally:
            proc.send_signal(signal.SIGINT)  # fast: TERM waits for every client to leave
            proc.wait(30)

    def _psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [
                str(postgres_bin() / "psql"),
                "-h",
                str(self.pg_root / "sock"),
                "-p",
                str(self.postgres_port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atq",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def _metastore_database(self) -> None:
        """The role and database of the metastore (idempotent)."""
        password = self._pg_password().replace("'", "''")
        if self._psql("SELECT 1 FROM pg_roles WHERE rolname = 'hive'") != "1":
            self._psql(f"CREATE ROLE hive LOGIN PASSWORD '{password}'")
        else:
            self._psql(f"ALTER ROLE hive PASSWORD '{password}'")
        if self._psql("SELECT 1 FROM pg_database WHERE datname = 'metastore'") != "1":
            self._psql("CREATE DATABASE metastore OWNER hive")

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
        self.postgres_init()
        db = self.data / "metastore"
        db.mkdir(parents=True, exist_ok=True)
        with self.postgres_running():
            self._metastore_database()
            # Hive's schema is there once its VERSION table is.
            tables = "SELECT count(*) FROM pg_tables WHERE tablename = 'VERSION'"
            ready = self._psql(tables, database="metastore") == "1"
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

    # trino ------------------------------------------------------------------------------

    def trino_etc(self) -> Path:
        """The shared trino/etc with this stack's ports, metastore and S3 settings."""
        out = self.run_dir / "trino-etc"
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(ROOT / "trino" / "etc", out)
        set_properties(
            out / "config.properties",
            {
                "http-server.http.port": str(self.trino_port),
                "discovery.uri": f"http://127.0.0.1:{self.trino_port}",
            },
        )
        set_properties(out / "node.properties", {"node.internal-address": "127.0.0.1"})
        hive = {"hive.metastore.uri": f"thrift://127.0.0.1:{self.metastore_port}"}
        if self.s3_endpoint:
            hive.update({"s3.endpoint": self.s3_endpoint, "s3.path-style-access": "true"})
        if self.s3_key:
            hive.update({"s3.aws-access-key": self.s3_key, "s3.aws-secret-key": self.s3_secret})
        set_properties(out / "catalog" / "hive.properties", hive)
        set_properties(out / "catalog" / "iceberg.properties", hive)
        set_properties(
            out / "catalog" / "kafka.properties",
            {"kafka.nodes": self.bootstrap, "kafka.table-names": self.trino_kafka_topics},
        )
        return out

    def trino_cmd(self) -> list[str]:
        home = trino_home()
        java_home = os.environ.get("TRINO_JAVA_HOME", versions()["TRINO_JAVA_HOME"])
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

    def trino_ready(self) -> bool:
        """Trino has an active node (its HTTP server is up well before that)."""
        import trino

        try:
            conn = trino.dbapi.connect(
                host="127.0.0.1", port=self.trino_port, user="probe", request_timeout=5
            )
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
            "DATADIR": str(self.data / "stream_jobs"),
            "TRINO_HOST": "127.0.0.1",
            "TRINO_PORT": str(self.trino_port),
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

    def commands(self) -> dict[str, list[str]]:
        """Every service of the stack, in start order."""
        py = sys.executable
        return {
            "postgres": self.postgres_cmd(),
            "mosquitto": self.mosquitto_cmd(),
            "kafka": self.kafka_cmd(),
            "hive_metastore": self.metastore_cmd(),
            "trino": self.trino_cmd(),
            "mqtt_bridge": [py, "-m", "mqtt_bridge"],
            "stream_jobs": [py, "-m", "stream_jobs"],
            "iot_data_generator": [py, "-m", "iot_data_generator"],
        }
