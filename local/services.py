"""How each service of the platform runs without Docker: its config and command.

Both `make up` (through supervisord) and the integration tests (as plain
subprocesses on free ports) start services from here, with the same config
files that docker-compose mounts (mosquitto/, kafka/); only ports and data
directories are rewritten.
"""

from __future__ import annotations

import base64
import getpass
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

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


def wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise StackError(f"{what} did not become ready within {timeout_s:.0f} s")


# -- installation -----------------------------------------------------------------


def kafka_libs() -> Path:
    """The Kafka broker's classpath from Maven Central, cached outside the checkout."""
    v = versions()
    target = CACHE / f"kafka-{v['KAFKA_VERSION']}" / "libs"
    if (target / ".complete").exists():
        return target
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is needed once to fetch Kafka: apt-get install maven")
    target.mkdir(parents=True, exist_ok=True)
    print(f"fetching Apache Kafka {v['KAFKA_VERSION']} from Maven into {target} ...", flush=True)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(ROOT / "kafka" / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={target}",
            "-DincludeScope=runtime",
            f"-Dkafka.version={v['KAFKA_VERSION']}",
            f"-Dlog4j.version={v['LOG4J_VERSION']}",
        ],
        check=True,
    )
    (target / ".complete").touch()
    return target


def java_bin(env_name: str = "JAVA_HOME") -> str:
    home = os.environ.get(env_name)
    if home:
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise StackError("Java 17+ is needed for Kafka: apt-get install openjdk-17-jre-headless")
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
    lake_url: str = ""
    env: dict[str, str] = field(default_factory=dict)  # extra env for the Python services

    def __post_init__(self) -> None:
        self.data = self.data.resolve()
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
                "-t",
                cluster_id,
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
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }

    def commands(self) -> dict[str, list[str]]:
        """Every service of the stack, in start order."""
        py = sys.executable
        return {
            "mosquitto": self.mosquitto_cmd(),
            "kafka": self.kafka_cmd(),
            "mqtt_bridge": [py, "-m", "mqtt_bridge"],
            "stream_jobs": [py, "-m", "stream_jobs"],
            "iot_data_generator": [py, "-m", "iot_data_generator"],
        }
