"""iot_common.trino_client: a password means HTTPS, that login, and trusting exactly
the certificate named, whatever the environment says."""

import trino

from iot_common.trino_client import connect, connect_kwargs


def test_with_a_password_https_basic_auth_and_only_the_named_certificate(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    kw = connect_kwargs(host="h", port=8443, user="bi", password="pw", ca_file="/ca.pem")
    assert kw["http_scheme"] == "https"
    assert isinstance(kw["auth"], trino.auth.BasicAuthentication)
    session = kw["http_session"]
    assert session.verify == "/ca.pem" and session.trust_env is False
    # What requests will use for a request of that session: the environment is not read.
    settings = session.merge_environment_settings("https://h:8443/", {}, None, None, None)
    assert settings["verify"] == "/ca.pem"
    conn = connect(host="h", port=8443, user="bi", password="pw", ca_file="/ca.pem")
    assert conn.http_scheme == "https"
    assert (conn._http_session.verify, conn._http_session.trust_env) == ("/ca.pem", False)


def test_without_a_password_plain_http_and_a_user_name_only():
    assert connect_kwargs(host="h", port=8080, user="u") == {"host": "h", "port": 8080, "user": "u"}
    assert connect_kwargs(host="h", port=8080, user="u", password="") == {
        "host": "h",
        "port": 8080,
        "user": "u",
    }


def test_with_a_password_and_no_certificate_the_system_trust_store():
    kw = connect_kwargs(host="h", port=8443, user="bi", password="pw")
    assert kw["http_scheme"] == "https" and "http_session" not in kw
