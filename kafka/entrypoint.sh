#!/bin/bash
# Kafka under docker-compose: kafka/server.properties (the file `make up` uses) with
# the compose network's listeners appended (a later key wins), as local/services.py
# does for the local stack. Two client listeners: INTERNAL (kafka:19092) for the
# containers, EXTERNAL (container port 9092) for the host, advertised as
# KAFKA_EXTERNAL_HOST:KAFKA_EXTERNAL_PORT (the published port). The KRaft storage
# is formatted once, on the first start of its volume.
set -euo pipefail

PROPS=/tmp/server.properties
{
    cat /opt/kafka/config/server.properties
    echo
    echo "# docker-compose overrides (kafka/entrypoint.sh)"
    echo "listeners=INTERNAL://:19092,EXTERNAL://:9092,CONTROLLER://:9093"
    echo "advertised.listeners=INTERNAL://kafka:19092,EXTERNAL://${KAFKA_EXTERNAL_HOST:-localhost}:${KAFKA_EXTERNAL_PORT:-9092}"
    echo "listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
    echo "inter.broker.listener.name=INTERNAL"
    echo "controller.quorum.voters=1@localhost:9093"
    echo "log.dirs=/var/lib/kafka/data"
} >"$PROPS"

JAVA=(java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC
    -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -cp '/opt/kafka/libs/*')
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
    # A random cluster id (22 characters of URL-safe base64) unless one is given.
    id="${KAFKA_CLUSTER_ID:-$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')}"
    # "=": an id may start with "-" and be taken for an option
    "${JAVA[@]}" kafka.tools.StorageTool format --cluster-id="$id" -c "$PROPS" >/dev/null
fi
exec "${JAVA[@]}" kafka.Kafka "$PROPS"
