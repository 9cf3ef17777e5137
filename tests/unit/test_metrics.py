"""Metrics read from our Counters at scrape time, the /metrics endpoint, and JSON logs."""

import io
import json
import logging
import urllib.request
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iot_common.errors import reason_code
from iot_common.logs import JsonFormatter, configure, dict_config
from iot_common.metrics import (
    CountersCollector,
    GaugeFunction,
    by_label,
    counter,
    gauge,
    render,
    service_registry,
)
from iot_common.stats import Counters
from local.figures import parse
from mqtt_bridge.bridge import Stats
from mqtt_bridge.health import serve_health
from stream_jobs.agents import DeadLetterWatch
from stream_jobs.agents import reason_code as header_code


@dataclass
class Example(Counters):
    received: int = counter("messages received")
    in_flight: int = gauge("in flight now")
    connected: bool = False
    last_unix: float = 0.0
    by_reason: dict[str, int] = by_label("reason", "by reason")
    assigned: list[int] = field(default_factory=list)


def scrape(*collectors):
    """The text a scrape gets, and its samples as (name, labels) -> value, read back
    with the parser `make status` uses."""
    text = render(service_registry(*collectors)).decode()
    samples = {
        (name, labels): v for name, series in parse(text).items() for labels, v in series.items()
    }
    return text, samples


def test_fields_become_counters_and_gauges_by_their_declared_kind():
    stats = Example(received=5, in_flight=3, connected=True, last_unix=12.5)
    stats.by_reason.update({"not_json": 2, "oversized": 1})
    text, samples = scrape(CountersCollector("iot_x", lambda: [({"job": "a"}, stats)]))
    assert samples[("iot_x_received_total", (("job", "a"),))] == 5
    assert samples[("iot_x_in_flight", (("job", "a"),))] == 3
    assert samples[("iot_x_connected", (("job", "a"),))] == 1
    assert samples[("iot_x_last_unix", (("job", "a"),))] == 12.5
    assert samples[("iot_x_by_reason_total", (("job", "a"), ("reason", "not_json")))] == 2
    assert "# TYPE iot_x_received_total counter" in text
    assert "# TYPE iot_x_in_flight gauge" in text
    assert "# HELP iot_x_received_total messages received" in text
    assert "assigned" not in text  # a list is no metric


def test_values_are_read_at_each_scrape_not_at_registration():
    stats = Example()
    registry = service_registry(CountersCollector("iot_x", lambda: [({}, stats)]))
    assert b"iot_x_received_total 0.0" in render(registry)
    stats.received += 7
    assert b"iot_x_received_total 7.0" in render(registry)


def test_one_family_holds_the_series_of_every_labelled_source():
    a, b = Example(received=1), Example(received=2)
    _, samples = scrape(
        CountersCollector("iot_x", lambda: [({"table": "r"}, a), ({"table": "s"}, b)])
    )
    assert samples[("iot_x_received_total", (("table", "r"),))] == 1
    assert samples[("iot_x_received_total", (("table", "s"),))] == 2


def test_a_service_registry_has_the_process_figures_the_soak_watches():
    text, samples = scrape(GaugeFunction("iot_x_age", "age", ["t"], lambda: [(["a"], 4.0)]))
    assert samples[("iot_x_age", (("t", "a"),))] == 4.0
    assert "process_resident_memory_bytes" in text


def test_the_bridge_counts_dead_letters_by_our_own_reason_codes():
    assert reason_code("not_json: Expecting value") == "not_json"
    assert reason_code("duplicate: 'Sensor 1' already reported") == "duplicate"
    stats = Stats()
    stats.dead_letters["oversized"] = 3
    _, samples = scrape(CountersCollector("iot_bridge", lambda: [({}, stats)]))
    assert samples[("iot_bridge_dead_letters_total", (("reason", "oversized"),))] == 3
    assert samples[("iot_bridge_mqtt_connected", ())] == 0


@given(st.binary(max_size=80))
def test_a_reason_header_from_anyone_maps_to_a_small_set_of_label_values(raw):
    code = header_code(raw)
    assert code in ("unknown", "other") or (code.isascii() and len(code) <= 40)
    assert code == "unknown" or header_code(raw + b": more") in (code, "other")


