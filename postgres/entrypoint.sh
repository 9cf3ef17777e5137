#!/bin/bash
# PostgreSQL for the Hive Metastore, as local/postgres.py runs it for `make up`: the
# cluster made once (local socket: trust; TCP: password), then at every start the
# role `hive` with METASTORE_DB_PASSWORD (so a changed password in .env applies)
# and its database `metastore` (both made when missing), through the socket only,
# before the server listens on the network.
set -euo pipefail
: "${METASTORE_DB_PASSWORD:?the metastore database password}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    initdb -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 >/dev/null
    printf '%s\n' "host all all 0.0.0.0/0 scram-sha-256" "host all all ::/0 scram-sha-256" \
        >>"$PGDATA/pg_hba.conf"
fi

pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -U postgres -d postgres -v pw="$METASTORE_DB_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE hive LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hive')\gexec
ALTER ROLE hive LOGIN PASSWORD :'pw';
SELECT 'CREATE DATABASE metastore OWNER hive'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'metastore')\gexec
SQL
pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null

exec postgres -D "$PGDATA" -c listen_addresses='*'
