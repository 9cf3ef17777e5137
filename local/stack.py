"""`make up / down / status / logs`: the whole platform on this machine, under supervisord.

supervisord restarts a service that exits (the bridge exits on purpose when
Kafka refuses a record for good, so that MQTT resends what it did not ack).
Data stays in ./data across `make down` / `make up`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
import urllib.request

from iot_common import topics
from local import figures, mqtt_auth, supervisor, trino_auth
from local.common import ROOT, StackError, dotenv, ensure_secrets, wait_for
from local.install import trino_cli, trino_java_home
from local.services import SERVICES, SUPERSET_PYTHON, SUPERSET_SECRETS, Stack, health

DATA = ROOT / "data"

# `make up FAULTS=1`: the generator injects every kind of fault, for a demonstration
# of the quality indicator, the statuses and the Great Expectations suites: a few
# malformed, duplicate, late and out-of-range readings from every sensor (about 0.97:
# still ok, and the suites fail), Sensor 4's clock 30 s behind (all its readings late:
# degraded), Sensor 5 silent after 5 minutes.
DEMO_FAULTS = {
    "FAULT_MALFORMED": "0.005",
    "FAULT_DUPLICATE": "0.005",
    "FAULT_LATE": "0.005",
    "FAULT_OUT_OF_RANGE": "0.01",
    "FAULT_SILENT_SENSORS": "Sensor 5",
    "FAULT_SILENT_AFTER_SECONDS": "300",
    "FAULT_CLOCK_SKEW_SECONDS": '{"Sensor 4": -30}',
}


def stack(faults: bool = False) -> Stack:
    """The local stack; LAKE_URL=s3://... with S3_ENDPOINT_URL and AWS keys puts the lake on S3."""
    env = os.environ
    secrets = {**dotenv(), **env}
    return Stack(
        DATA,
        # .env's (`make up` writes them); at random only where no broker is started.
        mqtt_credentials=mqtt_auth.Credentials.from_env_or_random(secrets),
        trino_credentials=trino_auth.Credentials.from_env_or_random(secrets),
        lake_url=env.get("LAKE_URL", ""),
        s3_endpoint=env.get("S3_ENDPOINT_URL", ""),
        s3_key=env.get("AWS_ACCESS_KEY_ID", ""),
        s3_secret=env.get("AWS_SECRET_ACCESS_KEY", ""),
        env=dict(DEMO_FAULTS) if faults else {},
    )


def up(faults: bool = False) -> None:
    names = (
        mqtt_auth.SECRETS
        + trino_auth.SECRETS
        + (SUPERSET_SECRETS if SUPERSET_PYTHON.exists() else ())
    )
    added = ensure_secrets(names)
    if added:
        print(f"made {', '.join(added)} at random, in .env (not committed)")
    s = stack(faults)
    for service in SERVICES:
        if service.prepare is not None and service.enabled():
            service.prepare(s)
    conf = supervisor.write_conf(s)
    supervisor.start(conf)
    print("waiting for the services to be healthy ...", flush=True)
    try:
        # Superset imports its dashboards once Trino and the views are there.
        wait_for(
            lambda: all(health(s).values()), 420 if SUPERSET_PYTHON.exists() else 180, "the stack"
        )
    except StackError:
        status()
        raise
    # The generator last: the bridge's session now exists, the broker keeps every reading.
    supervisor.start_after_ready(conf)
    status()
    print(
        f"\nPortal   http://localhost:{s.portal_port}/ (sensor status, quality, the catalogue)\n"
        f"MQTT     127.0.0.1:{s.mqtt_port}, topic 'sensors' (an account each: "
        f"docs/security.md; a device's password: make device-password SENSOR='Sensor 1')\n"
        f"Kafka    {s.bootstrap}, topics {topics.READINGS}, {topics.DEAD_LETTERS}, "
        f"{topics.SENSORS}, {topics.READINGS_1M}, {topics.QUALITY_1M}, {topics.QUALITY_STATUS}\n"
        f"Tables   Apache Iceberg in {s.lake_url}/warehouse (Parquet), catalogued in the "
        f"Hive Metastore thrift://127.0.0.1:{s.metastore_port}\n"
        f"SQL      Trino https://127.0.0.1:{s.trino_https_port} (its certificate: "
        f"{os.path.relpath(s.trino_ca_file)}"
        f"); BI login {trino_auth.BI_USER}, password TRINO_BI_PASSWORD in .env, catalog "
        f"{trino_auth.BI_CATALOG}, schemas raw and curated (make sql LOGIN=bi; admin: make sql)\n"
        f"Health   http://127.0.0.1:{s.bridge_health_port}/health (bridge), "
        f"http://127.0.0.1:{s.stream_web_port}/health (stream jobs)\n"
        f"Logs     {s.log_dir} (make logs); stop with make down (data is kept)"
    )
    if SUPERSET_PYTHON.exists():
        env = s.superset_env()
        print(
            f"Superset http://localhost:{s.superset_port}/ (dashboards: IoT ...), login "
            f"{env['SUPERSET_ADMIN_USER']}, password SUPERSET_ADMIN_PASSWORD in .env"
        )
    else:
        print("Superset not installed: make superset (BI dashboards)")


def down() -> None:
    conf = supervisor.conf_path(stack())
    if not supervisor.running(conf):
        print("not running")
        return
    supervisor.shutdown(conf)
    print("stopped; data kept in", DATA)


