"""MQTT -> Kafka with nothing lost and nothing doubled.

* QoS 1 subscription in a persistent session (stable client id, clean session
  off): the broker keeps what arrives while the bridge is away.
* paho's manual ack: an MQTT message is acknowledged only after Kafka confirmed
  the record (idempotent producer, acks=all). A crash before that makes the
  broker resend it; the resend is recognised (see dedup.py) and dropped.
* Back-pressure: above `max_in_flight` unconfirmed records the MQTT loop waits,
  so a Kafka outage makes the broker queue instead of the bridge's memory grow.
  How long an outage that rides out is depends on Mosquitto's queue limits and
  the rate: `outage_horizon_s` computes it; it is logged at start.
* Every message is untrusted. Anything that breaks the contract, anything Kafka
  refuses for this record alone (too large, bad timestamp), and any exception
  nobody foresaw while handling one message becomes a dead letter with its
  reason, and the bridge goes on: no single message can stop it or make it
  restart in a loop. A dead letter keeps at most `dlq_max_payload_bytes` of its
  payload, with the full size and SHA-256 in headers. The broker's resends of a
  message already dead-lettered are dropped (dedup.RecentDigests).
* Only Kafka itself being away longer than the delivery timeout, or a fatal
  producer error, stops the bridge (unacknowledged messages are then resent).

One thread drives both clients (paho's loop() and the producer's poll()), so
acks are written by the thread that owns the MQTT socket and no locks are
needed (paho's socket is not safe to write from two threads).
"""

from __future__ import annotations

import hashlib
import logging
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import paho.mqtt.client as mqtt
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from paho.mqtt.enums import CallbackAPIVersion

from iot_common import topics
from iot_common.contract import parse_reading
from iot_common.crashpoints import crash_point
from iot_common.errors import InvalidReading, reason_code
from iot_common.kafka_io import CLIENT_LOGGER, ensure_topics, read_tail
from iot_common.metrics import by_label, counter, gauge
from iot_common.stats import Counters
from iot_common.topics import TopicSpec
from mqtt_bridge.dedup import Key, RecentDigests, RecentKeys, Verdict
from mqtt_bridge.errors import KafkaDeliveryError
from mqtt_bridge.limits import FloodGuard, topic_mismatch
from mqtt_bridge.mqtt_client import BatchingClient
from mqtt_bridge.sensors import SensorPublisher
from mqtt_bridge.settings import READBACK_GROUP, BridgeSettings

log = logging.getLogger(__name__)

# librdkafka retries a record until this passes (then the bridge stops and the
# broker resends). Mosquitto's queue limits usually bound an outage sooner:
# see outage_horizon_s.
DELIVERY_TIMEOUT_MS = 24 * 3600 * 1000

# Kafka refused this record, not the cluster: dead-letter it rather than stop.
RECORD_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError._INVALID_ARG,
    }
)
# MQTT packets handled per loop pass before Kafka's delivery reports are served and
# the pass's PUBACKs go out in one write.
MAX_PACKETS_PER_PASS = 500
MAX_TOPIC_HEADER = 1024  # MQTT topics may be 64 KiB; the header keeps a prefix
MAX_REASON = 1024

Headers = list[tuple[str, bytes]]  # every header the bridge writes is bytes
OnDone = Callable[[KafkaError | None], None]


def outage_horizon_s(
    *,
    max_queued_bytes: int,
    max_queued_messages: int,
    readings_per_second: float,
    payload_bytes: int,
    max_in_flight: int,
    delivery_timeout_s: float,
) -> float:
    """How long Kafka may be away with nothing lost: the broker queues for the
    bridge up to its limits (0 = none), the bridge holds `max_in_flight` more,
    and librdkafka gives up on a record after the delivery timeout."""
    limits = [delivery_timeout_s]
    if max_queued_bytes:
        limits.append(max_queued_bytes / (readings_per_second * payload_bytes))
    if max_queued_messages:
        limits.append(max_queued_messages / readings_per_second)
    held = max_in_flight / readings_per_second
    return min(delivery_timeout_s, min(limits) + held)


def topic_specs(s: BridgeSettings) -> list[TopicSpec]:
    """The topics the bridge writes, as it creates them."""
    return [
        topics.readings_spec(
            s.kafka_topic_readings, s.kafka_readings_partitions, s.dt_max_ahead_seconds
        ),
        topics.dead_letters_spec(s.kafka_topic_dlq),
        topics.sensors_spec(s.kafka_topic_sensors),
    ]


