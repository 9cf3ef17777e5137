"""Trino's security, rendered here for Trino 476: TLS, password logins, and what each
login may do (docs/security.md).

What the files allow, and nothing else:

- every client speaks HTTPS on Trino's TLS port with a user and password
  (`http-server.authentication.type=PASSWORD`); Trino's plain HTTP port carries its
  own internal traffic only (signed with the shared secret) and refuses logins;
- the admins (`ADMINS`: `iot-admin` for operators and tests, `iot-stream-jobs`, which
  creates the views and runs the tables' maintenance) may do everything, in every
  catalog;
- every other login is a BI user (`bi` for the analysts; `iot-portal`, `iot-quality`
  and `iot-superset`, the services that only read): it sees one catalog, `lake`
  (`BI_CATALOG`), the same Iceberg tables through a connector that is read-only
  (`iceberg.security=read_only`), and may SELECT in its `raw` and `curated` schemas and
  read the JDBC metadata in `system`; nothing else: no other catalog, no CREATE,
  INSERT, ALTER, DROP or procedure, and no other user's queries.

Why a catalog of its own for BI, not a read-only rule on `iceberg`: Trino 476's
file-based access control does not check table procedures (`ALTER TABLE ... EXECUTE
optimize`, trinodb/trino#22874), and the read-only connector refuses them. The
views in `curated` run with their owner's rights (SECURITY DEFINER), so a BI user
reads them without any right on `iceberg` or `kafka`.

Files (`render` writes them into one directory, mode 0600, each rewritten only when
its content changes): `password.db` (Trino's file authenticator reads it again
within 5 s: `user:iterations:salt:hash`, PBKDF2-HMAC-SHA1, hex), `rules.json` (the
access-control file, read again within 5 s), `tls.pem` (the private key and a
self-signed certificate for localhost, 127.0.0.1 and the compose host name `trino`,
made once and kept), `ca.pem` (that certificate alone: what clients trust) and
`shared-secret` (`internal-communication.shared-secret`, which Trino requires once
logins are on).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from local.common import SecretSet, derived_secret, write_atomic

ADMIN_USER = "iot-admin"
JOBS_USER = "iot-stream-jobs"
BI_USER = "bi"
PORTAL_USER = "iot-portal"
QUALITY_USER = "iot-quality"
SUPERSET_USER = "iot-superset"
ADMINS = (ADMIN_USER, JOBS_USER)
USERS = (ADMIN_USER, JOBS_USER, BI_USER, PORTAL_USER, QUALITY_USER, SUPERSET_USER)
BI_CATALOG = "lake"
BI_SCHEMAS = "raw|curated"  # a regular expression: the schemas BI may read in `lake`
# .env's names: the operators' and the analysts' passwords, and the key every
# service account's password is derived from (each service is handed its own).
SECRETS = ("TRINO_ADMIN_PASSWORD", "TRINO_BI_PASSWORD", "TRINO_SERVICE_SECRET")

PASSWORD_FILE = "password.db"
RULES_FILE = "rules.json"
TLS_FILE = "tls.pem"
CA_FILE = "ca.pem"
SHARED_SECRET_FILE = "shared-secret"
SERVER_PROPERTIES = "server.properties"  # compose: what config.properties gets added
MODE = 0o600
ITERATIONS = 10_000  # PBKDF2 rounds: Trino's floor is 1,000
SALT_BYTES = 16
HASH_BYTES = 64
TLS_NAMES = ("localhost", "trino")
TLS_ADDRESSES = ("127.0.0.1",)


@dataclass(frozen=True)
class Credentials(SecretSet):
    """The secrets behind Trino's logins (from .env, or at random)."""

    NAMES = SECRETS

    admin: str = field(repr=False)
    bi: str = field(repr=False)
    service_secret: str = field(repr=False)

    def password(self, user: str) -> str:
        """A login's password: the admins' and the analysts' from .env; a service
        account's derived from TRINO_SERVICE_SECRET and its name (rotating the key
        rotates them all)."""
        if user == ADMIN_USER:
            return self.admin
        if user == BI_USER:
            return self.bi
        return derived_secret(self.service_secret, f"trino:{user}")


def password_line(user: str, password: str, salt: bytes | None = None) -> str:
    """One line of Trino's password file (PBKDF2-HMAC-SHA1, as its file
    authenticator checks it)."""
    if not user or any(c in user for c in ":\n\r") or user != user.strip():
        raise ValueError(f"{user!r} cannot be a Trino login in a password file")
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha1", password.encode(), salt, ITERATIONS, HASH_BYTES)
    return f"{user}:{ITERATIONS}:{salt.hex()}:{digest.hex()}"


