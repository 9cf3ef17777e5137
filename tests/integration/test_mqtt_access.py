"""Access control at the broker, as `make up` runs it (local.mqtt_auth): no anonymous
client, each account only its topics, and the bridge's session is the bridge's."""

import threading
import time
import uuid
from datetime import datetime

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from iot_data_generator.readings import reading_payload
from local.figures import parse
from local.mqtt_auth import Account
from local.services import free_port, wait_for
from tests.integration.harness import TEST_PUBLISHER, add_account, published, wait_exit

pytestmark = pytest.mark.integration


class V5Client:
    """An MQTT 5 client that records what the broker answered."""

    def __init__(self, port: int, client_id: str, account: Account | None = None) -> None:
        self.connack: list = []
        self.pubacks: dict[int, object] = {}
        self.messages: list[bytes] = []
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv5)
        if account is not None:
            self.client.username_pw_set(account.username, account.password)
        self.client.on_connect = lambda _c, _u, _f, rc, _p: (
            self.connack.append(rc),
            self.connected.set(),
        )
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.__setitem__(mid, rc)
        self.client.on_message = lambda _c, _u, msg: self.messages.append(msg.payload)
        self.client.reconnect_delay_set(30, 60)  # no retry within a test
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.connected.wait(10)

    def publish(self, topic: str, payload: bytes) -> object:
        info = self.client.publish(topic, payload, qos=1)
        wait_for(lambda: info.mid in self.pubacks, 10, "a PUBACK")
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_anonymous_and_wrong_password_clients_are_refused(pipeline):
    port = pipeline.stack.mqtt_port
    anonymous = V5Client(port, f"anon-{uuid.uuid4().hex[:6]}")
    wrong = V5Client(port, "x", Account(TEST_PUBLISHER.username, "not-the-password", ()))
    try:
        assert anonymous.connack and anonymous.connack[0].is_failure
        assert wrong.connack and wrong.connack[0].is_failure
        # Mosquitto 2.0 answers both with "Not authorized" (0x87).
        assert str(anonymous.connack[0]) == str(wrong.connack[0]) == "Not authorized"
    finally:
        anonymous.close()
        wrong.close()
    time.sleep(1)
    assert pipeline.health("HEALTH_PORT")["received"] == 0  # nothing reached the bridge


def test_a_device_may_publish_on_its_own_topic_only(pipeline):
    topic = pipeline.mqtt_topic
    device_id = f"dev-{pipeline.uid}"
    device = add_account(pipeline.stack, device_id, (("write", f"{topic}/{device_id}"),))
    client = V5Client(pipeline.stack.mqtt_port, device_id, device)
    ok = reading_payload(device_id, datetime(2026, 1, 1), 1)
    try:
        assert not client.publish(f"{topic}/{device_id}", ok).is_failure
    finally:
        client.close()
    for elsewhere in (f"{topic}/Sensor 2", topic, f"{topic}/{device_id}/x"):
        # Mosquitto answers "Not authorized" and closes the connection: a new one each.
        client = V5Client(pipeline.stack.mqtt_port, device_id, device)
        try:
            other = reading_payload("Sensor 2", datetime(2026, 1, 1), 2)
            refused = client.publish(elsewhere, other)
            assert refused.is_failure and str(refused) == "Not authorized", elsewhere
        finally:
            client.close()
    pipeline.wait_archived("readings", 1)
    time.sleep(2)
    assert [p.encode() for p in pipeline.table("readings")["payload"].to_pylist()] == [ok]
    assert pipeline.health("HEALTH_PORT")["received"] == 1


def test_the_generator_counts_the_publishes_the_broker_refuses(pipeline):
    metrics_port = free_port()
    # Its account may publish under the pipeline's topic, not under another one.
    gen = pipeline.generator(
        seconds=3, interval_ms=200, mqtt_topic="elsewhere", metrics_port=str(metrics_port)
    )
    seen: dict = {}

    def refused() -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                seen.update(parse(r.read().decode()))
        except OSError:
            return False
        counts = seen.get("iot_generator_refused_total", {})
        return sum(counts.values()) >= 1  # the broker closes the connection at each

    wait_for(refused, 20, "refusals in the generator's metrics")
    assert set(seen["iot_generator_refused_total"]) == {(("reason", "not_authorized"),)}
    assert wait_exit(gen, 60) == 0
    assert published(gen) == []  # nothing refused counts as confirmed
    assert pipeline.health("HEALTH_PORT")["received"] == 0


def test_no_other_account_can_take_the_bridges_session(pipeline):
    """Another account connecting with the bridge's client id gets its own username
    as client id instead: the bridge stays connected, and what is published meanwhile
    reaches it (a takeover with a clean session would have wiped its queue)."""
    bridge_id = pipeline.bridge.env["MQTT_CLIENT_ID"]
    intruder = V5Client(pipeline.stack.mqtt_port, bridge_id, TEST_PUBLISHER)
    impostor = V5Client(pipeline.stack.mqtt_port, bridge_id, Account(bridge_id, "guess", ()))
    try:
        assert not intruder.connack[0].is_failure
        assert impostor.connack[0].is_failure  # the bridge's name without its password
        payload = reading_payload("Sensor 1", datetime(2026, 1, 1), 3)
        assert not intruder.publish(pipeline.mqtt_topic, payload).is_failure
        pipeline.wait_archived("readings", 1)
    finally:
        intruder.close()
        impostor.close()
    log = pipeline.bridge.log.read_text()
    assert "MQTT connection lost" not in log
    assert pipeline.health("HEALTH_PORT")["mqtt_connected"] is True
