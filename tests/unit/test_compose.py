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