# The two kinds of line Trino's file authenticator reads (user names without ':'):
# PBKDF2 (`password_line`'s) and bcrypt (`htpasswd -B -C 10`'s).
_PBKDF2_LINE = re.compile(r"([^:\s][^:]*):([0-9]{4,7}):((?:[0-9a-f]{2})+):((?:[0-9a-f]{2})+)")
_BCRYPT_LINE = re.compile(r"([^:\s][^:]*):\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")


def password_matches(line: str, password: str) -> bool:
    """Whether `password` is the one a PBKDF2 password-file line was made from (False
    for any other line, however malformed)."""
    m = _PBKDF2_LINE.fullmatch(line)
    if m is None:
        return False
    _user, iterations, salt, digest = m.groups()
    got = hashlib.pbkdf2_hmac(
        "sha1", password.encode(), bytes.fromhex(salt), int(iterations), len(digest) // 2
    )
    return hmac.compare_digest(got.hex(), digest)


def rules(admins: tuple[str, ...] = ADMINS, bi_schemas: str = BI_SCHEMAS) -> dict[str, object]:
    """Trino's file-based access control rules (first match wins; no match: denied);
    `bi_schemas`: a regular expression of the schemas BI may read in `lake`."""
    admin = "|".join(admins)
    all_table_privileges = ["SELECT", "INSERT", "DELETE", "UPDATE", "OWNERSHIP", "GRANT_SELECT"]
    return {
        "catalogs": [
            {"user": admin, "allow": "all"},
            {"catalog": f"{BI_CATALOG}|system", "allow": "read-only"},
            {"allow": "none"},
        ],
        "schemas": [
            {"user": admin, "owner": True},
            {"owner": False},
        ],
        "tables": [
            {"user": admin, "privileges": all_table_privileges},
            {"catalog": BI_CATALOG, "schema": bi_schemas, "privileges": ["SELECT"]},
            # What JDBC's DatabaseMetaData reads (DBeaver's navigator).
            {"catalog": "system", "schema": "jdbc|metadata", "privileges": ["SELECT"]},
            {"privileges": []},
        ],
        "procedures": [
            {"user": admin, "privileges": ["EXECUTE"]},
            {"privileges": []},
        ],
        "queries": [
            {"user": admin, "allow": ["execute", "kill", "view"]},
            {"allow": ["execute"]},
        ],
        "system_information": [
            {"user": admin, "allow": ["read", "write"]},
        ],
    }


def _keep_lines(path: Path) -> dict[str, str]:
    """The password file's lines that Trino can read, by user (the last one of a user
    wins); any other line (hand-edited, cut short) is left out of the rewrite."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    return {
        m.group(1): line
        for line in text.splitlines()
        if (m := _PBKDF2_LINE.fullmatch(line) or _BCRYPT_LINE.fullmatch(line))
    }


def make_tls(folder: Path, names: tuple[str, ...] = TLS_NAMES) -> None:
    """A private key and a self-signed certificate for `names` and 127.0.0.1 (tls.pem:
    both, for Trino; ca.pem: the certificate, for clients), unless they exist."""
    if (folder / TLS_FILE).exists() and (folder / CA_FILE).exists():
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "iot-platform trino")])
    now = datetime.datetime.now(datetime.UTC)
    alt = [x509.DNSName(n) for n in names] + [
        x509.IPAddress(ipaddress.ip_address(a)) for a in TLS_ADDRESSES
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        # A self-signed certificate clients trust as its own issuer.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / TLS_FILE, key_pem + cert_pem, MODE)
    write_atomic(folder / CA_FILE, cert_pem, 0o644)


def render(
    folder: Path, creds: Credentials, users: tuple[str, ...] = USERS, bi_schemas: str = BI_SCHEMAS
) -> None:
    """Every file Trino's security needs, into `folder`. A login's line is kept while
    its password still matches (so an unchanged file is not rewritten), and so is
    every line of a login not ours (a BI user an operator added: docs/security.md);
    the certificate and the shared secret are made once."""
    folder.mkdir(parents=True, exist_ok=True)
    old = _keep_lines(folder / PASSWORD_FILE)
    lines = []
    for user in users:
        password = creds.password(user)
        line = old.get(user)
        if line is None or not password_matches(line, password):
            line = password_line(user, password)
        lines.append(line)
    lines += [line for user, line in old.items() if user not in users]
    write_atomic(folder / PASSWORD_FILE, "\n".join(lines) + "\n", MODE)
    write_atomic(
        folder / RULES_FILE, json.dumps(rules(bi_schemas=bi_schemas), indent=2) + "\n", MODE
    )
    shared = folder / SHARED_SECRET_FILE
    if not shared.exists():
        write_atomic(shared, secrets.token_urlsafe(48), MODE)
    make_tls(folder)


def server_properties(folder: Path, https_port: int) -> dict[str, str]:
    """What config.properties needs for TLS and logins, with the files in `folder`."""
    return {
        "http-server.https.enabled": "true",
        "http-server.https.port": str(https_port),
        "http-server.https.keystore.path": str(folder / TLS_FILE),
        "http-server.authentication.type": "PASSWORD",
        "internal-communication.shared-secret": (folder / SHARED_SECRET_FILE).read_text().strip(),
    }


def etc_files(folder: Path) -> dict[str, str]:
    """The other files of Trino's etc/ (name -> text) that point at `folder`."""
    return {
        "password-authenticator.properties": (
            f"password-authenticator.name=file\nfile.password-file={folder / PASSWORD_FILE}\n"
        ),
        "access-control.properties": (
            "access-control.name=file\n"
            f"security.config-file={folder / RULES_FILE}\n"
            "security.refresh-period=5s\n"
        ),
    }


