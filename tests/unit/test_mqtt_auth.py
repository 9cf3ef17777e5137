"""The broker's password and ACL files (local/mqtt_auth.py): the `$7$` hash as
Mosquitto 2.0.11 checks it, the files as its parsers read them, and what each
account may then do."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from local import mqtt_auth
from local.mqtt_auth import (
    HEALTH_TOPIC,
    Account,
    acl_file,
    parse_password_line,
    password_file,
    password_line,
    verify,
    write,
)

TOPIC = "sensors"
DEVICES = {"Sensor 1": "pw-one", "Sensor 2": "pw-two", "s3": "pw-three"}
C_SPACE = " \t\n\v\f\r"  # C's isspace in the "C" locale: what Mosquitto trims


def make_accounts(devices: dict[str, str] | None = None, **overrides: str) -> list[Account]:
    kwargs = {
        "topic": TOPIC,
        "bridge_user": "bridge",
        "bridge_password": "bridge-pw",
        "generator_user": "generator",
        "generator_password": "generator-pw",
        "health_user": "health",
        "health_password": "health-pw",
    }
    kwargs.update(overrides)
    return mqtt_auth.accounts(devices=DEVICES if devices is None else devices, **kwargs)


# -- what Mosquitto 2.0.11 makes of the files (src/security_default.c, re-told) --------


def mosquitto_passwd(text: str) -> dict[str, str]:
    """pwfile__parse: '#' lines are comments; the name and the hash are cut at ':'
    and trimmed."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or ":" not in line:
            continue
        fields = [f for f in line.split(":") if f]  # strtok skips empty fields
        out[fields[0].strip(C_SPACE)] = fields[1].strip(C_SPACE)
    return out


def mosquitto_acl(text: str) -> tuple[dict[str | None, list[tuple[str, str]]], list[object]]:
    """aclfile__parse: user (None: the anonymous client) -> its (access, topic) rules,
    and the pattern lines."""
    users: dict[str | None, list[tuple[str, str]]] = {}
    patterns: list[object] = []
    user = None
    for raw in text.split("\n"):
        buf = raw.rstrip(C_SPACE)
        if buf.startswith("#") or not buf.strip(" "):
            continue
        token, _, rest = buf.lstrip(" ").partition(" ")
        if token in ("topic", "pattern"):
            access, _, topic = rest.lstrip(" ").partition(" ")
            topic = topic.strip(C_SPACE)
            if not topic:
                access, topic = "readwrite", access
            assert access in ("read", "write", "readwrite", "deny"), raw
            if token == "pattern":
                patterns.append((access, topic))
            else:
                users.setdefault(user, []).append((access, topic))
        elif token == "user":
            user = rest.strip(C_SPACE)
            assert user, raw
        else:
            raise AssertionError(f"Mosquitto refuses the ACL line {raw!r}")
    return users, patterns


def matches(rule: str, topic: str) -> bool:
    """mosquitto_topic_matches_sub, with the ACL check's rule for '$' topics."""
    if topic.startswith("$") and not rule.startswith("$"):
        return False
    r, t = rule.split("/"), topic.split("/")
    for i, level in enumerate(r):
        if level == "#":
            return True
        if i >= len(t) or level not in ("+", t[i]):
            return False
    return len(r) == len(t)


def may(rules: list[tuple[str, str]], access: str, topic: str) -> bool:
    for rule_access, rule in rules:
        if matches(rule, topic):
            if rule_access == "deny":
                return False
            if access in rule_access:  # "read"/"write" in "readwrite"
                return True
    return False


# -- the $7$ hash ----------------------------------------------------------------------


def test_known_vector():
    salt = b"0123456789ab"
    digest = hashlib.pbkdf2_hmac("sha512", b"secret", salt, 101, 64)
    expected = (
        "user:$7$101$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()
    )
    assert password_line("user", "secret", salt=salt) == expected
    assert password_file([Account("user", "secret", ())], salt=lambda n: salt[:n]).endswith(
        expected + "\n"
    )


def test_line_decodes_back_and_verifies():
    line = password_line("Sensor 1", "s3cret", salt=b"\xff" * 12)
    entry = parse_password_line(line)
    assert (entry.username, entry.iterations, entry.salt) == ("Sensor 1", 101, b"\xff" * 12)
    assert entry.digest == hashlib.pbkdf2_hmac("sha512", b"s3cret", entry.salt, 101, 64)
    assert line.split("$")[4].endswith("==")  # 64 bytes: standard base64, padded
    assert verify(line, "s3cret") and verify(line + "\n", "s3cret")
    assert not verify(line, "s3cret ") and not verify(line, "S3cret") and not verify(line, "")