def status() -> None:
    s = stack()
    conf = supervisor.conf_path(s)
    if not supervisor.running(conf):
        print("not running (make up)")
        return
    print(supervisor.ctl(conf, "status").stdout.rstrip())
    for name, ok in health(s).items():
        print(f"  {name:<20} {'healthy' if ok else 'NOT healthy'}")
    urls = {
        "generator": f"http://127.0.0.1:{s.generator_metrics_port}/metrics",
        "bridge": f"http://127.0.0.1:{s.bridge_health_port}/metrics",
        "jobs": f"http://127.0.0.1:{s.stream_web_port}/metrics",
    }
    first = {k: _scrape(u) for k, u in urls.items()}
    time.sleep(STATUS_SECONDS)
    second = {k: _scrape(u) for k, u in urls.items()}

    def pair(k: str) -> tuple[str, str] | None:
        a, b = first[k], second[k]
        return (a, b) if a is not None and b is not None else None

    print(f"figures (rates over {STATUS_SECONDS:.0f} s; all of them: {', '.join(urls.values())})")
    broker_log = s.log_dir / "mosquitto.log"
    refused = figures.refused_logins(broker_log.read_text(errors="replace"))
    print(f"  broker        {refused:,} logins refused (not authorised, in {broker_log})")
    lines = figures.summary(
        pair("bridge"), pair("jobs"), STATUS_SECONDS, generator=pair("generator")
    )
    print("\n".join(lines))


STATUS_SECONDS = 2.0


def _scrape(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()  # type: ignore[no-any-return]
    except OSError:
        return None


def logs(follow: bool) -> None:
    files = sorted(stack().log_dir.glob("*.log"))
    if not files:
        print("no logs yet (make up)")
        return
    cmd = ["tail", "-n", "20", *(["-F"] if follow else []), *map(str, files)]
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(cmd, check=False)


def sql(user: str = trino_auth.ADMIN_USER) -> None:
    """A Trino CLI (Java 24+, as the server) logged in as `user` over TLS: the admin
    on the iceberg catalog, a BI login on its read-only catalog lake."""
    s = stack()
    java_home = trino_java_home()
    catalog = "iceberg" if user in trino_auth.ADMINS else trino_auth.BI_CATALOG
    # The CLI reads the password from TRINO_PASSWORD (not the command line, which
    # every user of the machine can read).
    os.environ["TRINO_PASSWORD"] = s.trino_credentials.password(user)
    os.execv(
        f"{java_home}/bin/java",
        [
            "java",
            "-jar",
            str(trino_cli()),
            "--server",
            f"https://127.0.0.1:{s.trino_https_port}",
            "--truststore-path",
            str(s.trino_ca_file),
            "--user",
            user,
            "--password",
            "--catalog",
            catalog,
            "--schema",
            "raw",
        ],
    )


def superset_export() -> None:
    """The running Superset's dashboards back into bi/dashboards (its own virtualenv)."""
    if not SUPERSET_PYTHON.exists():
        raise StackError("Superset is not installed: make superset")
    s = stack()
    script = str(ROOT / "bi" / "superset_service.py")
    done = subprocess.run(
        [str(SUPERSET_PYTHON), script, "export"],
        env={**os.environ, **s.superset_env()},
        check=False,
    )
    if done.returncode != 0:
        raise StackError("the export failed (above)")


def mqtt_accounts() -> None:
    """The broker's accounts again (after a change to the sensor list or to .env's
    MQTT secrets), reloaded by the running broker without a restart."""
    s = stack()
    if not (s.run_dir / "mosquitto.pid").exists():
        raise StackError("the broker is not running (make up)")
    s.reload_mqtt_auth()
    print(f"{len(s.mqtt_accounts())} MQTT accounts written to {s.mqtt_auth_dir}; broker reloaded")


def device_password(sensor_id: str) -> str:
    """A device's MQTT password, derived from .env's MQTT_DEVICE_SECRET."""
    if not sensor_id:
        raise StackError("name the sensor: make device-password SENSOR='Sensor 1'")
    try:
        credentials = mqtt_auth.Credentials.from_env({**dotenv(), **os.environ})
    except ValueError as exc:
        raise StackError(str(exc)) from None
    return credentials.device_password(sensor_id)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    parser.add_argument(
        "command",
        choices=[
            "up",
            "down",
            "status",
            "logs",
            "sql",
            "superset-export",
            "mqtt-accounts",
            "device-password",
        ],
    )
    parser.add_argument("--sensor", help="device-password: the sensor's id")
    parser.add_argument(
        "--as", dest="login", default=trino_auth.ADMIN_USER, help="sql: the Trino login"
    )
    parser.add_argument("-f", "--follow", action="store_true", help="logs: keep following")
    parser.add_argument(
        "--faults", action="store_true", help="up: the generator injects faults (a demo)"
    )
    args = parser.parse_args()
    try:
        if args.command == "up":
            up(args.faults)
        elif args.command == "down":
            down()
        elif args.command == "status":
            status()
        elif args.command == "sql":
            sql(args.login)
        elif args.command == "superset-export":
            superset_export()
        elif args.command == "mqtt-accounts":
            mqtt_accounts()
        elif args.command == "device-password":
            print(device_password(args.sensor or ""))
        else:
            logs(args.follow)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
