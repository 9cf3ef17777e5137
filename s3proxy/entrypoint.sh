#!/bin/bash
# S3Proxy serving the directory /var/lib/s3proxy (one subdirectory per bucket) on port
# 8333, with AWS v2/v4 signatures checked against S3_ACCESS_KEY / S3_SECRET_KEY.
set -euo pipefail
: "${S3_ACCESS_KEY:?}" "${S3_SECRET_KEY:?}"

CONF=/tmp/s3proxy.conf
umask 077
cat >"$CONF" <<CONF
s3proxy.endpoint=http://0.0.0.0:8333
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$S3_ACCESS_KEY
s3proxy.credential=$S3_SECRET_KEY
# Trino's S3 client sends headers S3Proxy does not know (x-amz-optional-object-attributes
# on listings); without this every listing fails with 501 Not Implemented.
s3proxy.ignore-unknown-headers=true
jclouds.provider=filesystem
jclouds.filesystem.basedir=/var/lib/s3proxy
CONF
exec java ${S3PROXY_HEAP_OPTS:--Xmx256m} -jar /opt/s3proxy/s3proxy.jar --properties "$CONF"
