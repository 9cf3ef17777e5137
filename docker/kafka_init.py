"""The Kafka topic init of docker-compose (service kafka-init, a one-shot): create
every topic of the platform as its owners create it (the bridge's topics with the
bridge's specs, the stream jobs' with theirs), then exit 0. The services create
them too at their start (idempotent); doing it first, once, lets them start on a
broker that has everything, and makes `up -d` wait until Kafka really answers.

Settings from the environment, as the services read them (KAFKA_BOOTSTRAP_SERVERS,
topic names)."""

from __future__ import annotations

import logging

from iot_common import topics
from iot_common.kafka_io import ensure_topics
from mqtt_bridge.bridge import topic_specs
from mqtt_bridge.settings import BridgeSettings
from stream_jobs.settings import StreamSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    bridge, jobs = BridgeSettings(), StreamSettings()
    specs = [
        *topic_specs(bridge),
        topics.readings_1m_spec(jobs.kafka_topic_1m),
        topics.quality_1m_spec(jobs.kafka_topic_quality_1m),
        topics.quality_status_spec(jobs.kafka_topic_quality_status),
    ]
    ensure_topics(bridge.kafka_bootstrap_servers, specs, timeout_s=180)
    logging.info("Kafka topics ready: %s", ", ".join(s.name for s in specs))


if __name__ == "__main__":
    main()