@pytest.mark.parametrize(
    "line",
    [
        "",
        "# comment",
        "user",
        "user:",
        "user:$6$c2FsdA==$aGFzaA==",
        "user:$7$0$MDEyMzQ1Njc4OWFi$" + "A" * 86 + "==",
        "user:$7$101$c2FsdA==$" + "A" * 86 + "==",  # a 4-byte salt
        "user:$7$101$MDEyMzQ1Njc4OWFi$not-base64",
        "user:$7$101$MDEyMzQ1Njc4OWFi$" + "A" * 86 + "==$extra",
    ],
)
def test_a_line_of_another_form_verifies_nothing(line: str):
    assert not verify(line, "secret")
    with pytest.raises(ValueError):
        parse_password_line(line)


# Printable, no ':', not starting with '#', no space at either end: what a username may be.
usernames = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=":"), min_size=1
).filter(lambda u: u == u.strip() and not u.startswith("#") and "\ufffe" not in u)
# Lone surrogates are not text a client can send: refused (test below), not round-tripped.
passwords = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1
)


def test_a_password_that_is_not_valid_text_is_refused_clearly():
    with pytest.raises(ValueError, match="not valid text"):
        password_line("0", "\ud800", salt=b"0" * 12)


@given(usernames, passwords, st.binary(min_size=12, max_size=12))
def test_any_username_and_password_round_trip(username: str, password: str, salt: bytes):
    try:
        line = password_line(username, password, salt=salt)
    except ValueError as exc:  # only MQTT's non-characters are left to refuse
        assert "non-character" in str(exc)
        return
    entry = parse_password_line(line)
    assert (entry.username, entry.salt, entry.iterations) == (username, salt, 101)
    assert verify(line, password)
    assert not verify(line, password + "x")
    assert mosquitto_passwd(line + "\n") == {username: line.split(":", 1)[1]}


@given(st.text(), st.text())
def test_anything_is_refused_or_read_back_by_mosquitto_as_written(username: str, password: str):
    try:
        line = password_line(username, password, salt=b"0123456789ab")
    except ValueError:
        return
    assert "\n" not in line and verify(line, password)
    assert list(mosquitto_passwd(line)) == [username]


@pytest.mark.parametrize(
    "username", ["a:b", ":", "", " bridge", "bridge ", "#bridge", "a\nb", "a\x00b", "a\tb"]
)
def test_a_username_mosquitto_would_misread_is_refused(username: str):
    with pytest.raises(ValueError, match="username"):
        password_line(username, "pw", salt=bytes(12))
    with pytest.raises(ValueError, match="username"):
        Account(username, "pw", ())


@pytest.mark.parametrize("password", ["", "a\x00b"])
def test_a_password_no_client_could_send_is_refused(password: str):
    with pytest.raises(ValueError, match="password"):
        Account("user", password, ())


def test_password_file_hashes_with_fresh_salts_and_says_it_is_generated():
    text = password_file(make_accounts())
    assert text.startswith("# Generated by local/mqtt_auth.py")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    salts = {parse_password_line(line).salt for line in lines}
    assert len(salts) == len(lines) == 3 + len(DEVICES)
    passwords = {"bridge": "bridge-pw", "generator": "generator-pw", "health": "health-pw"}
    passwords |= DEVICES
    assert set(mosquitto_passwd(text)) == set(passwords)
    for line in lines:
        assert verify(line, passwords[parse_password_line(line).username])


def test_account_repr_does_not_show_the_password():
    assert "hunter2" not in repr(Account("user", "hunter2", ()))


# -- the ACL ---------------------------------------------------------------------------


def test_each_account_may_do_only_its_part():
    text = acl_file(make_accounts())
    assert text.startswith("# Generated by local/mqtt_auth.py")
    users, patterns = mosquitto_acl(text)
    assert patterns == []
    assert None not in users  # no line before the first `user`: anonymous may do nothing
    assert users["bridge"] == [("read", TOPIC), ("read", f"{TOPIC}/#")]
    assert not any(access != "read" for access, _ in users["bridge"])
    assert users["generator"] == [("write", TOPIC), ("write", f"{TOPIC}/#")]
    assert users["health"] == [("read", HEALTH_TOPIC)]
    for sensor_id in DEVICES:
        assert users[sensor_id] == [("write", f"{TOPIC}/{sensor_id}")]

    topics = [TOPIC, f"{TOPIC}/x", HEALTH_TOPIC, "$SYS/broker/clients/total", "other"]
    topics += [f"{TOPIC}/{s}" for s in DEVICES] + [f"{TOPIC}/Sensor 1/x"]
    for topic in topics:
        assert not may(users["bridge"], "write", topic)
        assert may(users["bridge"], "read", topic) == (topic.split("/")[0] == TOPIC)
        assert may(users["generator"], "write", topic) == (topic.split("/")[0] == TOPIC)
        assert not may(users["generator"], "read", topic)
        assert may(users["health"], "read", topic) == (topic == HEALTH_TOPIC)
        assert not may(users["health"], "write", topic)
        for sensor_id in DEVICES:
            assert may(users[sensor_id], "write", topic) == (topic == f"{TOPIC}/{sensor_id}")
            assert not may(users[sensor_id], "read", topic)


