"""What every module of local/ shares: the checkout, the pinned versions, the one
error, and ports and waiting.

Imports nothing of local/ (and outside the standard library only python-dotenv), so
that any module here may import it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar, Self

from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parent.parent


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


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    """Return once `predicate()` is true; StackError after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise StackError(f"{what} did not become ready within {timeout_s:.0f} s")


DOTENV = ROOT / ".env"  # secrets of this machine; never committed (.gitignore)


def dotenv(path: Path = DOTENV) -> dict[str, str]:
    """The values of `.env` (missing file: empty), read by python-dotenv as the
    services' settings read it (pydantic-settings uses the same library)."""
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def ensure_secrets(names: tuple[str, ...], path: Path = DOTENV) -> list[str]:
    """Append a random value to `.env` for each of `names` it lacks or leaves empty
    (readable by its owner only; the last line of a name wins); the names added.
    Values already there (or set in the environment of the caller, as in CI) are
    kept. A missing `.env` starts as a copy of `.env.example`."""
    example = ROOT / ".env.example"
    if not path.exists() and path == DOTENV and example.exists():
        shutil.copyfile(example, path)
        path.chmod(0o600)
    have = dotenv(path)
    missing = [n for n in names if not have.get(n) and not os.environ.get(n)]
    if missing:
        with path.open("a") as f:
            f.writelines(f"{n}={new_secret()}\n" for n in missing)
        path.chmod(0o600)
    return missing


def write_atomic(path: Path, text: str, mode: int) -> None:
    """Write `text` to `path` with `mode` through a temporary file and a rename, so a
    reader sees the old file or the new one, never a part; unchanged content is not
    rewritten (only its mode set)."""
    data = text.encode("utf-8")
    try:
        unchanged = path.read_bytes() == data
    except OSError:
        unchanged = False
    if unchanged:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    done = False
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        done = True
    finally:
        if not done:
            os.unlink(tmp)


# -- secrets of the accounts (local.mqtt_auth, local.trino_auth) -------------------------


class SecretSet:
    """A set of secrets named in .env (NAMES, in the order of the subclass's fields,
    a frozen dataclass of strings): from the environment, at random, or as compose's
    one-shots keep them."""

    NAMES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *values: str) -> None:  # each subclass's dataclass __init__
        raise NotImplementedError

    @classmethod
    def random(cls) -> Self:
        return cls(*(new_secret() for _ in cls.NAMES))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        return cls(*secrets_in(env, cls.NAMES))

    @classmethod
    def from_env_or_random(cls, env: Mapping[str, str]) -> Self:
        return cls(*secrets_or_random(env, cls.NAMES))

    @classmethod
    def kept(cls, env: Mapping[str, str], folder: Path) -> Self:
        return cls(*kept_secrets(env, cls.NAMES, folder))


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def secrets_in(env: Mapping[str, str], names: tuple[str, ...]) -> list[str]:
    """The values of `names` in `env`, in order; ValueError naming those missing."""
    missing = [name for name in names if not env.get(name)]
    if missing:
        raise ValueError(f"{', '.join(missing)} missing: `make up` writes them into .env")
    return [env[name] for name in names]


def secrets_or_random(env: Mapping[str, str], names: tuple[str, ...]) -> list[str]:
    """`names` from `env` when all are set there (`make up` wrote them), else new random
    ones (where no service that checks them is started)."""
    if all(env.get(name) for name in names):
        return secrets_in(env, names)
    return [new_secret() for _ in names]


def kept_secrets(env: Mapping[str, str], names: tuple[str, ...], folder: Path) -> list[str]:
    """Each secret from the environment (.env, through compose) when set there, else
    the one made at a former start (a file in `folder`), else a new random one; all
    written back to `folder` (mode 0o600), so that later starts keep them."""
    values = []
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / name.lower()
        value = env.get(name) or (path.read_text().strip() if path.exists() else "")
        value = value or new_secret()
        write_atomic(path, value, 0o600)
        values.append(value)
    return values


def derived_secret(key: str, name: str) -> str:
    """A password derived from a key and a name (HMAC-SHA256, 18 bytes, URL-safe
    base64): a new account needs no new secret, and rotating the key rotates all."""
    mac = hmac.new(key.encode(), name.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:18]).decode()
