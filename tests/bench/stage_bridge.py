"""Stage `bridge`: the MQTT bridge against a pipe of C tools, side by side, MQTT -> Kafka.

The same Mosquitto and Kafka carry both, one after the other, in rounds: parallel
`mosquitto_pub -l` (C, QoS 1; Debian's mosquitto-clients) publish the same readings
in the original format, and either

* the C pipe `mosquitto_sub -q 1 -c | kcat -P` (Debian's mosquitto-clients and kcat)
  forwards them: mosquitto_sub acknowledges a message when it has printed it, before
  Kafka has anything, so a crash loses what the pipe holds (at most once); or
* the bridge (a real process, default settings) forwards them: it acknowledges after
  Kafka confirmed, parses and checks the contract, dead-letters, drops resends and
  applies back-pressure.

Rates are counted from each target topic's end offsets: steady (between the counter's
first and second-to-last change) and overall; CPU per reading is the forwarding
processes' user + system time (after start-up) over the readings that arrived. The
ratio bridge / pipe is taken per round, so both sides of a ratio saw the same load
on the machine. `mosquitto_pub -l` itself loses a few lines now and then (13 in
200,000 measured): a side is done when
its publishers have exited and its topic has not grown for QUIET_S, and the readings
that arrived are printed beside the ones published.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from iot_common.kafka_io import ensure_topics
from iot_common.topics import TopicSpec
from local.services import Stack
from tests.bench.common import BenchEnv, Publishers, Record, rss_peak_mb
from tests.integration.harness import Proc, _http_ok, add_account, free_port, wait_for

QUIET_S = 3.0
PARTITIONS = 3  # the readings topic's default (KAFKA_READINGS_PARTITIONS)


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


def rate_until_quiet(
    count: Callable[[], int],
    publishing: Callable[[], bool],
    *,
    timeout: float = 900,
    poll_s: float = 0.05,
) -> tuple[float, float, int]:
    """Poll count() until the publishers are done and it has not grown for QUIET_S.
    Returns (steady rate, overall rate, final count): steady between the counter's
    first and second-to-last change, overall from the start to the last change."""
    t0 = time.perf_counter()
    changes: list[tuple[float, int]] = [(t0, count())]
    deadline = t0 + timeout
    while True:
        done = count()
        now = time.perf_counter()
        if done != changes[-1][1]:
            changes.append((now, done))
        if not publishing() and now - changes[-1][0] > QUIET_S:
            break
        if now > deadline:
            raise TimeoutError(f"still counting after {timeout:.0f} s ({done} readings)")
        time.sleep(poll_s)
    final = changes[-1][1] - changes[0][1]
    if len(changes) < 4:
        return float("nan"), float("nan"), final
    (t1, c1), (t2, c2) = changes[1], changes[-2]
    return (c2 - c1) / (t2 - t1), final / (changes[-1][0] - t0), final


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_topic(stack: Stack, name: str) -> str:
    ensure_topics(stack.bootstrap, [TopicSpec(name, PARTITIONS, {})])
    return name


def run_pipe(stack: Stack, work: Path, n: int) -> dict[str, Any]:
    """mosquitto_sub -q 1 | kcat -P: the C tools' rate on this broker and Kafka."""
    uid = uuid.uuid4().hex[:6]
    mqtt_topic, kafka_topic = f"pipe-{uid}", make_topic(stack, f"bench.pipe.{uid}")
    account = add_account(stack, f"pipe-{uid}", (("read", mqtt_topic),))
    login = ["-u", account.username, "-P", account.password]
    sub = subprocess.Popen(
        # -c: a persistent session, as the bridge's; the client id is the username.
        [
            "mosquitto_sub",
            "-p",
            str(stack.mqtt_port),
            "-q",
            "1",
            "-c",
            "-i",
            account.username,
            *login,
            "-t",
            mqtt_topic,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    kcat = subprocess.Popen(
        ["kcat", "-P", "-b", stack.bootstrap, "-t", kafka_topic],
        stdin=sub.stdout,
        stderr=subprocess.DEVNULL,
    )
    assert sub.stdout is not None
    sub.stdout.close()  # kcat holds the read end
    try:
        time.sleep(1.0)  # the subscription exists before the first publish
        out = work / f"pipe-{uid}"
        out.mkdir(parents=True)
        cpu0 = cpu_seconds(sub.pid) + cpu_seconds(kcat.pid)
        pub = Publishers(stack, mqtt_topic, n, out)
        steady, overall, got = rate_until_quiet(
            lambda: kafka_count(stack.bootstrap, kafka_topic), pub.running
        )
        cpu = cpu_seconds(sub.pid) + cpu_seconds(kcat.pid) - cpu0
    finally:
        sub.terminate()
        sub.wait()
        kcat.wait(30)
    return {
        "per_s_steady": steady,
        "per_s_overall": overall,
        "readings_in_kafka": got,
        "cpu_us_per_reading": cpu / max(got, 1) * 1e6,
    }


def run_bridge(stack: Stack, work: Path, n: int) -> dict[str, Any]:
    """The bridge with its default settings, on topics of its own."""
    uid = uuid.uuid4().hex[:6]
    mqtt_topic = f"sensors-{uid}"
    account = add_account(
        stack, f"bridge-{uid}", (("read", mqtt_topic), ("read", f"{mqtt_topic}/#"))
    )
    health = free_port()
    env = {
        **stack.python_env(),
        "MQTT_TOPIC": mqtt_topic,
        "MQTT_USERNAME": account.username,
        "MQTT_PASSWORD": account.password,
        "MQTT_CLIENT_ID": account.username,
        "KAFKA_TOPIC_READINGS": f"bench.bridge.{uid}",
        "KAFKA_TOPIC_DLQ": f"bench.bridge.{uid}.dlq",
        "KAFKA_TOPIC_SENSORS": f"bench.bridge.{uid}.sensors",
        "HEALTH_PORT": str(health),
    }
    out = work / f"bridge-{uid}"
    out.mkdir(parents=True)
    bridge = Proc("bridge", [sys.executable, "-m", "mqtt_bridge"], env, out / "bridge.log")
    bridge.start()
    try:
        wait_for(lambda: bridge.alive and _http_ok(health), 60, "bridge")
        assert bridge.p is not None
        cpu0 = cpu_seconds(bridge.p.pid)  # after start-up (imports, the dedup refill)
        pub = Publishers(stack, mqtt_topic, n, out)
        steady, overall, got = rate_until_quiet(
            lambda: kafka_count(stack.bootstrap, env["KAFKA_TOPIC_READINGS"]), pub.running
        )
        cpu = cpu_seconds(bridge.p.pid) - cpu0
        rss = rss_peak_mb(bridge.p.pid)
    finally:
        bridge.stop()
    return {
        "per_s_steady": steady,
        "per_s_overall": overall,
        "readings_in_kafka": got,
        "cpu_us_per_reading": cpu / max(got, 1) * 1e6,
        "bridge_rss_mb": rss,
    }


def run(env: BenchEnv, args: argparse.Namespace, record: Record) -> None:
    ratios = []
    for i in range(args.bridge_rounds):
        pipe = run_pipe(env.stack, env.work, args.bridge)
        record(f"C pipe mosquitto_sub | kcat, round {i + 1}", {"published": args.bridge, **pipe})
        bridge = run_bridge(env.stack, env.work, args.bridge)
        ratio = bridge["per_s_steady"] / pipe["per_s_steady"]
        ratios.append(ratio)
        record(
            f"bridge (ack after Kafka), round {i + 1}",
            {"published": args.bridge, **bridge, "ratio_to_pipe": ratio},
        )
    record(
        "bridge / C pipe, steady rates",
        {"rounds": len(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)},
    )
