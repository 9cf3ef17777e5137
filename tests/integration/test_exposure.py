"""What the local stack exposes: every service we start listens on the loopback only
(MQTT, Kafka, PostgreSQL, the metastore, Trino, the bridge's and the stream jobs'
health and metrics), so nothing but this machine reaches them (docs/security.md)."""

import socket

import pytest

pytestmark = pytest.mark.integration


def outside_address() -> str:
    """This machine's address on its network (the one its default route leaves by)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.123", 9))  # no packet is sent: this only picks a route
        except OSError:
            pytest.skip("no network route: only the loopback exists here")
        address = str(s.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("no address besides the loopback")
    return address


def reachable(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) == 0


def test_every_service_listens_on_the_loopback_only(pipeline, sql):
    outside = outside_address()
    ports = {
        "mosquitto": pipeline.stack.mqtt_port,
        "kafka": pipeline.stack.kafka_port,
        "postgres": sql.stack.postgres_port,
        "metastore": sql.stack.metastore_port,
        "trino": sql.stack.trino_port,
        "trino https": sql.stack.trino_https_port,
        "bridge /health": int(pipeline.env["HEALTH_PORT"]),
        "stream jobs /health": int(pipeline.env["WEB_PORT"]),
    }
    for name, port in ports.items():
        assert reachable("127.0.0.1", port), f"{name} does not answer on the loopback"
        assert not reachable(outside, port), f"{name} answers on {outside}:{port}"
