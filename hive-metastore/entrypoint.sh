#!/bin/bash
# The Hive Metastore under docker-compose: hive-metastore/conf/metastore-site.xml
# (the file `make up` uses; database URL, driver, user and password come from the
# environment) plus the S3A endpoint and keys of the lake, as local/services.py adds
# them; then Hive's schema in PostgreSQL (created on the first start, upgraded if
# needed, left alone otherwise) and the metastore itself.
set -euo pipefail

CONF=/tmp/metastore-conf
mkdir -p "$CONF"
cp /opt/hive-metastore/conf/metastore-log4j2.properties "$CONF/"

xml() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' <<<"$1"; }
EXTRA=""
prop() { EXTRA+="  <property><name>$1</name><value>$(xml "$2")</value></property>"$'\n'; }
if [ -n "${S3_ENDPOINT_URL:-}" ]; then
    prop fs.s3a.endpoint "$S3_ENDPOINT_URL"
    case "$S3_ENDPOINT_URL" in
    https:*) prop fs.s3a.connection.ssl.enabled true ;;
    *) prop fs.s3a.connection.ssl.enabled false ;;
    esac
fi
if [ -n "${AWS_ACCESS_KEY_ID:-}" ]; then
    prop fs.s3a.aws.credentials.provider org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider
    prop fs.s3a.access.key "$AWS_ACCESS_KEY_ID"
    prop fs.s3a.secret.key "${AWS_SECRET_ACCESS_KEY:-}"
fi
EXTRA="$EXTRA" awk '/<\/configuration>/ { printf "%s", ENVIRON["EXTRA"] } { print }' \
    /opt/hive-metastore/conf/metastore-site.xml >"$CONF/metastore-site.xml"

export METASTORE_HOME=/opt/hive-metastore
JAVA=(java ${METASTORE_HEAP_OPTS:--Xmx512m}
    -Dlog4j.configurationFile="$CONF/metastore-log4j2.properties"
    -cp "$CONF:/opt/hive-metastore/libs/*")
"${JAVA[@]}" org.apache.hadoop.hive.metastore.tools.schematool.MetastoreSchemaTool \
    -initOrUpgradeSchema -dbType postgres
exec "${JAVA[@]}" org.apache.hadoop.hive.metastore.HiveMetaStore -p 9083
