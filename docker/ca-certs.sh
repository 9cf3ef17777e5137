#!/bin/bash
# Prints the extra CA certificates this machine trusts (Debian keeps them in
# /usr/local/share/ca-certificates), base64-encoded on one line: the value of the
# EXTRA_CA_CERTS_B64 build argument, for builds behind a TLS-inspecting proxy.
# Empty when there are none (then the images trust Debian's bundle only).
#   EXTRA_CA_CERTS_B64=$(docker/ca-certs.sh) docker-compose build
set -euo pipefail
DIR="${EXTRA_CA_CERTS_DIR:-/usr/local/share/ca-certificates}"
shopt -s nullglob globstar
certs=("$DIR"/**/*.crt)
if [ ${#certs[@]} -gt 0 ]; then
    # one newline after each: a file without a final one must not glue two PEMs
    for cert in "${certs[@]}"; do cat "$cert"; echo; done | base64 -w0
fi
echo
