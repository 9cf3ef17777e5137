# The images of our Python programs, on Debian bookworm's Python 3.11, each in a
# virtualenv of its own installed the way `make up` installs it (one stage each;
# docker-compose.yml names the stage as the build's `target`):
#   platform  generator, bridge, stream jobs, portal, Kafka topic init: pyproject.toml
#             pinned by constraints.txt (.venv)
#   quality   the Great Expectations runs: expectations/requirements.txt (.venv-quality)
#   superset  Apache Superset and our dashboards: bi/requirements.txt (.venv-superset)
FROM debian:bookworm-slim AS python
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
# The services' user, and every mount point of a named volume owned by it: an empty
# named volume takes the owner of the directory it is mounted on.
RUN useradd --uid 1000 --create-home app \
 && mkdir -p /var/lib/stream_jobs /var/lib/quality /var/lib/superset \
 && chown app:app /var/lib/stream_jobs /var/lib/quality /var/lib/superset

FROM python AS platform
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
RUN pip install -q --no-deps .
# The mount points of the MQTT and Trino accounts' volumes (the mqtt-accounts and
# trino-accounts one-shots write them; each service mounts its own login): owned by
# the services' user too.
RUN mkdir -p /mosquitto/auth /run/iot-secrets/keys /run/iot-secrets/bridge \
    /run/iot-secrets/generator /run/iot-secrets/health /trino-auth \
    /run/iot-secrets/trino-keys /run/iot-secrets/jobs-trino /run/iot-secrets/portal-trino \
    /run/iot-secrets/quality-trino /run/iot-secrets/superset-trino \
 && chown -R app:app /mosquitto/auth /run/iot-secrets /trino-auth
USER app

FROM python AS quality
COPY expectations/requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
 && pip install -q -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY expectations ./expectations
# The one module of the platform it uses: how to log in to Trino (imports only trino).
COPY iot_common/__init__.py iot_common/trino_client.py ./iot_common/
USER app

FROM python AS superset
COPY bi/requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
 && pip install -q -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY bi ./bi
USER app
