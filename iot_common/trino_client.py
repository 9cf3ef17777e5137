"""How every service of ours connects to Trino: one function, so that the login,
TLS and the certificate trusted are set up in one place (local/trino_auth.py makes
the server's side).

With a password, the connection is HTTPS with that password (Trino refuses
passwords over plain HTTP, and so does its Python client); `ca_file` names the
certificate to trust (Trino's own, self-signed, made at set-up), else the system's
trust store is used. Without one, plain HTTP and a user name only: a Trino without
logins, such as one a test starts for itself. Imports only the `trino` client, so
that the quality runs (a virtual environment of their own) use it too."""

from __future__ import annotations

from typing import Any

import requests
import trino
import trino.auth


def connect_kwargs(
    *, host: str, port: int, user: str, password: str | None = None, ca_file: str | None = None
) -> dict[str, Any]:
    """Keyword arguments of trino.dbapi.connect for this login."""
    kwargs: dict[str, Any] = {"host": host, "port": port, "user": user}
    if password:
        kwargs["http_scheme"] = "https"
        kwargs["auth"] = trino.auth.BasicAuthentication(user, password)
        if ca_file:
            # requests lets REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE) of the environment
            # win over a session's `verify` (psf/requests#3829): a session that does
            # not read the environment trusts exactly this certificate.
            session = requests.Session()
            session.trust_env = False
            session.verify = ca_file
            kwargs["http_session"] = session
    return kwargs


def connect(
    *,
    host: str,
    port: int,
    user: str,
    password: str | None = None,
    ca_file: str | None = None,
    **options: Any,
) -> trino.dbapi.Connection:
    """A DB-API connection for this login; `options` go to trino.dbapi.connect
    (catalog, request_timeout, ...)."""
    login = connect_kwargs(host=host, port=port, user=user, password=password, ca_file=ca_file)
    return trino.dbapi.connect(**login, **options)  # type: ignore[no-any-return]