def subscriptions(topic: str, shared_group: str = "") -> list[str]:
    """The bridge's topic filters: the shared topic and every device's topic under
    it; with a group, as MQTT shared subscriptions (one member gets each message)."""
    filters = [topic, f"{topic}/#"]
    return [f"$share/{shared_group}/{f}" for f in filters] if shared_group else filters


def topic_bytes(msg: mqtt.MQTTMessage) -> bytes:
    """The topic as sent (paho's `topic` property decodes it and may raise)."""
    raw = getattr(msg, "_topic", b"")
    return raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "replace")


def bounded_reason(reason: str) -> bytes:
    return reason.encode("utf-8", "replace")[:MAX_REASON]


@dataclass
class Stats(Counters):
    received: int = counter("MQTT messages received")
    forwarded: int = counter("readings handed to Kafka (iot.readings)")
    dead_lettered: int = counter("messages sent to the dead letters (iot.readings.dlq)")
    dead_letters: dict[str, int] = by_label("reason", "dead letters by reason code")
    redeliveries_dropped: int = counter("MQTT resends of a message already handled")
    kafka_rejected: int = counter("records Kafka refused, dead-lettered instead")
    kafka_errors: int = counter("Kafka client errors reported (reconnects, timeouts)")
    internal_errors: int = counter("unforeseen exceptions on one message, dead-lettered")
    untraceable: int = counter("messages not even a bare dead letter could hold (logged)")
    in_flight: int = gauge("records handed to Kafka and not yet confirmed")
    mqtt_connected: bool = gauge("1 while connected to the MQTT broker", False)
    outage_horizon_s: float = gauge("how long Kafka may be away with nothing lost (s)")


