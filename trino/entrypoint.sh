#!/bin/bash
# Trino under docker-compose: trino/etc (the files `make up` uses; the catalogs take
# the metastore and Kafka from HIVE_METASTORE_HOST and KAFKA_NODES) with the lake's
# S3 endpoint and keys set in the hive, iceberg and lake catalogs, as local/services.py
# sets them for an S3 lake, and logins and access rules from /trino-auth.
set -euo pipefail

ETC=/tmp/trino-etc
rm -rf "$ETC"
cp -r /etc/trino "$ETC"

# Set KEY=VALUE in a .properties file: replace the key's line, or append one.
set_property() {
    K="$2" V="$3" awk '
        BEGIN { done = 0 }
        $0 !~ /^[ \t]*#/ && index($0, "=") {
            key = substr($0, 1, index($0, "=") - 1); gsub(/^[ \t]+|[ \t]+$/, "", key)
            if (key == ENVIRON["K"]) { print ENVIRON["K"] "=" ENVIRON["V"]; done = 1; next }
        }
        { print }
        END { if (!done) print ENVIRON["K"] "=" ENVIRON["V"] }' "$1" >"$1.new"
    mv "$1.new" "$1"
}

# Logins over TLS and the access rules, from the one-shot trino-accounts
# (local/trino_auth.py): the settings it wrote for config.properties, and the
# authenticator's and the access control's files.
AUTH=/trino-auth
if [ -f "$AUTH/server.properties" ]; then
    while IFS='=' read -r key value; do
        [ -n "$key" ] && set_property "$ETC/config.properties" "$key" "$value"
    done <"$AUTH/server.properties"
    cp "$AUTH/password-authenticator.properties" "$AUTH/access-control.properties" "$ETC/"
fi

for catalog in hive iceberg lake; do
    file="$ETC/catalog/$catalog.properties"
    if [ -n "${S3_ENDPOINT_URL:-}" ]; then
        set_property "$file" s3.endpoint "$S3_ENDPOINT_URL"
        set_property "$file" s3.path-style-access true
    fi
    if [ -n "${AWS_ACCESS_KEY_ID:-}" ]; then
        set_property "$file" s3.aws-access-key "$AWS_ACCESS_KEY_ID"
        set_property "$file" s3.aws-secret-key "${AWS_SECRET_ACCESS_KEY:-}"
    fi
done
chmod -R go-rwx "$ETC"

exec /opt/trino/bin/launcher run --etc-dir="$ETC" --data-dir=/data/trino
