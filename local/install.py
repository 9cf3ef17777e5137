"""What this machine needs to run the stack: the Java services' artefacts, fetched
once from Maven Central into the cache, and the programs Debian's packages install.

Each function returns the path or program it names, there to use, or raises a
StackError that says what to install (trino_java_home only says where to look). An
artefact is fetched at its first use only: its cache directory (IOT_CACHE_DIR,
default ~/.cache/iot-platform) is named by its versions and is taken for complete
only once marked so, so an interrupted fetch is done again. Nothing here depends on
a stack's ports or data: every copy of the platform on this machine shares it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from local.common import ROOT, StackError, versions

CACHE = Path(os.environ.get("IOT_CACHE_DIR", Path.home() / ".cache" / "iot-platform"))


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
    # password-authenticators: the password file that logins are checked against
    plugins = ("hive", "iceberg", "kafka", "password-authenticators")
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


def trino_jdbc() -> Path:
    """Trino's JDBC driver (what DBeaver downloads), a single jar without dependencies."""
    v = versions()
    jar = CACHE / f"trino-jdbc-{v['TRINO_VERSION']}.jar"
    if not jar.exists():
        _maven_artifact(f"io.trino:trino-jdbc:{v['TRINO_VERSION']}:jar", CACHE)
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


def mosquitto_bin() -> str:
    """Debian's Mosquitto broker."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise StackError("Mosquitto is missing: apt-get install mosquitto")
    return binary


def trino_java_home() -> str:
    """Where the Java 24+ that Trino runs on is: TRINO_JAVA_HOME, else versions.env's.
    Whether one is there is for the caller to check."""
    return os.environ.get("TRINO_JAVA_HOME", versions()["TRINO_JAVA_HOME"])
