"""Which reading the bridge has already forwarded: a bounded memory of keys.

MQTT QoS 1 is at-least-once: after a reconnect or a bridge restart the broker
resends every message the bridge had not acknowledged, flagged DUP. The bridge
acknowledges only after Kafka has a record, so such a resend may be a reading
already in Kafka. This memory (refilled from the tail of the Kafka topic at
start) tells the bridge to drop those, which makes `iot.readings` exactly-once.
A repeated reading that is *not* a protocol resend (a sensor or gateway sent it
twice) is a data-quality fact: it goes to the dead letters, never silently away.
"""

from __future__ import annotations

from collections import OrderedDict
from enum import Enum


class Verdict(Enum):
    NEW = "new"  # forward to iot.readings
    REDELIVERY = "redelivery"  # the broker resent what we already have: drop it
    DUPLICATE = "duplicate"  # same sensor and dt seen before: dead-letter it


Key = tuple[str, int]


class RecentKeys:
    """The last `capacity` reading keys with a digest of their payload, oldest evicted first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # A FIFO: OrderedDict drops its oldest in O(1). (A plain dict's
        # `next(iter(d))` walks over the holes its deletions left at the front:
        # 64 µs a message at 100,000 keys, measured.)
        self._digests: OrderedDict[Key, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._digests)

    def remember(self, key: Key, digest: int) -> None:
        self._digests[key] = digest
        if len(self._digests) > self.capacity:
            self._digests.popitem(last=False)

    def check(self, key: Key, digest: int, redelivery_flag: bool) -> Verdict:
        """Classify a reading and remember it when new."""
        known = self._digests.get(key)
        if known is None:
            self.remember(key, digest)
            return Verdict.NEW
        if redelivery_flag and known == digest:
            return Verdict.REDELIVERY
        return Verdict.DUPLICATE


class RecentDigests:
    """The last `capacity` dead letters' identities (MQTT topic, payload SHA-256).

    A message the broker resends (DUP flag) after the bridge dead-lettered it but
    crashed before its ack is recognised here and dropped, so each dead letter
    is in `iot.readings.dlq` once. A repeat without the DUP flag is a new message."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[tuple[bytes, str], None] = OrderedDict()  # a FIFO, as above

    def __len__(self) -> int:
        return len(self._seen)

    def remember(self, topic: bytes, sha256: str) -> None:
        self._seen[(topic, sha256)] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def __contains__(self, identity: tuple[bytes, str]) -> bool:
        return identity in self._seen
