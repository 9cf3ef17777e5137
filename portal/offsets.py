"""A topic's offsets on Kafka: the live facts of a topic's catalogue page.

The earliest and the next offset of each partition, from the brokers' metadata
(no record is read, no consumer group joins or commits). Their difference is the
number of messages Kafka holds; for a compacted topic an upper bound. Blocking:
the app calls it in a thread pool. Kafka unreachable or the topic missing is
`Unavailable`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition

from portal.warehouse import Unavailable


@dataclass(frozen=True)
class PartitionOffsets:
    partition: int
    low: int  # the earliest offset Kafka still holds
    high: int  # the next offset to be written

    @property
    def messages(self) -> int:
        return max(0, self.high - self.low)


class TopicOffsets(Protocol):
    def offsets(self, topic: str) -> list[PartitionOffsets]: ...


class KafkaOffsets:
    """Watermarks through one consumer that never subscribes (calls serialised)."""

    def __init__(self, bootstrap: str, timeout_s: float = 3.0) -> None:
        self.bootstrap, self.timeout_s = bootstrap, timeout_s
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()  # one client, used from the app's thread pool

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": "iot-portal",  # required by the client; never joined
                    "enable.auto.commit": False,
                    "socket.timeout.ms": int(self.timeout_s * 1000),
                }
            )
        return self._consumer

    def offsets(self, topic: str) -> list[PartitionOffsets]:
        with self._lock:
            try:
                client = self._client()
                meta = client.list_topics(topic, timeout=self.timeout_s).topics.get(topic)
                if meta is None or meta.error is not None:
                    reason = meta.error.str() if meta is not None and meta.error else "unknown"
                    raise Unavailable(f"topic {topic}: {reason}", missing=True)
                out = []
                for p in sorted(meta.partitions):
                    low, high = client.get_watermark_offsets(
                        TopicPartition(topic, p), timeout=self.timeout_s, cached=False
                    )
                    out.append(PartitionOffsets(p, int(low), int(high)))
                return out
            except KafkaException as exc:
                raise Unavailable(f"Kafka at {self.bootstrap}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
