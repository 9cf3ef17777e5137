"""Apache Superset as a service of the stack: prepare it, then serve.

Run by .venv-superset's Python (local/services.py: `make up` and the tests start it
the same way). First its metadata database, the admin user, and the dashboards kept
as code in bi/dashboards, imported anew; then gunicorn serves Superset's web
application in this process's place. `superset_service.py export` writes the
dashboards as Superset has them back into bi/dashboards (`make superset-export`).
The environment is that of superset_config.py
and:

  SUPERSET_ADMIN_USER, SUPERSET_ADMIN_PASSWORD   the admin login (.env)
  SUPERSET_TRINO_URI       trino://<user>@<host>:<port>/<catalog> of this stack
  SUPERSET_TRINO_PASSWORD  that user's Trino password (then HTTPS; empty: none)
  SUPERSET_TRINO_CA_FILE   the certificate Trino's HTTPS is trusted by (Trino's own)
  SECRETS_DIR              else files trino_password and trino_ca_file there (compose)
  RAW_SCHEMA, CURATED_SCHEMA   the schemas our tables are in (default raw, curated)
  SUPERSET_HOST, SUPERSET_PORT   where it listens (127.0.0.1:8088; compose: 0.0.0.0)

Guarantees: the schema migrations and `superset init` run once per Superset version
(a stamp file beside the metadata database); the admin exists with the password of
.env (set again at every start, so a rotated password takes effect); the bundle's
database, datasets, charts and dashboards are imported with overwrite, so what runs
is what bi/dashboards says (a dashboard changed in the browser and not exported
back is replaced). The bundle names the schemas raw and curated and the connection
of `make up`; both are rewritten here for this stack, in memory. The import reads
the tables and views through Trino, so it waits for them (it is tried again every
IMPORT_RETRY_S until IMPORT_TIMEOUT_S); the web server starts after it, so a
healthy Superset has its dashboards.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
import zipfile
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

BUNDLE = Path(__file__).resolve().parent / "dashboards"
BIN = Path(sys.executable).parent
SUPERSET = [str(BIN / "superset")]
IMPORT_RETRY_S = 10
IMPORT_TIMEOUT_S = 900


class SetupError(Exception):
    """Superset could not be prepared; the message says which step and why."""


def _superset(*args: str, secret: str | None = None) -> None:
    """One Superset CLI command; fails with its output (a secret is never echoed)."""
    done = subprocess.run(
        [*SUPERSET, *args], capture_output=True, text=True, env=os.environ, check=False
    )
    shown = " ".join(a if a != secret else "***" for a in args)
    if done.returncode != 0 or "Traceback" in done.stderr:
        raise SetupError(f"superset {shown} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")


def retarget(
    rel: str,
    doc: dict[str, Any],
    uri: str,
    schemas: dict[str, str],
    connect_args: dict[str, Any] | None = None,
) -> None:
    """Point one file of the bundle (path `rel` inside it) at a connection URI and at
    other schema names (`schemas`: old name -> new): both ways, import and export.
    `connect_args`: the Trino client's (the certificate to trust) on import; none
    on export, so that no machine's path lands in the repository."""
    if rel.startswith("databases/"):
        doc["sqlalchemy_uri"] = uri
        engine = doc.setdefault("extra", {}).setdefault("engine_params", {})
        if connect_args:
            engine["connect_args"] = connect_args
        else:
            engine.pop("connect_args", None)
    elif rel.startswith("datasets/"):
        doc["schema"] = schemas.get(doc["schema"], doc["schema"])
        if doc.get("sql"):
            pattern = re.compile(r"\b(" + "|".join(map(re.escape, schemas)) + r")\.")
            doc["sql"] = pattern.sub(lambda m: schemas[m.group(1)] + ".", doc["sql"])


