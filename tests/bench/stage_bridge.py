"""Stage `bridge`: the MQTT bridge alone, MQTT -> Kafka.

Parallel `mosquitto_pub -l` (C, QoS 1; Debian package mosquitto-clients) publish
readings to Mosquitto; the bridge (a real process, default settings) forwards them
to Kafka. Measures the rate (steady and overall), counted from the topic's end
offsets; and the bridge's peak RSS.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from local.services import Stack
from tests.bench.common import BenchEnv, Publishers, Record, rss_peak_mb, steady_rate
from tests.integration.harness import Pipeline, SqlServices


def kafka_count(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-count"})
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        return sum(
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        )
    finally:
        c.close()


def bench_bridge(stack: Stack, sql: SqlServices, work: Path, n: int) -> dict[str, Any]:
    pipe = Pipeline(stack, work / "bridge", sql_services=sql)
    pipe.work.mkdir(parents=True)
    pipe.bridge.start()
    pipe.wait_healthy(pipe.bridge, "HEALTH_PORT")
    topic = pipe.env["KAFKA_TOPIC_READINGS"]
    t0 = time.perf_counter()
    pub = Publishers(stack, pipe.mqtt_topic, n, pipe.work)
    steady = steady_rate(lambda: kafka_count(stack.bootstrap, topic), n)
    elapsed = time.perf_counter() - t0
    pub.wait()
    rss = rss_peak_mb(pipe.bridge.p.pid)  # type: ignore[union-attr]
    pipe.stop()
    return {
        "readings": n,
        "per_s_steady": steady,
        "per_s_overall": n / elapsed,
        "bridge_rss_mb": rss,
    }


def run(env: BenchEnv, args: argparse.Namespace, record: Record) -> None:
    record(
        "bridge alone (MQTT QoS 1 -> Kafka)",
        bench_bridge(env.stack, env.sql, env.work, args.bridge),
    )
