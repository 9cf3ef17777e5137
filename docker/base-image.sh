#!/bin/bash
# The base image every Dockerfile here starts from, debian:bookworm-slim: kept if
# the engine has it, else pulled, else (no registry within reach) built from
# Debian's packages with debootstrap and imported under that name.
set -euo pipefail

IMAGE=debian:bookworm-slim
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE: present"
    exit 0
fi
if [ "${IOT_BASE_IMAGE_PULL:-1}" = 1 ] && timeout 30 docker pull -q "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE: pulled"
    exit 0
fi
if ! command -v debootstrap >/dev/null; then
    echo "$IMAGE cannot be pulled and debootstrap is missing: apt-get install debootstrap" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "debootstrap needs root (sudo $0)" >&2
    exit 1
fi

# The mirror this machine's apt uses (deb822 or one-line sources), else Debian's.
MIRROR="${DEBIAN_MIRROR:-}"
if [ -z "$MIRROR" ]; then
    MIRROR="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
fi
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

ROOTFS="$(mktemp -d)"
trap 'rm -rf "$ROOTFS"' EXIT
echo "$IMAGE: building it with debootstrap from $MIRROR ..."
debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
    tail -20 "$ROOTFS.log" >&2
    exit 1
}
rm -f "$ROOTFS.log" "$ROOTFS/etc/apt/sources.list"
cat >"$ROOTFS/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
# debootstrap copied this machine's name and resolver; the engine provides both at run time.
: >"$ROOTFS/etc/hostname"
: >"$ROOTFS/etc/resolv.conf"
tar -C "$ROOTFS" --numeric-owner -c . | docker import --change 'CMD ["bash"]' - "$IMAGE" >/dev/null
echo "$IMAGE: imported"
