"""The metastore's database: a PostgreSQL cluster in a directory of its own.

The server listens on 127.0.0.1 and on a socket in `<root>/sock`; local socket
connections are trusted, TCP ones need a password. As root it runs as Debian's
`postgres` user. The cluster is made once (a directory that has one is left
alone), and the metastore's role and database are made or brought up to date
without harm when they are there already.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from local.common import wait_for
from local.install import as_postgres, postgres_bin


@dataclass(frozen=True)
class Postgres:
    """A cluster in `root` (data/ and sock/), served on `port`."""

    root: Path
    port: int

    def command(self) -> list[str]:
        return [
            *as_postgres(),
            str(postgres_bin() / "postgres"),
            "-D",
            str(self.root / "data"),
            "-c",
            "listen_addresses=127.0.0.1",
            "-p",
            str(self.port),
            "-k",
            str(self.root / "sock"),
        ]

    def ready(self) -> bool:
        return (
            subprocess.run(
                [
                    str(postgres_bin() / "pg_isready"),
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                ],
                check=False,
            ).returncode
            == 0
        )

    def init(self) -> None:
        """The cluster, once (local socket: trust; TCP: password)."""
        root = self.root
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
    def running(self) -> Iterator[None]:
        """PostgreSQL answering for the duration: the running one, or one started
        for this and stopped after (fast shutdown)."""
        if self.ready():
            yield
            return
        proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for(self.ready, 30, "PostgreSQL")
            yield
        finally:
            proc.send_signal(signal.SIGINT)  # fast: TERM waits for every client to leave
            proc.wait(30)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """One statement through the local socket, as `postgres`; its rows, unaligned."""
        out = subprocess.run(
            [
                str(postgres_bin() / "psql"),
                "-h",
                str(self.root / "sock"),
                "-p",
                str(self.port),
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

    def metastore_database(self, password: str) -> None:
        """The role `hive` with this password, and its database `metastore` (idempotent)."""
        quoted = password.replace("'", "''")
        if self.psql("SELECT 1 FROM pg_roles WHERE rolname = 'hive'") != "1":
            self.psql(f"CREATE ROLE hive LOGIN PASSWORD '{quoted}'")
        else:
            self.psql(f"ALTER ROLE hive PASSWORD '{quoted}'")
        if self.psql("SELECT 1 FROM pg_database WHERE datname = 'metastore'") != "1":
            self.psql("CREATE DATABASE metastore OWNER hive")