# -- compose: the one-shot `trino-accounts` ----------------------------------------------


def resolve_secrets(env: Mapping[str, str], secrets_dir: Path) -> Credentials:
    """The secrets as compose's one-shot keeps them (local.common.kept_secrets)."""
    return Credentials.kept(env, secrets_dir)


def write_login(
    folder: Path, user: str, creds: Credentials, ca: Path, mounted_at: Path | None = None
) -> None:
    """A service's Trino login (files trino_user, trino_password) and the certificate
    it trusts (trino_ca_file names it where the service sees `folder`: `mounted_at`),
    for SECRETS_DIR."""
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "trino_user", user, MODE)
    write_atomic(folder / "trino_password", creds.password(user), MODE)
    write_atomic(folder / CA_FILE, ca.read_text(), 0o644)
    write_atomic(folder / "trino_ca_file", str((mounted_at or folder) / CA_FILE), MODE)


def main(argv: list[str] | None = None) -> int:
    """`python -m local.trino_auth --secrets-dir S --auth-dir D --login USER=DIR ...`:
    compose's one-shot `trino-accounts` (Trino's files in D, with server.properties
    and the etc/ files that point at them, for trino/entrypoint.sh; each USER's login
    in its DIR); with `--password USER`: that login's password."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m local.trino_auth", description=main.__doc__)
    parser.add_argument("--secrets-dir", type=Path, required=True)
    parser.add_argument("--auth-dir", type=Path)
    parser.add_argument(
        "--login", action="append", default=[], metavar="USER=DIR", help="repeatable"
    )
    parser.add_argument("--https-port", type=int, default=8443)
    parser.add_argument("--mounted-at", type=Path, help="where each service mounts its login's DIR")
    parser.add_argument("--password", metavar="USER", help="print it, nothing else")
    args = parser.parse_args(argv)
    creds = resolve_secrets(os.environ, args.secrets_dir)
    if args.password:
        print(creds.password(args.password))
        return 0
    if args.auth_dir is None:
        parser.error("--auth-dir is needed to write Trino's files")
    render(args.auth_dir, creds)
    # What trino/entrypoint.sh adds to Trino's etc/: the same settings `make up` sets.
    server = server_properties(args.auth_dir, args.https_port)
    text = "".join(f"{k}={v}\n" for k, v in server.items())
    write_atomic(args.auth_dir / SERVER_PROPERTIES, text, MODE)
    for name, body in etc_files(args.auth_dir).items():
        write_atomic(args.auth_dir / name, body, MODE)
    for item in args.login:
        user, _, folder = item.partition("=")
        if user not in USERS:
            parser.error(f"no Trino login {user!r}: one of {', '.join(USERS)}")
        write_login(Path(folder), user, creds, args.auth_dir / CA_FILE, args.mounted_at)
    print(f"{len(USERS)} Trino logins, rules and a certificate in {args.auth_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