class ReceivedAt:
    """UTC receive time as ISO-8601 text, the date part formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = b""

    def header(self, now_us: int) -> bytes:
        second, micros = divmod(now_us, 1_000_000)
        if second != self._second:
            self._second = second
            self._prefix = (
                datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S").encode()
            )
        return b"%s.%06dZ" % (self._prefix, micros)


def producer_config(settings: BridgeSettings) -> dict[str, object]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "logger": CLIENT_LOGGER,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "delivery.timeout.ms": DELIVERY_TIMEOUT_MS,
        "queue.buffering.max.messages": max(100_000, 2 * settings.max_in_flight),
    }


class Bridge:
    def __init__(self, settings: BridgeSettings) -> None:
        self.s = settings
        self.stats = Stats()
        self.fatal: Exception | None = None
        self._stop = threading.Event()
        self._draining = False
        self._received_at = ReceivedAt()
        self._bounds = settings.time_bounds()
        self._recent = RecentKeys(settings.dedup_window)
        self._dead = RecentDigests(settings.dead_letter_memory)
        self._flood = FloodGuard(settings.max_readings_per_sensor_second)
        self._device_prefix = f"{settings.mqtt_topic}/".encode()
        # Reading keys sent to Kafka but not confirmed -> resends waiting for that confirmation.
        self._pending: dict[Key, list[int]] = {}
        self._errors_logged = 0

        config = producer_config(settings)
        self._producer = Producer({**config, "error_cb": self._on_kafka_error})
        self._sensor_config = config
        self._client = BatchingClient(
            CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            clean_session=False,
            manual_ack=True,
        )
        if settings.mqtt_username:
            password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
            self._client.username_pw_set(settings.mqtt_username, password)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # -- start-up -------------------------------------------------------------

    def prepare(self) -> None:
        """Create topics, refill the dedup memories from the topics' tails, and
        log how long a Kafka outage can be ridden out."""
        s = self.s
        if s.kafka_create_topics:
            ensure_topics(s.kafka_bootstrap_servers, topic_specs(s))
        loaded = 0
        for rec in read_tail(
            s.kafka_bootstrap_servers, s.kafka_topic_readings, s.dedup_window, group=READBACK_GROUP
        ):
            if rec.value is None:
                continue
            try:
                reading = parse_reading(rec.value, s.max_payload_bytes)
            except InvalidReading:
                continue
            self._recent.remember(reading.key, hash(rec.value))
            loaded += 1
        dead = 0
        for rec in read_tail(
            s.kafka_bootstrap_servers, s.kafka_topic_dlq, s.dead_letter_memory, group=READBACK_GROUP
        ):
            sha = rec.headers.get("payload_sha256")
            digest = sha.decode("ascii", "replace") if sha else _sha256(rec.value or b"")
            self._dead.remember(rec.headers.get("mqtt_topic") or b"", digest)
            dead += 1
        log.info(
            "dedup memory refilled with %d readings from %s and %d dead letters from %s",
            loaded,
            s.kafka_topic_readings,
            dead,
            s.kafka_topic_dlq,
        )
        horizon = outage_horizon_s(
            max_queued_bytes=s.broker_max_queued_bytes,
            max_queued_messages=s.broker_max_queued_messages,
            readings_per_second=s.planned_readings_per_second,
            payload_bytes=s.planned_payload_bytes,
            max_in_flight=s.max_in_flight,
            delivery_timeout_s=DELIVERY_TIMEOUT_MS / 1000,
        )
        self.stats.outage_horizon_s = round(horizon, 1)
        log.info(
            "outage horizon: Kafka may be away %.0f min with nothing lost at %.0f readings/s "
            "of %d B (broker max_queued_bytes=%d, max_queued_messages=%d, in flight %d)",
            horizon / 60,
            s.planned_readings_per_second,
            s.planned_payload_bytes,
            s.broker_max_queued_bytes,
            s.broker_max_queued_messages,
            s.max_in_flight,
        )

    # -- MQTT callbacks (network thread) -------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
        if rc.is_failure:
            log.error("MQTT connection refused: %s", rc)
            return
        filters = subscriptions(self.s.mqtt_topic, self.s.mqtt_shared_group)
        client.subscribe([(f, 1) for f in filters])
        self.stats.mqtt_connected = True
        log.info(
            "connected to MQTT %s:%d as %s, subscribed to %s",
            self.s.mqtt_host,
            self.s.mqtt_port,
            self.s.mqtt_client_id,
            " and ".join(filters),
        )

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
        self.stats.mqtt_connected = False
        if not self._stop.is_set():
            log.warning("MQTT connection lost (%s); reconnecting", rc)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if self._draining:
            return  # not acked: the broker resends it to the next session
        self._wait_for_room()
        self.stats.received += 1
        try:
            self._handle(msg)
        except Exception as exc:  # noqa: BLE001 - one message must never stop the bridge
            self._unforeseen(msg, exc)

    def _handle(self, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        topic = topic_bytes(msg)
        received_us = time.time_ns() // 1000
        headers: Headers = [
            ("mqtt_topic", topic[:MAX_TOPIC_HEADER]),
            ("received_at", self._received_at.header(received_us)),
        ]
        mid, qos, dup = msg.mid, msg.qos, bool(msg.dup)
        try:
            reading = parse_reading(
                payload, self.s.max_payload_bytes, received_us=received_us, bounds=self._bounds
            )
        except InvalidReading as exc:
            self._dead_letter(payload, headers, exc.reason, mid, qos, dup=dup)
            return
        if topic_mismatch(topic, self._device_prefix, reading.sensor_id):
            reason = f"topic_mismatch: a reading of {reading.sensor_id!r:.64} on a device's topic"
            self._dead_letter(payload, headers, reason, mid, qos, dup=dup)
            return
        verdict = self._recent.check(reading.key, hash(payload), dup)
        if verdict is Verdict.NEW and dup and (topic, _sha256(payload)) in self._dead:
            # The broker resends a reading dead-lettered before a restart (rate_limited:
            # a decision of the memory we lost): it is in the dead letters once already.
            self.stats.redeliveries_dropped += 1
            self._ack(mid, qos)
            return
        if verdict is Verdict.NEW and not self._flood.admit(reading.sensor_id, reading.ts_us):
            reason = (
                f"rate_limited: more than {self.s.max_readings_per_sensor_second} readings"
                f" of {reading.sensor_id!r:.64} in one second of dt"
            )
            self._dead_letter(payload, headers, reason, mid, qos, dup=dup)
            return
        if verdict is Verdict.NEW:
            self._pending[reading.key] = []
            key = reading.key

            def done(err: KafkaError | None) -> None:
                self._reading_done(err, payload, headers, mid, qos, key)

            self._send(
                self.s.kafka_topic_readings,
                reading.sensor_id.encode(),
                payload,
                headers,
                done,
                # The record's Kafka timestamp is the receive time (ms): the live SQL
                # view splits archive and topic at one instant by it (docs/sql.md).
                received_us // 1000,
            )
            self.stats.forwarded += 1
            crash_point("bridge.produced")
        elif verdict is Verdict.REDELIVERY:
            self.stats.redeliveries_dropped += 1
            waiting = self._pending.get(reading.key)
            if waiting is not None:
                waiting.append(mid)  # ack together with the original
            else:
                self._ack(mid, qos)
        else:
            reason = f"duplicate: {reading.sensor_id!r} already reported a reading at this dt"
            self._dead_letter(payload, headers, reason, mid, qos, dup=dup)

    def _unforeseen(self, msg: mqtt.MQTTMessage, exc: Exception) -> None:
        """A dead letter for a message whose handling raised; never raises itself."""
        self.stats.internal_errors += 1
        if self._errors_logged < 20:
            self._errors_logged += 1
            log.exception("unforeseen error on one MQTT message; dead-lettering it")
        reason = f"internal_error: {type(exc).__name__}: {exc}"
        mid, qos = getattr(msg, "mid", 0), getattr(msg, "qos", 1)
        try:
            payload = bytes(msg.payload)
        except Exception:  # noqa: BLE001 - a payload we cannot even copy
            payload = b""
        headers: Headers = [("mqtt_topic", topic_bytes(msg)[:MAX_TOPIC_HEADER])]
        try:
            self._dead_letter(payload, headers, reason, mid, qos, dup=False)
        except Exception:  # not even a dead letter: leave a trace in the log
            self.stats.untraceable += 1
            log.exception(
                "could not dead-letter a message (%d bytes, sha256 %s); acknowledging it",
                len(payload),
                _sha256(payload),
            )
            self._ack(mid, qos)

    def _dead_letter(
        self,
        payload: bytes,
        headers: Headers,
        reason: str,
        mid: int,
        qos: int,
        *,
        dup: bool,
        waiting: Key | None = None,
    ) -> None:
        """Send a message to the dead-letter topic; ack it (and what waits on
        `waiting`) once Kafka has it. A DUP-flagged resend of a message already
        dead-lettered is dropped."""
        sha = _sha256(payload)
        topic = dict(headers).get("mqtt_topic") or b""
        if dup and (topic, sha) in self._dead and waiting is None:
            self.stats.redeliveries_dropped += 1
            self._ack(mid, qos)
            return
        self._dead.remember(topic, sha)
        self.stats.dead_lettered += 1
        code = reason_code(reason)  # our own words, never the message's: few label values
        self.stats.dead_letters[code] = self.stats.dead_letters.get(code, 0) + 1
        limit = self.s.dlq_max_payload_bytes
        base: Headers = [
            *headers,
            ("payload_size", str(len(payload)).encode()),
            ("payload_sha256", sha.encode()),
        ]

        def send(value: bytes, why: str) -> None:
            def done(err: KafkaError | None) -> None:
                if err is None:
                    crash_point("bridge.dead_lettered")
                    self._acked(mid, qos, waiting)
                elif err.code() in RECORD_ERRORS and value:
                    # Kafka refused even the bounded record: keep the trace without the payload.
                    send(b"", f"{why}; payload not stored: {err.str()}")
                else:
                    self._fail(KafkaDeliveryError(f"Kafka refused a dead letter: {err}"))

            cut: Headers = [("truncated", b"true")] if len(value) < len(payload) else []
            record = [*base, *cut, ("reason", bounded_reason(why))]
            self._send(self.s.kafka_topic_dlq, None, value, record, done)

        send(payload[:limit], reason)

    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers,
        on_done: OnDone,
        timestamp_ms: int = 0,  # 0: the producer's clock
    ) -> None:
        """Hand a record to the producer; `on_done(error)` runs once Kafka answered
        (now, from here, if the producer refuses it outright)."""

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            self.stats.in_flight -= 1
            on_done(err)

        # No copy on the hot path: the producer's stub wants the wider header type.
        wire = cast("list[tuple[str, str | bytes | None]]", headers)

        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=wire,
                    on_delivery=delivered,
                    timestamp=timestamp_ms,
                )
                self.stats.in_flight += 1
                return
            except BufferError:
                self._producer.poll(0.05)  # librdkafka's queue is full: let it drain
            except KafkaException as exc:  # refused before sending, e.g. too large
                error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                on_done(error or KafkaError(KafkaError._INVALID_ARG, str(exc)))
                return

    def _wait_for_room(self) -> None:
        """Back-pressure: while Kafka lags, stop reading MQTT (the broker queues)."""
        while self.stats.in_flight >= self.s.max_in_flight and not self._stop.is_set():
            self._producer.poll(0.05)

    # -- Kafka callbacks (same thread, from poll()) ---------------------------

    def _reading_done(
        self,
        err: KafkaError | None,
        payload: bytes,
        headers: Headers,
        mid: int,
        qos: int,
        key: Key,
    ) -> None:
        if err is None:
            crash_point("bridge.confirmed")
            self._acked(mid, qos, key)
        elif err.code() in RECORD_ERRORS:
            # This record, not Kafka, is the problem: keep it as a dead letter.
            self.stats.kafka_rejected += 1
            self.stats.forwarded -= 1
            reason = f"kafka_rejected: {err.str()}"
            self._dead_letter(payload, headers, reason, mid, qos, dup=False, waiting=key)
        else:
            # Kafka away past the delivery timeout, or fatal: not acked, so MQTT
            # resends it after the restart the supervisor does.
            self._fail(KafkaDeliveryError(f"Kafka refused a record: {err}"))

    def _acked(self, mid: int, qos: int, key: Key | None) -> None:
        self._ack(mid, qos)
        if key is not None:
            for other in self._pending.pop(key, ()):
                self._ack(other, qos)

    def _on_kafka_error(self, err: KafkaError) -> None:
        self.stats.kafka_errors += 1
        if err.fatal():
            self._fail(KafkaDeliveryError(f"fatal Kafka producer error: {err}"))
        else:
            log.warning("Kafka: %s", err)

    def _ack(self, mid: int, qos: int) -> None:
        if self.fatal is not None:
            return
        if qos == 1:
            self._client.queue_ack(mid)  # written at the end of this loop pass
        elif qos > 1:
            self._client.ack(mid, qos)

    def _fail(self, exc: Exception) -> None:
        if self.fatal is None:
            self.fatal = exc
            log.error("%s; stopping so that unacknowledged messages are resent", exc)
        self._stop.set()

    # -- run / stop -----------------------------------------------------------

    def _serve(self) -> None:
        """The one loop: MQTT socket I/O, then Kafka delivery reports (which ack)."""
        client = self._client
        connected = False
        backoff = 1.0
        while not self._stop.is_set():
            if not connected:
                try:
                    client.connect(self.s.mqtt_host, self.s.mqtt_port, self.s.mqtt_keepalive)
                    connected, backoff = True, 1.0
                except OSError as exc:
                    log.warning(
                        "MQTT %s:%d unreachable (%s); retrying in %.0f s",
                        self.s.mqtt_host,
                        self.s.mqtt_port,
                        exc,
                        backoff,
                    )
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
            if not self._network_step(client):
                connected = False
            self._producer.poll(0)  # delivery reports: their PUBACKs are queued
            client.flush_acks()  # one write for the pass's PUBACKs
            if self._draining and self.stats.in_flight == 0:
                client.loop(timeout=0.1)  # write the last PUBACKs
                break
        if connected:
            client.disconnect()

    @staticmethod
    def _network_step(client: BatchingClient, timeout: float = 0.01) -> bool:
        """One turn of paho's external-loop API: wait for the socket (not when bytes
        are buffered already), read up to MAX_PACKETS_PER_PASS packets, write, keep
        alive. A bare subscriber measured 47 µs of CPU per message with one packet a
        pass against 61 µs with loop(), which also services a wake-up socket pair
        that a single thread does not need; batching reads and PUBACKs (mqtt_client.py)
        cuts the system calls per message further. False when the connection is lost."""
        sock = client.socket()
        if sock is None:
            return False
        try:
            readable, _, _ = select.select(
                [sock],
                [sock] if client.want_write() else [],
                [],
                0 if client.buffered() else timeout,
            )
        except (OSError, ValueError):  # closed under us: reconnect
            return False
        ok = mqtt.MQTT_ERR_SUCCESS
        if (readable or client.buffered()) and client.read_packets(MAX_PACKETS_PER_PASS) != ok:
            return False
        if client.want_write() and client.loop_write() != ok:
            return False
        return client.loop_misc() == ok

    def run(self) -> None:
        """Serve until stop(); raises the fatal error if one ended the run."""
        self.prepare()
        publisher = SensorPublisher(
            self.s.sensors_file, self._sensor_config, self.s.kafka_topic_sensors
        )
        sensors = threading.Thread(
            target=publisher.run,
            args=(self._stop, self.s.sensors_poll_seconds),
            name="sensor-publisher",
            daemon=True,
        )
        sensors.start()
        try:
            self._serve()
        finally:
            self._stop.set()
            sensors.join(timeout=35)
        if self.fatal is not None:
            raise self.fatal

    def stop(self) -> None:
        """Graceful (signal-safe): stop taking messages, let Kafka confirm the
        in-flight ones and their acks go out, then disconnect. A second call stops now."""
        if self._draining:
            self._stop.set()
        self._draining = True


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
