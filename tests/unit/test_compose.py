"""docker-compose.yml is for users without our tooling: keep it valid and in line
with the local stack (same config files, pinned images, healthchecks)."""

import shutil
import subprocess

import pytest
import yaml

from local.services import ROOT


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        assert "healthcheck" in service, name


def test_brokers_use_the_same_config_files_as_the_local_stack(compose):
    mounts = [v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", [])]
    assert "./mosquitto/mosquitto.conf" in mounts
    assert "./kafka/server.properties" in mounts
    assert "./hive-metastore/conf/metastore-site.xml" in mounts
    assert "./trino/etc/catalog" in mounts and "./trino/etc/config.properties" in mounts


def test_every_image_is_built_here(compose):
    # No image from a registry we cannot test against: each service builds its own
    # from a Dockerfile of this repository (pins: tests/unit/test_compose_pins.py).
    for name, service in compose["services"].items():
        build = service["build"]
        if not isinstance(build, dict):
            build = {"context": build}
        dockerfile = ROOT / build["context"] / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), name
        # A stage of a multi-stage Dockerfile: it must exist there.
        if "target" in build:
            assert f" AS {build['target']}\n" in dockerfile.read_text(), (name, build["target"])
        assert service["image"].startswith("iot-platform/"), name


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="make system-deps installs it")
def test_compose_file_is_valid():
    subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        check=True,
        cwd=ROOT,
    )


def networks_of(service):
    return set(service.get("networks", ["default"]))


def test_the_metastore_and_its_database_are_reached_by_trino_and_the_jobs_alone(compose):
    services = compose["services"]
    assert compose["networks"]["catalog"]["internal"] is True
    on_catalog = {n for n, s in services.items() if "catalog" in networks_of(s)}
    assert on_catalog == {"postgres", "hive-metastore", "trino", "stream_jobs", "s3"}
    for name in ("postgres", "hive-metastore"):
        assert networks_of(services[name]) == {"catalog"}, name
        assert "ports" not in services[name], name


def test_only_mqtt_is_published_beyond_the_hosts_loopback_by_default(compose):
    import re

    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if name == "mqtt_broker":
                continue
            bind = re.match(r"\$\{HOST_\w+_BIND:-([\d.]+)\}:|([\d.]+):", port)
            assert bind and "127.0.0.1" in bind.groups(), (name, port)


def test_each_service_mounts_its_own_mqtt_login_only(compose):
    services = compose["services"]
    mounts = {n: {v.split(":")[0] for v in s.get("volumes", [])} for n, s in services.items()}
    assert {n for n, m in mounts.items() if "mqtt-keys" in m} == {"mqtt-accounts"}
    assert {n for n, m in mounts.items() if "bridge-login" in m} == {"mqtt-accounts", "mqtt_bridge"}
    assert {n for n, m in mounts.items() if "generator-login" in m} == {
        "mqtt-accounts",
        "iot_data_generator",
    }


def test_each_trino_client_mounts_its_own_login_only(compose):
    services = compose["services"]
    mounts = {n: {v.split(":")[0] for v in s.get("volumes", [])} for n, s in services.items()}
    assert {n for n, m in mounts.items() if "trino-keys" in m} == {"trino-accounts"}
    assert {n for n, m in mounts.items() if "trino-auth" in m} == {"trino-accounts", "trino"}
    for volume, service in (
        ("jobs-trino-login", "stream_jobs"),
        ("portal-trino-login", "portal"),
        ("quality-trino-login", "quality"),
        ("superset-trino-login", "superset"),
    ):
        assert {n for n, m in mounts.items() if volume in m} == {"trino-accounts", service}
        assert services[service]["environment"]["SECRETS_DIR"] == "/run/iot-secrets"
    # Trino waits for its files; its host port is the TLS one.
    trino = services["trino"]
    assert trino["depends_on"]["trino-accounts"] == {"condition": "service_completed_successfully"}
    assert trino["ports"] == ["${HOST_TRINO_BIND:-127.0.0.1}:${HOST_TRINO_PORT:-8443}:8443"]
    assert services["portal"]["environment"]["TRINO_CATALOG"] == "lake"
