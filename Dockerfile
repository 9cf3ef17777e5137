# One image for the platform's Python services (generator, bridge, stream jobs, the
# portal and the Kafka topic init), on Debian bookworm's Python 3.11 in a virtualenv, dependencies
# from pyproject.toml pinned by constraints.txt (as `make up` installs them).
FROM debian:bookworm-slim AS base
# Extra CA certificates (PEM, base64 in one build argument: docker/ca-certs.sh), for
# TLS behind an inspecting proxy; each certificate gets a file of its own (Java's
# trust store takes only the first of a file). Empty: Debian's bundle only.
# This step is the same text in every Dockerfile here (and so is the Java step in the
# Java ones): the engine builds it once and reuses it.
ARG EXTRA_CA_CERTS_B64=""
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates \
 && if [ -n "$EXTRA_CA_CERTS_B64" ]; then echo "$EXTRA_CA_CERTS_B64" | base64 -d \
      | awk '/BEGIN CERT/{n++} n{print > ("/usr/local/share/ca-certificates/extra-" n ".crt")}' \
    && update-ca-certificates; fi \
 && rm -rf /var/lib/apt/lists/*

RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 PIP_CERT=/etc/ssl/certs/ca-certificates.crt
WORKDIR /app
# The dependencies first (a layer that a code change leaves cached).
COPY pyproject.toml constraints.txt ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && python3 -m venv /opt/venv \
 && pip install -q -c constraints.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY iot_common ./iot_common
COPY iot_data_generator ./iot_data_generator
COPY mqtt_bridge ./mqtt_bridge
COPY stream_jobs ./stream_jobs
COPY portal ./portal
COPY local ./local
COPY docker/kafka_init.py ./docker/kafka_init.py
# Every mount point exists here, owned by the services' user: an empty named volume
# takes the owner of the directory it is mounted on.
RUN pip install -q --no-deps . \
 && useradd --uid 1000 --create-home app \
 && mkdir -p /var/lib/stream_jobs /var/lib/quality \
 && chown app:app /var/lib/stream_jobs /var/lib/quality
USER app
