# IoT data platform: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
QVENV := .venv-quality
QPY := $(QVENV)/bin/python
SVENV := .venv-superset

.PHONY: help up down status logs mqtt-accounts device-password sql quality superset superset-export test unit integration lint bench soak constraints system-deps clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# Great Expectations in a virtualenv of its own: its pins and pandas stay out of ours.
$(QVENV)/.installed: expectations/requirements.txt
	$(PYTHON) -m venv $(QVENV)
	$(QPY) -m pip install -q --upgrade pip
	$(QPY) -m pip install -q -r expectations/requirements.txt
	touch $@

# Apache Superset in a virtualenv of its own, from the full pinned tree of bi/requirements.txt.
$(SVENV)/.installed: bi/requirements.txt
	$(PYTHON) -m venv $(SVENV)
	$(SVENV)/bin/python -m pip install -q --upgrade pip
	$(SVENV)/bin/python -m pip install -q -r bi/requirements.txt
	touch $@

system-deps: ## Install Debian packages: mosquitto (and its clients and kcat, for the bench), PostgreSQL, maven, Java 17 (its compiler runs the JDBC test's probe), Docker's engine, docker-compose and debootstrap (the compose test), chromium and its driver (the portal's browser tests)
	@missing=""; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v mosquitto_pub >/dev/null || missing="$$missing mosquitto-clients"; \
	command -v kcat >/dev/null || missing="$$missing kcat"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v javac >/dev/null || missing="$$missing openjdk-17-jdk-headless"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || missing="$$missing docker.io"; \
	command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing="$$missing debootstrap"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/bin/chromedriver ] || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $$missing; \
	fi

up: system-deps $(VENV)/.installed $(QVENV)/.installed ## Install what is missing and run the whole pipeline in the background (FAULTS=1: with injected faults, a demo)
	$(PY) -m local up $(if $(FAULTS),--faults)

superset: system-deps $(VENV)/.installed $(QVENV)/.installed $(SVENV)/.installed ## Install Apache Superset (BI dashboards as code in bi/) and run the pipeline with it; make up starts it from then on
	$(PY) -m local up $(if $(FAULTS),--faults)

superset-export: ## Write the dashboards as the running Superset has them back into bi/dashboards (then review the diff)
	$(PY) -m local superset-export

down: ## Stop everything (the data in ./data is kept)
	@$(PY) -m local down

status: ## What runs and whether it is healthy
	@$(PY) -m local status

mqtt-accounts: ## Write the broker's accounts again (a sensor added to sensors.json, a secret changed in .env) and reload them
	$(PY) -m local mqtt-accounts

device-password: ## The MQTT password of one device: make device-password SENSOR='Sensor 1'
	@$(PY) -m local device-password --sensor "$(SENSOR)"

sql: ## A Trino SQL prompt as the admin (make up first); LOGIN=bi: as the BI login, read-only
	@$(PY) -m local sql $(if $(LOGIN),--as '$(LOGIN)')

logs: ## Last log lines of every service (make logs F=1 to follow)
	@$(PY) -m local logs $(if $(F),--follow)

quality: $(QVENV)/.installed ## Run the Great Expectations suites on the last hour now (make up first); Data Docs in the portal
	QUALITY_DOCS_DIR=data/quality/data_docs $(QPY) -m expectations $(QUALITY_ARGS)

test: system-deps $(VENV)/.installed $(QVENV)/.installed $(SVENV)/.installed lint ## Lint, type-check and run the whole test suite, the compose test last (COMPOSE_TEST=0 leaves it out)
	$(QPY) -m pytest --noconftest -q -p no:cacheprovider tests/quality $(PYTEST_ARGS)
	$(PY) -m pytest --ignore=tests/quality $(PYTEST_ARGS)
	$(if $(filter 0,$(COMPOSE_TEST)),@echo "compose test left out (COMPOSE_TEST=0)",$(MAKE) --no-print-directory compose-test)

unit: $(VENV)/.installed ## Unit tests only (no services)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: system-deps $(VENV)/.installed ## Integration tests only (start their own services)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

lint: $(VENV)/.installed ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy iot_common iot_data_generator mqtt_bridge stream_jobs portal local

bench: system-deps $(VENV)/.installed ## Throughput, freshness, latency and size benchmarks (prints figures)
	$(PY) -m tests.bench

soak: system-deps $(VENV)/.installed ## Steady load while a random component is killed every minute or so (MINUTES=10), then exactly-once and flat memory checked (not part of make test)
	$(PY) -m tests.soak

constraints: $(VENV)/.installed ## Re-pin the full dependency tree after changing pyproject.toml
	@(echo "# Full pinned dependency tree (pip freeze of .venv); regenerate with: make constraints"; \
	  $(PY) -m pip freeze --exclude-editable) > constraints.txt

clean: down ## Stop and delete all local data (./data) and the virtualenv
	rm -rf data $(VENV) $(QVENV) $(SVENV)

.PHONY: compose-test
compose-test: system-deps $(VENV)/.installed ## Build the images and run the platform with docker-compose as users do (starts dockerd if none runs; images cached in ~/.cache/iot-platform/docker), readings checked end to end from the host
	IOT_COMPOSE_TEST=1 $(PY) -m pytest tests/compose -s -p no:cacheprovider $(PYTEST_ARGS)
