"""`make up / down / status / logs`: the whole platform on this machine, under supervisord.

supervisord restarts a service that exits (the bridge exits on purpose when
Kafka refuses a record for good, so that MQTT resends what it did not ack).
Data stays in ./data across `make down` / `make up`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from iot_common import topics
from local.services import ROOT, Stack, StackError, port_open, trino_cli, versions, wait_for

DATA = ROOT / "data"

# supervisord start order (lower first)
PRIORITY = {
    "postgres": 5,  # the metastore's database: first up, last down
    "mosquitto": 10,
    "kafka": 10,
    "hive_metastore": 10,
    "trino": 15,
    "mqtt_bridge": 20,
    "stream_jobs": 20,
    "iot_data_generator": 30,
}


def stack() -> Stack:
    """The local stack; LAKE_URL=s3://... with S3_ENDPOINT_URL and AWS keys puts the lake on S3."""
    env = os.environ
    return Stack(
        DATA,
        lake_url=env.get("LAKE_URL", ""),
        s3_endpoint=env.get("S3_ENDPOINT_URL", ""),
        s3_key=env.get("AWS_ACCESS_KEY_ID", ""),
        s3_secret=env.get("AWS_SECRET_ACCESS_KEY", ""),
    )


def supervisor_conf(s: Stack) -> Path:
    s.log_dir.mkdir(parents=True, exist_ok=True)
    s.run_dir.mkdir(parents=True, exist_ok=True)
    env = ",".join(f'{k}="{v}"' for k, v in {**s.python_env(), **s.metastore_env()}.items())
    parts = [
        "[unix_http_server]",
        f"file={s.run_dir / 'supervisor.sock'}",
        "[supervisord]",
        f"logfile={s.log_dir / 'supervisord.log'}",
        f"pidfile={s.run_dir / 'supervisord.pid'}",
        f"directory={ROOT}",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]",
        f"serverurl=unix://{s.run_dir / 'supervisor.sock'}",
    ]
    for name, cmd in s.commands().items():
        parts += [
            f"[program:{name}]",
            "command=" + " ".join(cmd),
            f"environment={env}",
            f"priority={PRIORITY[name]}",
            "autorestart=true",
            "startsecs=3",
            "startretries=100",
            # PostgreSQL's TERM waits for every client to leave; INT is its fast shutdown.
            f"stopsignal={'INT' if name == 'postgres' else 'TERM'}",
            "stopwaitsecs=45",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={s.log_dir / (name + '.log')}",
            "stdout_logfile_maxbytes=50MB",
            "stdout_logfile_backups=2",
        ]
    conf = s.run_dir / "supervisord.conf"
    conf.write_text("\n".join(parts) + "\n")
    return conf


def ctl(conf: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), *args],
        capture_output=True,
        text=True,
        check=check,
    )


def running(conf: Path) -> bool:
    return conf.exists() and ctl(conf, "pid").returncode == 0


def http_json(port: int, path: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except (urllib.error.URLError, OSError, ValueError):
        return None


def health(s: Stack) -> dict[str, bool]:
    bridge = http_json(s.bridge_health_port, "/health")
    jobs = http_json(s.stream_web_port, "/health")
    return {
        "postgres": s.postgres_ready(),
        "mosquitto": port_open(s.mqtt_port),
        "kafka": s.kafka_ready(),
        "hive_metastore": port_open(s.metastore_port),
        "trino": s.trino_ready(),
        "mqtt_bridge": bool(bridge and bridge.get("healthy")),
        "stream_jobs": bool(jobs and jobs.get("healthy") and jobs.get("sql_views") == "ready"),
    }


def up() -> None:
    s = stack()
    s.kafka_format()
    s.metastore_init()
    conf = supervisor_conf(s)
    if running(conf):
        ctl(conf, "update")
        ctl(conf, "start", "all")
    else:
        subprocess.run(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)], check=True
        )
    print("waiting for the services to be healthy ...", flush=True)
    try:
        wait_for(lambda: all(health(s).values()), 180, "the stack")
    except StackError:
        status()
        raise
    status()
    print(
        f"\nMQTT     127.0.0.1:{s.mqtt_port}, topic 'sensors' "
        f"(mosquitto_sub -p {s.mqtt_port} -t sensors -v)\n"
        f"Kafka    {s.bootstrap}, topics {topics.READINGS}, {topics.DEAD_LETTERS}, "
        f"{topics.SENSORS}, {topics.READINGS_1M}\n"
        f"Tables   Apache Iceberg in {s.lake_url}/warehouse (Parquet), catalogued in the "
        f"Hive Metastore thrift://127.0.0.1:{s.metastore_port}\n"
        f"SQL      Trino http://127.0.0.1:{s.trino_port}, catalog iceberg, schemas raw and "
        f"curated (make sql)\n"
        f"Health   http://127.0.0.1:{s.bridge_health_port}/health (bridge), "
        f"http://127.0.0.1:{s.stream_web_port}/health (stream jobs)\n"
        f"Logs     {s.log_dir} (make logs); stop with make down (data is kept)"
    )


def down() -> None:
    conf = stack().run_dir / "supervisord.conf"
    if not running(conf):
        print("not running")
        return
    pid_file = conf.parent / "supervisord.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    ctl(conf, "shutdown")
    # supervisord stops answering before it has stopped its programs and exited
    wait_for(lambda: pid is None or not Path(f"/proc/{pid}").exists(), 120, "supervisord shutdown")
    print("stopped; data kept in", DATA)


def status() -> None:
    s = stack()
    conf = s.run_dir / "supervisord.conf"
    if not running(conf):
        print("not running (make up)")
        return
    print(ctl(conf, "status").stdout.rstrip())
    for name, ok in health(s).items():
        print(f"  {name:<20} {'healthy' if ok else 'NOT healthy'}")


def logs(follow: bool) -> None:
    files = sorted(stack().log_dir.glob("*.log"))
    if not files:
        print("no logs yet (make up)")
        return
    cmd = ["tail", "-n", "20", *(["-F"] if follow else []), *map(str, files)]
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(cmd, check=False)


def sql() -> None:
    """A Trino CLI on the iceberg catalog (Java 24+, as the server)."""
    s = stack()
    java_home = os.environ.get("TRINO_JAVA_HOME", versions()["TRINO_JAVA_HOME"])
    os.execv(
        f"{java_home}/bin/java",
        [
            "java",
            "-jar",
            str(trino_cli()),
            "--server",
            f"http://127.0.0.1:{s.trino_port}",
            "--catalog",
            "iceberg",
            "--schema",
            "raw",
            "--user",
            os.environ.get("USER", "analyst"),
        ],
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "logs", "sql"])
    parser.add_argument("-f", "--follow", action="store_true", help="logs: keep following")
    args = parser.parse_args()
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down()
        elif args.command == "status":
            status()
        elif args.command == "sql":
            sql()
        else:
            logs(args.follow)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
