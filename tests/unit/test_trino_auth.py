"""Trino's security files (local/trino_auth.py): the password file's lines as Trino's
file authenticator checks them, the rules, the certificate, and a rewrite that
changes only what changed."""

import hashlib
import json

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from local import trino_auth
from local.services import ROOT

CREDS = trino_auth.Credentials("admin-pw", "bi-pw", "service-key")


@given(st.text(min_size=1), st.binary(min_size=16, max_size=16))
def test_a_password_line_matches_its_password_and_no_other(password, salt):
    line = trino_auth.password_line("someone", password, salt)
    user, iterations, salt_hex, digest = line.split(":")
    assert (user, int(iterations), bytes.fromhex(salt_hex)) == ("someone", 10_000, salt)
    # What Trino's PBKDF2 check computes: PBKDF2WithHmacSHA1 over the hex-decoded salt,
    # as long as the stored hash.
    want = hashlib.pbkdf2_hmac("sha1", password.encode(), salt, 10_000, len(digest) // 2)
    assert digest == want.hex() and len(digest) == 128
    assert trino_auth.password_matches(line, password)
    assert not trino_auth.password_matches(line, password + "x")


@pytest.mark.parametrize("user", ["", "a:b", "a\nb", " padded"])
def test_a_name_the_password_file_would_misread_is_refused(user):
    with pytest.raises(ValueError, match="cannot be a Trino login"):
        trino_auth.password_line(user, "pw")


def test_service_passwords_are_derived_each_its_own_and_rotate_with_the_key():
    services = [u for u in trino_auth.USERS if u not in (trino_auth.ADMIN_USER, trino_auth.BI_USER)]
    derived = {u: CREDS.password(u) for u in services}
    assert len(set(derived.values())) == len(services)
    assert CREDS.password(trino_auth.ADMIN_USER) == "admin-pw"
    assert CREDS.password(trino_auth.BI_USER) == "bi-pw"
    rotated = trino_auth.Credentials("admin-pw", "bi-pw", "another-key")
    assert all(rotated.password(u) != p for u, p in derived.items())
    with pytest.raises(ValueError, match="TRINO_BI_PASSWORD"):
        trino_auth.Credentials.from_env({"TRINO_ADMIN_PASSWORD": "x", "TRINO_SERVICE_SECRET": "y"})


def test_bi_sees_the_read_only_catalog_and_system_and_may_only_select():
    r = trino_auth.rules()
    admin = "iot-admin|iot-stream-jobs"
    assert r["catalogs"] == [
        {"user": admin, "allow": "all"},
        {"catalog": "lake|system", "allow": "read-only"},
        {"allow": "none"},
    ]
    bi_tables = [t for t in r["tables"] if "user" not in t]
    assert bi_tables == [
        {"catalog": "lake", "schema": "raw|curated", "privileges": ["SELECT"]},
        {"catalog": "system", "schema": "jdbc|metadata", "privileges": ["SELECT"]},
        {"privileges": []},
    ]
    assert r["procedures"][-1] == {"privileges": []}
    assert r["schemas"][-1] == {"owner": False}
    assert all(rule.get("user") == admin for rule in r["system_information"])


def test_render_writes_every_file_once_and_rewrites_only_what_changed(tmp_path):
    trino_auth.render(tmp_path, CREDS)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"password.db", "rules.json", "tls.pem", "ca.pem", "shared-secret"}
    for name in ("password.db", "rules.json", "tls.pem", "shared-secret"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    lines = (tmp_path / "password.db").read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == list(trino_auth.USERS)
    for line in lines:
        assert trino_auth.password_matches(line, CREDS.password(line.split(":")[0]))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    trino_auth.render(tmp_path, CREDS)  # same secrets: not a byte changes (salts kept)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    trino_auth.render(tmp_path, trino_auth.Credentials("admin-pw", "new-bi-pw", "service-key"))
    after = (tmp_path / "password.db").read_text().splitlines()
    changed = [a.split(":")[0] for a, b in zip(after, lines, strict=True) if a != b]
    assert changed == [trino_auth.BI_USER]
    assert (tmp_path / "tls.pem").read_bytes() == before["tls.pem"]  # the certificate stays

    # A BI user an operator added by hand survives the next rewrite.
    alice = trino_auth.password_line("alice", "her-password")
    with (tmp_path / "password.db").open("a") as f:
        f.write(alice + "\n")
    trino_auth.render(tmp_path, CREDS)
    assert (tmp_path / "password.db").read_text().splitlines()[-1] == alice
    assert json.loads((tmp_path / "rules.json").read_text()) == trino_auth.rules()


def test_the_certificate_names_the_hosts_clients_use(tmp_path):
    trino_auth.make_tls(tmp_path)
    cert = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(alt.get_values_for_type(x509.DNSName)) == {"localhost", "trino"}
    assert [str(a) for a in alt.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    tls = (tmp_path / "tls.pem").read_text()
    assert "BEGIN PRIVATE KEY" in tls and tls.endswith((tmp_path / "ca.pem").read_text())


def test_compose_gets_the_same_server_settings_as_the_local_stack(tmp_path, monkeypatch):
    for name in trino_auth.SECRETS:
        monkeypatch.setenv(name, f"{name}-value")
    login = tmp_path / "portal"
    args = ["--secrets-dir", str(tmp_path / "keys"), "--auth-dir", str(tmp_path / "auth")]
    login_args = ["--login", f"iot-portal={login}", "--mounted-at", "/run/iot-secrets"]
    assert trino_auth.main([*args, *login_args]) == 0
    auth = tmp_path / "auth"
    server = dict(
        line.split("=", 1) for line in (auth / "server.properties").read_text().splitlines()
    )
    assert server == trino_auth.server_properties(auth, 8443)
    for name, text in trino_auth.etc_files(auth).items():
        assert (auth / name).read_text() == text
    creds = trino_auth.Credentials.from_env({n: f"{n}-value" for n in trino_auth.SECRETS})
    assert (login / "trino_password").read_text() == creds.password("iot-portal")
    assert (login / "trino_ca_file").read_text() == "/run/iot-secrets/ca.pem"  # as it sees it
    assert (login / "ca.pem").read_text() == (auth / "ca.pem").read_text()
    with pytest.raises(SystemExit):
        trino_auth.main([*args, "--login", f"root={login}"])


def properties(name):
    out = {}
    for line in (ROOT / "trino" / "etc" / "catalog" / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_the_bi_catalog_is_the_iceberg_catalog_read_only():
    lake, iceberg = properties("lake.properties"), properties("iceberg.properties")
    assert lake.pop("iceberg.security") == "read_only"
    assert lake == {k: v for k, v in iceberg.items() if k in lake}
    # What lake lacks is only the stream jobs' maintenance settings (they run it as admin).
    assert set(iceberg) - set(lake) == {
        "iceberg.expire-snapshots.min-retention",
        "iceberg.remove-orphan-files.min-retention",
    }


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",))), max_size=8))
def test_any_password_file_is_rewritten_without_a_crash_into_lines_trino_reads(junk):
    """password.db may be edited by hand (a BI user is added there): whatever it holds,
    the rewrite keeps the lines Trino can read, ours with the right passwords."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        trino_auth.make_tls(folder)  # made once: the property is about the password file
        kept = trino_auth.password_line("alice", "pw")
        bcrypt = "carol:$2y$10$" + "a" * 53
        lines = [*junk, "iot-admin:99:zz:yy", "bi:1000:abc:00", kept, bcrypt, "bob:x"]
        (folder / "password.db").write_text("\n".join(lines), errors="replace")
        trino_auth.render(folder, CREDS)
        out = (folder / "password.db").read_text().splitlines()
    users = [line.split(":")[0] for line in out]
    assert users[: len(trino_auth.USERS)] == list(trino_auth.USERS)
    for line in out[: len(trino_auth.USERS)]:
        assert trino_auth.password_matches(line, CREDS.password(line.split(":")[0]))
    assert kept in out and bcrypt in out and "bob" not in users


@pytest.mark.parametrize(
    "line",
    ["", "a", "a:b:c:d", "a:1000:zz:00", "a:1000:0:00", "a:99999999:00:00", "a:1000:00:00:00"],
)
def test_a_malformed_line_matches_no_password(line):
    assert not trino_auth.password_matches(line, "")