def test_accounts_do_not_depend_on_the_devices_order():
    reordered = dict(reversed(list(DEVICES.items())))
    assert make_accounts(reordered) == make_accounts(DEVICES)


@pytest.mark.parametrize(
    "sensor_id",
    ["a#", "#", "a+b", "+", "a\nb", "a\rb", "a\x00b", " a", "a ", "\ta", "", "a/b", "#a", "a:b"],
)
def test_a_sensor_id_that_is_no_single_topic_level_is_refused(sensor_id: str):
    with pytest.raises(ValueError, match=r"sensor id|username"):
        make_accounts({sensor_id: "pw"})


@pytest.mark.parametrize("topic", ["", "sensors/#", "sensors/+", "sens+ors", " sensors", "s/"])
def test_a_readings_topic_with_wildcards_or_blanks_is_refused(topic: str):
    with pytest.raises(ValueError, match="topic"):
        make_accounts(topic=topic)


def test_a_device_named_like_a_service_account_is_refused():
    with pytest.raises(ValueError, match="two accounts"):
        make_accounts({"bridge": "pw"})


@given(st.text(max_size=40))
def test_any_sensor_id_is_refused_or_gets_exactly_its_own_topic(sensor_id: str):
    try:
        accounts = make_accounts({sensor_id: "pw"})
    except ValueError:
        return
    users, _ = mosquitto_acl(acl_file(accounts))
    assert users[sensor_id] == [("write", f"{TOPIC}/{sensor_id}")]
    assert len(f"{TOPIC}/{sensor_id}".split("/")) == 2
    assert sensor_id in mosquitto_passwd(password_file(accounts))


@pytest.mark.parametrize(
    "rule", [("write", "a/b#"), ("write", "a/#/b"), ("write", " a"), ("all", "a"), ("read", "")]
)
def test_an_acl_rule_mosquitto_would_refuse_or_misread_is_refused(rule: tuple[str, str]):
    with pytest.raises(ValueError):
        Account("user", "pw", (rule,))  # type: ignore[arg-type]


# -- writing ---------------------------------------------------------------------------


def test_writing_twice_leaves_both_files_as_they_were(tmp_path: Path):
    passwd, acl = write(tmp_path, make_accounts())
    assert (passwd, acl) == (tmp_path / "passwd", tmp_path / "acl")
    first = passwd.read_bytes(), acl.read_bytes()
    inodes = passwd.stat().st_ino, acl.stat().st_ino
    assert write(tmp_path, make_accounts()) == (passwd, acl)
    assert (passwd.read_bytes(), acl.read_bytes()) == first
    assert (passwd.stat().st_ino, acl.stat().st_ino) == inodes  # not even replaced
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    assert stat.S_IMODE(acl.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acl", "passwd"]  # no temp file


def test_changing_one_password_changes_only_that_users_line(tmp_path: Path):
    passwd, acl = write(tmp_path, make_accounts())
    before, acl_before = passwd.read_text().splitlines(), acl.read_bytes()
    write(tmp_path, make_accounts({**DEVICES, "Sensor 2": "new-pw"}))
    after = passwd.read_text().splitlines()
    changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert len(changed) == 1
    old, new = changed[0]
    assert parse_password_line(new).username == "Sensor 2"
    assert verify(new, "new-pw") and not verify(old, "new-pw")
    assert acl.read_bytes() == acl_before
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600


def test_a_new_device_adds_its_lines_and_keeps_the_others(tmp_path: Path):
    passwd, _ = write(tmp_path, make_accounts())
    before = set(passwd.read_text().splitlines())
    _, acl = write(tmp_path, make_accounts({**DEVICES, "Sensor 9": "pw-nine"}))
    after = set(passwd.read_text().splitlines())
    assert before < after and len(after - before) == 1
    assert mosquitto_acl(acl.read_text())[0]["Sensor 9"] == [("write", f"{TOPIC}/Sensor 9")]


def test_write_replaces_hand_edited_lines_and_restores_modes(tmp_path: Path):
    passwd, acl = write(tmp_path, make_accounts())
    good = passwd.read_text()
    lines = good.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("bridge:"))
    lines[i] = "bridge:plaintext"
    passwd.write_text("\n".join(lines) + "\n")
    passwd.chmod(0o644)
    acl.write_text("topic readwrite #\n")
    write(tmp_path, make_accounts())
    bridge_line = next(x for x in passwd.read_text().splitlines() if x.startswith("bridge:"))
    assert verify(bridge_line, "bridge-pw")
    assert passwd.read_text().splitlines()[:i] == good.splitlines()[:i]
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    assert acl.read_text() == acl_file(make_accounts())


