"""mqtt_bridge.mqtt_client: the batching client delivers exactly what paho's own
reader delivers, for any stream of packets cut at any points, and writes PUBACKs."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import paho.mqtt.client as mqtt
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from mqtt_bridge.mqtt_client import BatchingClient

Seen = tuple[bytes, bytes, int, int, bool, bool]


class FakeSocket:
    """A non-blocking socket that yields the given chunks (at most `n` bytes a recv)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = [c for c in chunks if c]
        self.sent = bytearray()

    def recv(self, n: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        head = self.chunks[0]
        out, rest = head[:n], head[n:]
        if rest:
            self.chunks[0] = rest
        else:
            self.chunks.pop(0)
        return out

    def send(self, data: bytes) -> int:
        self.sent += data
        return len(data)

    def pending(self) -> bool:
        return bool(self.chunks)

    def close(self) -> None:
        self.chunks = []

    def fileno(self) -> int:
        return -1


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (128 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: bytes, payload: bytes, qos: int, mid: int, dup: bool, retain: bool) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"")
    body += payload
    header = 0x30 | (8 if dup else 0) | (qos << 1) | (1 if retain else 0)
    return bytes([header]) + remaining_length(len(body)) + body


def client(cls: type[mqtt.Client], sock: FakeSocket, seen: list[Seen]) -> mqtt.Client:
    c = cls(CallbackAPIVersion.VERSION2, client_id="t", manual_ack=True)

    def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        seen.append((m._topic, bytes(m.payload), m.qos, m.mid, bool(m.dup), bool(m.retain)))

    c.on_message = on_message
    c._sock = sock  # type: ignore[assignment]
    return c


packets = st.one_of(
    st.builds(
        publish,
        st.binary(min_size=0, max_size=40),  # an empty topic is malformed in 3.1.1
        st.binary(max_size=300),
        st.sampled_from([0, 1, 2]),
        st.integers(1, 65535),
        st.booleans(),
        st.booleans(),
    ),
    st.just(b"\xd0\x00"),  # PINGRESP
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=300, deadline=None)
@given(st.lists(packets, max_size=30), st.lists(st.integers(0, 10_000), max_size=20))
def test_same_messages_as_paho(stream: list[bytes], cuts: list[int]) -> None:
    data = b"".join(stream)
    expected: list[Seen] = []
    plain_sock = FakeSocket(split(data, cuts))
    plain = client(mqtt.Client, plain_sock, expected)
    plain_rcs = []
    for _ in range(10 * len(data) + 10):
        rc = plain.loop_read()
        plain_rcs.append(rc)
        if rc != mqtt.MQTT_ERR_SUCCESS or not plain_sock.pending():
            break

    got: list[Seen] = []
    fast_sock = FakeSocket(split(data, cuts))
    fast = client(BatchingClient, fast_sock, got)
    assert isinstance(fast, BatchingClient)
    for _ in range(10 * len(data) + 10):
        rc = fast.read_packets(7)
        if rc != mqtt.MQTT_ERR_SUCCESS or not (fast_sock.pending() or fast.buffered()):
            break

    # paho stops at a malformed packet; so must we, having delivered the same before it.
    assert got == expected
    assert (rc != mqtt.MQTT_ERR_SUCCESS) == (plain_rcs[-1] != mqtt.MQTT_ERR_SUCCESS)


def test_fast_path_takes_whole_publishes_without_paho_reader() -> None:
    data = b"".join(publish(b"sensors", b'{"id":"Sensor 1"}', 1, m, False, False) for m in (1, 2))
    seen: list[Seen] = []
    sock = FakeSocket([data])
    c = client(BatchingClient, sock, seen)
    assert isinstance(c, BatchingClient)
    assert c.read_packets(10) == mqtt.MQTT_ERR_SUCCESS
    assert [s[3] for s in seen] == [1, 2]
    assert c.buffered() == 0


def test_acks_are_written_together_and_only_when_flushed() -> None:
    sock = FakeSocket([])
    c = client(BatchingClient, sock, [])
    assert isinstance(c, BatchingClient)
    for mid in (1, 258, 65535):
        c.queue_ack(mid)
    assert sock.sent == b"" and c.pending_acks() == 3
    assert c.flush_acks() == mqtt.MQTT_ERR_SUCCESS
    assert bytes(sock.sent) == b"\x40\x02\x00\x01" + b"\x40\x02\x01\x02" + b"\x40\x02\xff\xff"
    assert c.pending_acks() == 0
    assert c.flush_acks() == mqtt.MQTT_ERR_SUCCESS and len(sock.sent) == 12