def bundle(uri: str, schemas: dict[str, str], connect_args: dict[str, Any] | None = None) -> bytes:
    """bi/dashboards as an import ZIP, with this stack's connection URI (its password
    in it: the import keeps it encrypted in Superset's database, apart from the URI)
    and schema names."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for path in sorted(BUNDLE.rglob("*.yaml")):
            rel = path.relative_to(BUNDLE).as_posix()
            doc = yaml.safe_load(path.read_text())
            retarget(rel, doc, uri, schemas, connect_args)
            zf.writestr(f"bundle/{rel}", yaml.safe_dump(doc, sort_keys=False))
    return out.getvalue()


def in_scope(dashboard: dict[str, Any]) -> None:
    """Set each native filter's chartsInScope from its scope and the dashboard's charts.
    The import maps a filter's scope to the new chart ids but leaves chartsInScope
    (derived, and what the browser shows) as it was, stale in the next export."""
    placed = {
        v["meta"]["chartId"]
        for v in dashboard.get("position", {}).values()
        if isinstance(v, dict) and v.get("type") == "CHART"
    }
    for f in dashboard.get("metadata", {}).get("native_filter_configuration", []):
        scope = f.get("scope", {})
        if scope.get("rootPath") == ["ROOT_ID"]:
            f["chartsInScope"] = sorted(placed - set(scope.get("excluded", [])))


def export() -> int:
    """Superset's dashboards (and their charts, datasets and connection) back into
    bi/dashboards, as Superset exports them, with the connection and the schemas of
    `make up` (a change made in the browser becomes a reviewable diff)."""
    home = Path(os.environ["SUPERSET_HOME"])
    zipped = home / "export.zip"
    zipped.unlink(missing_ok=True)
    try:
        _superset("export-dashboards", "--dashboard-file", str(zipped))
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    committed = yaml.safe_load(next(BUNDLE.glob("databases/*.yaml")).read_text())
    back = {
        os.environ.get("RAW_SCHEMA", "raw"): "raw",
        os.environ.get("CURATED_SCHEMA", "curated"): "curated",
    }
    for old in BUNDLE.rglob("*.yaml"):
        if old.name != "metadata.yaml":  # kept: only its timestamp would change
            old.unlink()
    with zipfile.ZipFile(zipped) as zf:
        for name in zf.namelist():
            # Superset names a file by its title and this install's id ("..._4.yaml"):
            # the id goes, so that the same dashboard keeps its file across installs.
            rel = re.sub(r"_\d+\.yaml$", ".yaml", name.split("/", 1)[1])
            if rel == "metadata.yaml":
                continue
            doc = yaml.safe_load(zf.read(name))
            retarget(rel, doc, committed["sqlalchemy_uri"], back)
            if rel.startswith("dashboards/"):
                in_scope(doc)
            out = BUNDLE / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    print("exported into", BUNDLE, "(git diff shows what changed)")
    return 0


def trino_connection() -> tuple[str, dict[str, Any]]:
    """SUPERSET_TRINO_URI with SUPERSET_TRINO_PASSWORD in it (the Trino dialect then
    speaks HTTPS with that login), and the client's arguments: the certificate to
    trust, SUPERSET_TRINO_CA_FILE."""
    uri = os.environ["SUPERSET_TRINO_URI"]
    password = os.environ.get("SUPERSET_TRINO_PASSWORD", "") or _secret("trino_password")
    if not password:
        return uri, {}
    scheme, _, rest = uri.partition("://")
    user, _, where = rest.rpartition("@")
    uri = f"{scheme}://{user}:{quote(password, safe='')}@{where}"
    ca = os.environ.get("SUPERSET_TRINO_CA_FILE", "") or _secret("trino_ca_file")
    if ca:
        # requests lets REQUESTS_CA_BUNDLE win over a connection's `verify`
        # (psf/requests#3829): where it is set, it must name Trino's certificate.
        os.environ["REQUESTS_CA_BUNDLE"] = ca
    # The Trino dialect sends the password but leaves the scheme to these arguments.
    return uri, {"http_scheme": "https", **({"verify": ca} if ca else {})}


def _secret(name: str) -> str:
    """A file of SECRETS_DIR (how compose hands over the Trino login), else ''."""
    folder = os.environ.get("SECRETS_DIR", "")
    path = Path(folder) / name
    return path.read_text().strip() if folder and path.is_file() else ""


def main() -> int:
    if sys.argv[1:] == ["export"]:
        return export()
    home = Path(os.environ["SUPERSET_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    user = os.environ.get("SUPERSET_ADMIN_USER", "admin")
    password = os.environ.get("SUPERSET_ADMIN_PASSWORD", "")
    if not password:
        print("error: SUPERSET_ADMIN_PASSWORD is not set (make superset writes one into .env)")
        return 1
    try:
        stamp = home / "initialised-for"
        current = version("apache-superset")
        if not stamp.exists() or stamp.read_text() != current:
            _superset("db", "upgrade")
            _superset("init")
            stamp.write_text(current)
        _superset(
            "fab",
            "create-admin",
            *("--username", user, "--firstname", "Platform", "--lastname", "Admin"),
            *("--email", f"{user}@localhost", "--password", password),
            secret=password,
        )
        _superset(
            "fab", "reset-password", "--username", user, "--password", password, secret=password
        )
        zipped = home / "dashboards.zip"
        schemas = {
            "raw": os.environ.get("RAW_SCHEMA", "raw"),
            "curated": os.environ.get("CURATED_SCHEMA", "curated"),
        }
        uri, connect_args = trino_connection()
        zipped.write_bytes(bundle(uri, schemas, connect_args))
        deadline = time.monotonic() + IMPORT_TIMEOUT_S
        while True:
            try:
                _superset("import-dashboards", "--path", str(zipped), "--username", user)
                break
            except SetupError as exc:
                if time.monotonic() > deadline:
                    raise
                last = str(exc).strip().splitlines()[-1]
                print(f"dashboards not imported yet (Trino or the views not ready?): {last}")
                time.sleep(IMPORT_RETRY_S)
        print("dashboards imported from", BUNDLE, flush=True)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    serve()
    return 0


def serve() -> None:
    """gunicorn in this process's place: one worker with threads (one machine; the
    memory of a second worker buys nothing at this load)."""
    host = os.environ.get("SUPERSET_HOST", "127.0.0.1")
    port = os.environ.get("SUPERSET_PORT", "8088")
    argv = [
        str(BIN / "gunicorn"),
        *("--bind", f"{host}:{port}", "--workers", "1", "--worker-class", "gthread"),
        *("--threads", "8", "--timeout", "120", "--chdir", os.environ["SUPERSET_HOME"]),
        # Superset's own advice: its URLs carry whole chart definitions.
        *("--limit-request-line", "0", "--limit-request-field_size", "0"),
        "superset.app:create_app()",
    ]
    os.execv(argv[0], argv)


if __name__ == "__main__":
    sys.exit(main())
