"""paho's client with batched socket I/O for a single-threaded subscriber.

paho-mqtt 2.x reads a packet with three or more `recv` calls (the command byte, each
byte of the remaining length, the body), handles one packet per `loop_read` unless
QoS 2 messages are in flight, and writes each PUBACK with its own `send`, plus a byte
to its wake-up socket pair, at the moment `ack()` is called. At thousands of messages
a second those system calls and loop passes cost more than the messages' handling.

It also builds a message object per PUBLISH (with a threading.Condition inside),
formats debug text nobody logs, and matches each topic against per-topic callbacks
even when there are none: together about half of the bridge's CPU per message, measured.

`BatchingClient` keeps paho's protocol handling (session, connect, subscribe,
keep-alive, reconnect, every packet but one) and changes where bytes come from, how
the commonest packet is decoded, and when acknowledgements go out:

* reads come from a buffer filled by one `recv` of up to READ_CHUNK bytes, so a pass
  of `read_packets` handles every whole packet that arrived, with one system call;
* a whole MQTT 3.1.1 PUBLISH of QoS 0 or 1 in the buffer is decoded here and handed
  to `on_message` (no per-topic callbacks may be registered); anything else (QoS 2,
  MQTT 5, other packets, a packet cut by the buffer's end, anything malformed) goes
  through paho's own reader, which reads the same buffer;
* `queue_ack(mid)` collects PUBACKs, and `flush_acks()` hands them to paho as one
  outgoing packet, written with one `send` (paho writes a partial send's rest later,
  in order, as for any packet).

Guarantee kept: an acknowledgement is written only after `queue_ack` was called for
it (the bridge calls it once Kafka confirmed), and every queued one is written by
the next `flush_acks` and loop pass while connected. Acknowledgements queued before a
reconnect are dropped with the old connection: MQTT resends those messages to the
new session, and the bridge recognises the resends (dedup.py).

It relies on paho's internals (`_sock_recv`, `_packet_queue`, `_in_packet`), which
is why paho-mqtt is pinned; tests/unit/test_mqtt_client.py checks, over arbitrary
packet streams cut at arbitrary points, that it delivers exactly what paho's own
reader delivers, and the PUBACK bytes it writes.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

READ_CHUNK = 256 * 1024
PUBACK = 0x40  # MQTT 3.1.1 fixed header: PUBACK, remaining length 2, then the id
PUBLISH = 0x30
_OK = mqtt.MQTT_ERR_SUCCESS


class BatchingClient(mqtt.Client):
    """A paho `Client` whose reads are buffered and whose PUBACKs are batched."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._acks = bytearray()
        self._filtered = False  # per-topic callbacks registered: paho dispatches

    def message_callback_add(self, sub: str, callback: mqtt.CallbackOnMessage) -> None:
        self._filtered = True
        super().message_callback_add(sub, callback)

    # -- reading ------------------------------------------------------------

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(READ_CHUNK)  # BlockingIOError when there is none
            if not data:
                return data  # connection closed: paho handles it
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        self._rpos = min(start + bufsize, len(self._rbuf))
        return self._rbuf[start : self._rpos]

    def buffered(self) -> int:
        """Bytes received and not yet handled."""
        return len(self._rbuf) - self._rpos

    def read_packets(self, max_packets: int) -> MQTTErrorCode:
        """Handle up to `max_packets` packets: whatever the buffer holds, after one
        `recv` if it is empty (call when the socket is readable or buffered() > 0)."""
        fast = (
            self._protocol != MQTTProtocolVersion.MQTTv5
            and not self._filtered
            and self._on_message is not None
        )
        handled = 0
        while handled < max_packets:
            handled += 1
            if fast and self._in_packet["command"] == 0 and self._publish_from_buffer():
                continue
            rc = self.loop_read()  # paho's reader: one packet, from the buffer or a recv
            if rc != _OK or not self.buffered():
                return rc
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()  # for keep-alive, as paho does
        return _OK

    def _publish_from_buffer(self) -> bool:
        """Decode and dispatch the buffer's next packet if it is a whole, well-formed
        QoS 0/1 PUBLISH (MQTT 3.1.1, section 3.3); False, consuming nothing, otherwise."""
        buf, pos, end = self._rbuf, self._rpos, len(self._rbuf)
        if end - pos < 2:
            return False
        header = buf[pos]
        qos = (header >> 1) & 3
        if header & 0xF0 != PUBLISH or qos > 1:
            return False
        length, mult, i = 0, 1, pos + 1
        for _ in range(4):  # the remaining length: at most 4 bytes of 7 bits
            if i >= end:
                return False
            byte = buf[i]
            i += 1
            length += (byte & 127) * mult
            mult <<= 7
            if byte < 128:
                break
        else:
            return False  # malformed: paho's reader reports it
        body_end = i + length
        if body_end > end or length < 2:
            return False  # not all here yet, or malformed
        topic_end = i + 2 + ((buf[i] << 8) | buf[i + 1])
        payload_start = topic_end + (2 if qos else 0)
        if topic_end == i + 2 or payload_start > body_end:
            return False  # malformed (an empty or overlong topic): paho's reader reports it
        msg = mqtt.MQTTMessage.__new__(mqtt.MQTTMessage)  # no MQTTMessageInfo: unused here
        msg._topic = buf[i + 2 : topic_end]
        msg.mid = (buf[topic_end] << 8) | buf[topic_end + 1] if qos else 0
        msg.payload = buf[payload_start:body_end]
        msg.qos, msg.dup, msg.retain = qos, bool(header & 8), bool(header & 1)
        msg.properties, msg.state, msg.info = None, mqtt.mqtt_ms_invalid, None  # type: ignore[assignment]
        msg.timestamp = mqtt.time_func()
        self._rpos = body_end
        on_message = self._on_message
        if on_message is not None:
            with self._in_callback_mutex:
                on_message(self, self._userdata, msg)
        return True

    def reconnect(self) -> MQTTErrorCode:
        # Bytes of the old connection and its unsent acknowledgements go with it.
        self._rbuf, self._rpos = b"", 0
        self._acks.clear()
        return super().reconnect()

    # -- acknowledging --------------------------------------------------------

    def queue_ack(self, mid: int) -> None:
        """A QoS 1 PUBACK for message `mid`, written by the next flush_acks()."""
        self._acks += bytes((PUBACK, 2, mid >> 8, mid & 0xFF))

    def pending_acks(self) -> int:
        return len(self._acks) // 4

    def flush_acks(self) -> MQTTErrorCode:
        """Queue every collected PUBACK as one write (sent now unless called from
        inside a paho callback, else at the next loop_write)."""
        if not self._acks or self._sock is None:
            return _OK
        batch, self._acks = bytes(self._acks), bytearray()
        return self._packet_queue(PUBACK, batch, 0, 0)