def test_a_policy_change_of_iterations_rehashes(tmp_path: Path):
    accounts = [Account("user", "pw", ())]
    (tmp_path / "passwd").write_text(
        password_line("user", "pw", salt=bytes(12), iterations=5) + "\n"
    )
    passwd, _ = write(tmp_path, accounts)
    (line,) = [x for x in passwd.read_text().splitlines() if not x.startswith("#")]
    assert parse_password_line(line).iterations == 101 and verify(line, "pw")


# -- the platform's credentials (make up) ---------------------------------------------


def test_device_passwords_are_derived_per_device_and_rotate_with_the_key():
    from local.mqtt_auth import Credentials

    a = Credentials("b", "g", "h", "key-1")
    assert a.device_password("Sensor 1") == Credentials("x", "y", "z", "key-1").device_password(
        "Sensor 1"
    )
    assert a.device_password("Sensor 1") != a.device_password("Sensor 2")
    assert a.device_password("Sensor 1") != Credentials("b", "g", "h", "key-2").device_password(
        "Sensor 1"
    )
    assert "key-1" not in repr(a)


def test_the_platform_accounts_skip_ids_that_cannot_be_a_topic_level():
    from local.mqtt_auth import BRIDGE_USER, Credentials, unfit_sensor_ids

    creds = Credentials.random()
    ids = ["Sensor 1", "a/b", "c#", BRIDGE_USER]
    names = [a.username for a in creds.platform_accounts("sensors", ids)]
    assert names == ["iot-mqtt-bridge", "iot-generator", "iot-health", "Sensor 1"]
    assert unfit_sensor_ids(ids) == ["a/b", "c#", BRIDGE_USER]


def test_credentials_from_env_name_what_is_missing():
    from local.mqtt_auth import SECRETS, Credentials

    with pytest.raises(ValueError, match="MQTT_DEVICE_SECRET missing"):
        Credentials.from_env({n: "x" for n in SECRETS[:-1]})


def test_status_counts_the_logins_the_broker_refused():
    from local.figures import refused_logins

    log = (
        "1796085223: Client anon disconnected, not authorised.\n"
        "1796085223: Client dev1 disconnected.\n"
        "1796085224: Client <unknown> disconnected, not authorised.\n"
    )
    assert refused_logins(log) == 2


def test_compose_accounts_keep_their_secrets_and_give_each_service_its_own_login(
    tmp_path, monkeypatch
):
    from local.mqtt_auth import BRIDGE_USER, main, verify

    keys, auth = tmp_path / "keys", tmp_path / "auth"
    logins = {s: tmp_path / s for s in ("bridge", "generator", "health")}
    argv = [
        f"--auth-dir={auth}",
        f"--secrets-dir={keys}",
        f"--sensors-file={Path(__file__).parents[2] / 'iot_data_generator' / 'sensors.json'}",
        *(f"--login={s}={d}" for s, d in logins.items()),
    ]
    assert main(argv) == 0
    first = {s: (d / "mqtt_password").read_text() for s, d in logins.items()}
    assert len(set(first.values())) == 3  # three random passwords
    assert (logins["bridge"] / "mqtt_username").read_text() == BRIDGE_USER
    passwd = {ln.split(":")[0]: ln for ln in (auth / "passwd").read_text().splitlines()}
    assert verify(passwd[BRIDGE_USER], first["bridge"])
    assert "Sensor 1" in passwd  # a device account per sensor of the list
    assert oct((logins["bridge"] / "mqtt_password").stat().st_mode & 0o777) == "0o600"

    assert main(argv) == 0  # the next start keeps them
    assert {s: (d / "mqtt_password").read_text() for s, d in logins.items()} == first

    monkeypatch.setenv("MQTT_BRIDGE_PASSWORD", "set-in-dot-env")
    assert main(argv) == 0  # a value in .env wins (and is kept)
    assert (logins["bridge"] / "mqtt_password").read_text() == "set-in-dot-env"
    passwd = {ln.split(":")[0]: ln for ln in (auth / "passwd").read_text().splitlines()}
    assert verify(passwd[BRIDGE_USER], "set-in-dot-env")
    assert (logins["generator"] / "mqtt_password").read_text() == first["generator"]
