"""Keep the compacted topic `iot.sensors` equal to sensors.json.

One record per sensor keyed by its id; the value is the sensors.json entry as
canonical JSON, a removed sensor gets a tombstone (null value). Only what
differs from the topic is published, so restarts add no spurious versions.
The topic is untrusted too: a key that is not UTF-8 (written by another
producer) is held with its bytes intact (surrogateescape) and, not being in
the file, gets its tombstone like any unknown sensor.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import orjson
from confluent_kafka import Producer

from iot_common.contract import parse_sensors
from iot_common.kafka_io import read_partitions
from mqtt_bridge.settings import READBACK_GROUP

log = logging.getLogger(__name__)


def sensor_record(entry: dict[str, object]) -> bytes:
    return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)


def diff_sensors(
    current: dict[str, bytes], wanted: dict[str, bytes]
) -> list[tuple[str, bytes | None]]:
    """Records that turn `current` (topic state) into `wanted` (file); None = tombstone."""
    changes: list[tuple[str, bytes | None]] = [
        (sid, value) for sid, value in wanted.items() if current.get(sid) != value
    ]
    changes += [(sid, None) for sid in current if sid not in wanted]
    return sorted(changes, key=lambda c: c[0])


class SensorPublisher:
    """Publishes sensors.json changes; `poll()` is cheap when the file is unchanged."""

    def __init__(self, path: Path, producer_config: dict[str, object], topic: str) -> None:
        self.path = path
        # Its own producer: flush() here must not wait for the readings' traffic.
        self.producer = Producer(producer_config)
        self.topic = topic
        self._state: dict[str, bytes] = {}
        bootstrap = str(producer_config["bootstrap.servers"])
        for key, value in read_partitions(bootstrap, topic, group=READBACK_GROUP):
            if key is None:
                continue
            sid = key.decode("utf-8", "surrogateescape")
            if value is None:
                self._state.pop(sid, None)
            else:
                self._state[sid] = value
        self._file_digest: bytes | None = None

    def poll(self) -> int:
        """Publish what changed since the last call; return the number of records sent."""
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            log.error("cannot read sensor list %s: %s; keeping the last one", self.path, exc)
            return 0
        digest = hashlib.sha256(raw).digest()
        if digest == self._file_digest:
            return 0
        self._file_digest = digest
        try:
            sensors = parse_sensors(raw)
        except (ValueError, orjson.JSONDecodeError) as exc:
            log.error("sensor list %s is invalid, keeping the last one: %s", self.path, exc)
            return 0
        wanted = {sid: sensor_record(s.entry) for sid, s in sensors.items()}
        changes = diff_sensors(self._state, wanted)
        for sid, value in changes:
            self.producer.produce(
                self.topic, key=sid.encode("utf-8", "surrogateescape"), value=value
            )
        remaining = self.producer.flush(30)
        if remaining:
            # Not applied: the next poll retries the same changes.
            self._file_digest = None
            log.error("Kafka did not confirm %d sensor records; will retry", remaining)
            return 0
        self._state = wanted
        if changes:
            log.info("published %d sensor record(s) to %s", len(changes), self.topic)
        return len(changes)

    def run(self, stop: threading.Event, every_s: float) -> None:
        while not stop.is_set():
            try:
                self.poll()
            except Exception:  # retried at the next poll; readings go on
                self._file_digest = None
                log.exception("publishing the sensor list failed; retrying")
            stop.wait(every_s)
