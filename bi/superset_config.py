"""Apache Superset's configuration for this platform (SUPERSET_CONFIG_PATH points here).

Read by every Superset process of the stack (the web server and the set-up steps of
`make superset`, local/services.py), in the virtualenv .venv-superset. Everything that
differs between machines comes from the environment:

  SUPERSET_SECRET_KEY   signs sessions and encrypts the connection's secrets (.env;
                        made at random by `make superset` when missing)
  SUPERSET_HOME         the folder of its SQLite metadata database (data/superset)

Pages use no asset from the internet: Superset serves its own bundle, and the map
tiles and the gravatars it could fetch are turned off below.
"""

import os

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]
SQLALCHEMY_DATABASE_URI = f"sqlite:///{os.environ['SUPERSET_HOME']}/superset.db"

# One machine, one process: the metadata database is SQLite, the cache in memory.
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 60}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 60}
RATELIMIT_STORAGE_URI = "memory://"

# Nothing from the internet: no map tiles, and a Content-Security-Policy of our own
# (Superset's default allows map, font and analytics hosts) that lets the browser load
# from this server only.
MAPBOX_API_KEY = ""
TALISMAN_ENABLED = True
TALISMAN_CONFIG = {
    "content_security_policy": {
        "base-uri": ["'self'"],
        "default-src": ["'self'"],
        "img-src": ["'self'", "blob:", "data:"],
        "worker-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": "'none'",
        "style-src": ["'self'", "'unsafe-inline'"],
        "font-src": ["'self'", "data:"],
        "script-src": ["'self'", "'strict-dynamic'"],
    },
    "content_security_policy_nonce_in": ["script-src"],
    "force_https": False,
    "session_cookie_secure": False,
}

# "Last day", "Last week": up to now (Superset's default ends them at today's
# midnight, which would leave out today's readings).
DEFAULT_RELATIVE_START_TIME = "now"
DEFAULT_RELATIVE_END_TIME = "now"

# Trino answers the dashboards' queries; a month of history stays within this.
SUPERSET_WEBSERVER_TIMEOUT = 120
SQLLAB_TIMEOUT = 120
ROW_LIMIT = 50_000
