"""What an operator scrapes: each service's /metrics agrees with what was published
and archived, and every log line our code writes is one JSON object."""

import json
import urllib.request

import pytest

from local.figures import parse
from local.services import free_port, wait_for
from tests.integration.harness import mqtt_publish, published, wait_exit

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        return parse(r.read().decode())


def value(samples, name, **labels):
    return samples.get(name, {}).get(tuple(sorted(labels.items())))


def test_metrics_count_what_was_published_archived_and_dead_lettered(pipeline):
    gen_port = free_port()
    gen = pipeline.generator(seconds=4, interval_ms=50, metrics_port=str(gen_port))
    seen_generator = {}

    def generator_counts() -> bool:
        try:
            seen_generator.update(scrape(gen_port))
        except OSError:
            return False
        return (value(seen_generator, "iot_generator_published_total") or 0) > 0

    wait_for(generator_counts, 20, "the generator's /metrics")
    assert wait_exit(gen, 60) == 0
    sent = published(gen)
    mqtt_publish(pipeline.stack.mqtt_port, pipeline.mqtt_topic, [b"not json"])
    pipeline.wait_archived("readings", len(sent))

    bridge_port, jobs_port = int(pipeline.env["HEALTH_PORT"]), int(pipeline.env["WEB_PORT"])

    def jobs_saw_the_dead_letter() -> bool:
        return value(scrape(jobs_port), "iot_jobs_dead_letters_total", reason="not_json") == 1

    wait_for(jobs_saw_the_dead_letter, 60, "the dead letter in the stream jobs' metrics")
    bridge, jobs = scrape(bridge_port), scrape(jobs_port)

    assert value(bridge, "iot_bridge_received_total") == len(sent) + 1
    assert value(bridge, "iot_bridge_forwarded_total") == len(sent)
    assert value(bridge, "iot_bridge_dead_letters_total", reason="not_json") == 1
    assert value(bridge, "iot_bridge_mqtt_connected") == 1
    assert value(bridge, "iot_bridge_in_flight") == 0
    assert value(bridge, "process_resident_memory_bytes") > 10 * 2**20

    assert value(jobs, "iot_jobs_archive_rows_total", table="readings") == len(sent)
    assert value(jobs, "iot_jobs_archive_files_total", table="readings") >= 1
    assert value(jobs, "iot_jobs_archive_bytes_total", table="readings") > 0
    assert value(jobs, "iot_jobs_archive_lag", table="readings") == 0
    # The newest reading was published seconds ago: fresh, and not from the future.
    assert 0 <= value(jobs, "iot_jobs_freshness_seconds", table="readings") < 120
    assert value(jobs, "iot_jobs_readings_1m_readings_total") == len(sent)


def test_our_log_lines_are_json_objects(pipeline):
    mqtt_publish(pipeline.stack.mqtt_port, pipeline.mqtt_topic, [b"not json"])
    wait_for(lambda: pipeline.health("HEALTH_PORT")["dead_lettered"] == 1, 30, "the dead letter")
    for proc, logger in ((pipeline.bridge, "mqtt_bridge"), (pipeline.jobs, "stream_jobs")):
        # librdkafka writes its own lines to stderr (they start with %level|).
        ours = [ln for ln in proc.log.read_text().splitlines() if not ln.startswith("%")]
        docs = [json.loads(ln) for ln in ours]  # raises on a line that is not JSON
        assert all({"ts", "level", "logger", "msg"} <= d.keys() for d in docs), proc.name
        assert any(d["logger"].startswith(logger) for d in docs), proc.name
