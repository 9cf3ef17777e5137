"""Composition root of the generator: publish every sensor's reading every INTERVAL_MS.

Unlike the original it runs paho's network loop, reconnects, keeps to a fixed
schedule and can publish at QoS 1; the payload and topic are unchanged.
"""

from __future__ import annotations

import logging
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import start_http_server

from iot_common.contract import SensorSpec, parse_sensors
from iot_common.logs import configure as configure_logging
from iot_common.metrics import CountersCollector, by_label, counter, service_registry
from iot_common.stats import Counters
from iot_data_generator.readings import Faults, next_tick, readings_for_tick, utc_naive_now
from iot_data_generator.settings import GeneratorSettings

log = logging.getLogger("iot_data_generator")


@dataclass
class PublisherStats(Counters):
    published: int = counter("messages handed to the MQTT client")
    confirmed: int = counter("messages the broker confirmed (PUBACK at QoS 1)")
    refused: dict[str, int] = by_label(
        "reason", "messages the broker refused (MQTT 5 PUBACK reason, e.g. not authorized)"
    )
    connects_refused: dict[str, int] = by_label(
        "reason", "connections the broker refused (bad login, not authorized)"
    )


class Publisher:
    """A paho client that knows which of its messages the broker confirmed."""

    def __init__(self, s: GeneratorSettings, confirmed_log: IO[str] | None) -> None:
        self._log = confirmed_log
        self._lock = threading.Lock()
        self._pending: dict[int, bytes] = {}
        self._confirmed_early: set[int] = set()
        self._refused_early: set[int] = set()
        self.stats = PublisherStats()
        # MQTT 5: a refused publish gets a PUBACK with a reason (3.1.1 acks it silently).
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=s.mqtt_client_id, protocol=mqtt.MQTTv5
        )
        if s.mqtt_username:
            password = s.mqtt_password.get_secret_value() if s.mqtt_password else None
            self.client.username_pw_set(s.mqtt_username, password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.max_inflight_messages_set(1000)
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect
        self._where = f"{s.mqtt_host}:{s.mqtt_port}"
        self.client.on_disconnect = lambda *_a: log.warning("disconnected; paho reconnects")

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        # Not under the lock: paho may run on_publish (which takes it) meanwhile.
        info = self.client.publish(topic, payload, qos=qos)
        with self._lock:
            self.stats.published += 1
            if info.mid in self._confirmed_early:
                self._confirmed_early.discard(info.mid)
                self._confirm(payload)
            elif info.mid in self._refused_early:
                self._refused_early.discard(info.mid)
            else:
                self._pending[info.mid] = payload

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
        if rc.is_failure:
            reason = _reason(rc)
            self.stats.connects_refused[reason] = self.stats.connects_refused.get(reason, 0) + 1
            log.error("the broker at %s refused the connection: %s", self._where, rc)
        else:
            log.info("connected to %s", self._where)

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: Any, _p: object) -> None:
        with self._lock:
            payload = self._pending.pop(mid, None)
            if rc.is_failure:  # refused, e.g. not authorized for the topic: not confirmed
                reason = _reason(rc)
                if not self.stats.refused:
                    log.error("the broker refuses our messages: %s", rc)
                self.stats.refused[reason] = self.stats.refused.get(reason, 0) + 1
                if payload is None:
                    self._refused_early.add(mid)
            elif payload is None:
                self._confirmed_early.add(mid)
            else:
                self._confirm(payload)

    def _confirm(self, payload: bytes) -> None:
        self.stats.confirmed += 1
        if self._log is not None:
            self._log.write(payload.hex() + "\n")

    def wait_confirmed(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.05)
        return False


def _reason(rc: Any) -> str:
    """A reason code's name as a label value: "Not authorized" -> "not_authorized"."""
    return str(rc).strip().lower().replace(" ", "_").replace("/", "_")


def serve_metrics(s: GeneratorSettings, stats: PublisherStats) -> None:
    """/metrics on METRICS_PORT; a port in use costs the metrics, not the readings."""
    if not s.metrics_port:
        return
    registry = service_registry(CountersCollector("iot_generator", lambda: [({}, stats)]))
    try:
        start_http_server(s.metrics_port, s.metrics_host, registry)
    except OSError as exc:
        log.warning("no metrics: cannot listen on %s:%d (%s)", s.metrics_host, s.metrics_port, exc)


def run(s: GeneratorSettings, sensors: dict[str, SensorSpec], stop: threading.Event) -> int:
    faults = Faults(
        malformed=s.fault_malformed,
        out_of_range=s.fault_out_of_range,
        duplicate=s.fault_duplicate,
        late=s.fault_late,
        late_seconds=s.fault_late_seconds,
        silent=frozenset(i.strip() for i in s.fault_silent_sensors.split(",") if i.strip()),
        silent_after_s=s.fault_silent_after_seconds,
        clock_skew_s=dict(s.fault_clock_skew_seconds),
    )
    rng = random.Random(s.fault_seed)
    log_file = open(s.published_log, "a", buffering=1) if s.published_log else None  # noqa: SIM115
    pub = Publisher(s, log_file)
    serve_metrics(s, pub.stats)
    pub.client.connect_async(s.mqtt_host, s.mqtt_port)
    pub.client.loop_start()
    interval = s.interval_ms / 1000
    start = time.monotonic()
    ends = start + s.run_seconds if s.run_seconds > 0 else float("inf")
    log.info(
        "publishing %d sensors every %d ms to %s (QoS %d)%s",
        len(sensors),
        s.interval_ms,
        s.mqtt_topic,
        s.mqtt_qos,
        " with fault injection" if faults.any or faults.silent or faults.clock_skew_s else "",
    )
    tick = start
    try:
        while not stop.is_set() and tick < ends:
            now = utc_naive_now()
            for sensor in sensors.values():
                elapsed = time.monotonic() - start
                for payload in readings_for_tick(sensor, now, rng, faults, elapsed_s=elapsed):
                    pub.publish(s.mqtt_topic, payload, s.mqtt_qos)
            tick = next_tick(start, interval, time.monotonic())
            stop.wait(max(0.0, tick - time.monotonic()))
        if not pub.wait_confirmed(30):
            log.error("the broker did not confirm every message within 30 s")
    finally:
        pub.client.disconnect()
        pub.client.loop_stop()
        if log_file:
            log_file.close()
    log.info("published %d messages, %d confirmed", pub.stats.published, pub.stats.confirmed)
    return 0


def main() -> int:
    s = GeneratorSettings.load()
    configure_logging(s.logging_level, s.log_format)
    try:
        sensors = parse_sensors(Path(s.sensors_file).read_bytes())
    except (OSError, ValueError) as exc:
        log.error("cannot load the sensor list %s: %s", s.sensors_file, exc)
        return 2
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return run(s, sensors, stop)


if __name__ == "__main__":
    sys.exit(main())