def test_the_stream_jobs_dead_letter_counts_are_metrics():
    watch = DeadLetterWatch(alert_per_minute=1000)
    for reason in (b"not_json: x", b"not_json: y", b"Free text from someone"):
        watch.record({"reason": reason})
    _, samples = scrape(CountersCollector("iot_jobs", lambda: [({}, watch.counts())]))
    assert samples[("iot_jobs_dead_letters_total", (("reason", "not_json"),))] == 2
    assert samples[("iot_jobs_dead_letters_total", (("reason", "other"),))] == 1


def test_the_health_server_serves_metrics_and_health(tmp_path):
    stats = Example(received=9)
    registry = service_registry(CountersCollector("iot_x", lambda: [({}, stats)]))
    server = serve_health(0, lambda: (True, {"k": 1}), registry)
    port = server.server_address[1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            assert b"iot_x_received_total 9.0" in r.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            assert json.loads(r.read()) == {"healthy": True, "k": 1}
    finally:
        server.shutdown()


def test_the_health_server_binds_where_it_is_told():
    server = serve_health(0, lambda: (True, {}))
    try:
        assert server.server_address[0] == "127.0.0.1"  # the default: loopback only
    finally:
        server.shutdown()


# -- logs ---------------------------------------------------------------------------


def record(msg, *args, exc=None, **extra):
    rec = logging.LogRecord("iot.test", logging.WARNING, __file__, 1, msg, args, exc)
    rec.__dict__.update(extra)
    return rec


@given(st.text())
def test_a_json_log_line_is_one_line_holding_the_message(text):
    line = JsonFormatter().format(record("got %s", text))
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["msg"] == f"got {text}"
    assert doc["level"] == "WARNING" and doc["logger"] == "iot.test"
    assert doc["ts"].endswith("+00:00")


def test_a_json_log_line_keeps_the_traceback_and_extra_fields():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        line = JsonFormatter().format(record("failed", exc=sys.exc_info(), table="raw.readings"))
    doc = json.loads(line)
    assert "ValueError: boom" in doc["exc"] and "\n" not in line
    assert doc["table"] == "raw.readings"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_configure_sets_level_and_format(fmt, monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("warning", fmt)
        logging.getLogger("iot.x").info("hidden")
        logging.getLogger("iot.x").warning("shown")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    if fmt == "json":
        assert json.loads(lines[0])["msg"] == "shown"
    else:
        assert lines[0].endswith("WARNING iot.x: shown")


def test_faust_takes_the_same_config():
    config = dict_config("INFO")
    assert config["root"] == {"level": "INFO", "handlers": ["default"]}
    assert config["formatters"]["default"] == {"()": JsonFormatter}


# -- make status ----------------------------------------------------------------------


def bridge_text(stats):
    return render(service_registry(CountersCollector("iot_bridge", lambda: [({}, stats)]))).decode()


def test_status_shows_rates_dead_letters_lag_and_freshness():
    from local.figures import summary
    from stream_jobs.archive import ArchiveStats

    before, after = Stats(received=100, forwarded=90), Stats(received=300, forwarded=290)
    after.mqtt_connected = True
    after.dead_letters.update({"not_json": 4, "oversized": 1})
    archive = ArchiveStats(rows=1000, lag=42)

    def jobs(rows):
        archive.rows = rows
        return render(
            service_registry(
                CountersCollector("iot_jobs_archive", lambda: [({"table": "readings"}, archive)]),
                GaugeFunction(
                    "iot_jobs_freshness_seconds", "f", ["table"], lambda: [(["readings"], 3.5)]
                ),
            )
        ).decode()

    text = "\n".join(
        summary((bridge_text(before), bridge_text(after)), (jobs(1000), jobs(1400)), 2.0)
    )
    assert "connected to MQTT, 100/s in, 100/s to Kafka" in text
    assert "dead letters: not_json 4, oversized 1" in text
    assert "readings" in text and "1,400 archived, 200/s, lag 42, 3.5 s behind" in text


def test_status_says_which_service_did_not_answer():
    from local.figures import summary

    text = "\n".join(summary(None, None, 2.0))
    assert "bridge: /metrics did not answer" in text
    assert "stream jobs: /metrics did not answer" in text
