"""docker-compose.yml builds every image from a Dockerfile here with the pinned
versions of versions.env, passed as literal build args (compose cannot read
versions.env): they must be the same pins, and each Dockerfile must take them."""

import re

import pytest
import yaml

from local.services import ROOT, versions

# An image tagged with a version carries this pin's value.
IMAGE_PINS = {
    "kafka": "KAFKA_VERSION",
    "hive-metastore": "HIVE_VERSION",
    "trino": "TRINO_VERSION",
    "s3": "S3PROXY_VERSION",
}
NOT_A_PIN = {"EXTRA_CA_CERTS_B64"}  # a machine's CA certificates, from the environment


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def build_args(compose):
    for name, service in compose["services"].items():
        build = service.get("build")
        if isinstance(build, dict):
            yield (
                name,
                build,
                {k: v for k, v in build.get("args", {}).items() if k not in NOT_A_PIN},
            )


def test_build_args_are_the_pins_of_versions_env(compose):
    pins = versions()
    for name, _build, args in build_args(compose):
        for key, value in args.items():
            assert key in pins, f"{name}: build arg {key} is not in versions.env"
            assert str(value) == pins[key], f"{name}: {key}={value}, versions.env: {pins[key]}"


def test_every_version_pin_reaches_an_image(compose):
    used = {key for _name, _build, args in build_args(compose) for key in args}
    pins = {k for k in versions() if k.endswith("_VERSION")}
    assert pins <= used, f"pins no image is built with: {sorted(pins - used)}"


def test_each_dockerfile_takes_the_args_it_is_given(compose):
    for name, build, args in build_args(compose):
        dockerfile = ROOT / build["context"] / build.get("dockerfile", "Dockerfile")
        declared = set(re.findall(r"(?m)^ARG (\w+)", dockerfile.read_text()))
        assert set(args) | {"EXTRA_CA_CERTS_B64"} <= declared, (name, dockerfile)


def test_versioned_image_tags_match_the_pins(compose):
    pins = versions()
    for name, pin in IMAGE_PINS.items():
        image = compose["services"][name]["image"]
        assert image.endswith(f":{pins[pin]}"), (name, image)


def test_no_compose_v2_only_keys(compose):
    # Debian bookworm packages docker-compose 1.29 only, which rejects these.
    assert not {"name", "include"} & set(compose)
    for name, service in compose["services"].items():
        depends_on = service.get("depends_on", {})
        if isinstance(depends_on, dict):
            assert all(set(d) <= {"condition"} for d in depends_on.values()), name
        assert "start_interval" not in service.get("healthcheck", {}), name


def test_dockerfiles_build_with_the_legacy_builder():
    # No BuildKit-only syntax: docker-compose 1.29 builds through the legacy builder
    # here (no buildx), and a `# syntax=` line would pull a frontend image.
    for dockerfile in [ROOT / "Dockerfile", *ROOT.glob("*/Dockerfile")]:
        text = dockerfile.read_text()
        assert not re.search(r"(?mi)^#\s*syntax=", text), dockerfile
        assert "--mount" not in text and "<<" not in text, dockerfile


def test_superset_image_tag_is_the_superset_its_requirements_pin(compose):
    (pin,) = re.findall(r"(?m)^apache-superset==(\S+)$", (ROOT / "bi/requirements.txt").read_text())
    assert compose["services"]["superset"]["image"] == f"iot-platform/superset:{pin}"
