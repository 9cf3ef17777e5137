#!/bin/bash
# Make sure a Docker engine answers; start one if none does (machines without
# systemd: Debian's docker.io package installs dockerd but nothing starts it).
# Its data root (images and the build cache) is kept outside the checkout, in
# ${IOT_CACHE_DIR:-~/.cache/iot-platform}/docker, so builds stay cached across
# checkouts and `git clean`.
# Prints "running" (an engine was there) or "started <pid>" (this script started
# it; stop it with `kill <pid>`, it removes its pidfile when done).
set -euo pipefail

if docker info >/dev/null 2>&1; then
    echo running
    exit 0
fi
if ! command -v dockerd >/dev/null; then
    echo "no Docker engine: apt-get install docker.io (it installs dockerd)" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "no Docker engine answers and starting one needs root (sudo $0)" >&2
    exit 1
fi

CACHE="${IOT_CACHE_DIR:-$HOME/.cache/iot-platform}"
ROOT="$CACHE/docker"
mkdir -p "$ROOT"
# Default socket and pidfile, so docker and docker-compose find it without DOCKER_HOST.
dockerd --data-root "$ROOT" --storage-driver overlay2 >"$CACHE/dockerd.log" 2>&1 &
pid=$!
for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then
        echo "started $pid"
        exit 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        break
    fi
    sleep 0.5
done
echo "dockerd did not come up; last lines of $CACHE/dockerd.log:" >&2
tail -20 "$CACHE/dockerd.log" >&2
kill "$pid" 2>/dev/null || true
exit 1
