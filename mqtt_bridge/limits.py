"""Limits against hostile input, beside the size limit of the contract (`oversized`).

Flood: at most `per_second` readings of one sensor per second of *event time* (its
`dt`). A sensor reports once an interval (a second in the original), so a burst of
readings that share an event second is a flood (a broken or hostile publisher),
while a backlog the broker delivers after an outage, however fast, spreads over the
seconds it was recorded in and passes untouched: a limit on arrival rate would
refuse exactly the readings an outage kept for us. Readings past the limit become
dead letters (`rate_limited`), so nothing vanishes without a trace.

Memory is bounded: the counts of the last `capacity` (sensor, second) pairs, the
oldest forgotten first (a flood of fresh pairs forgets old ones; each of them is
still limited while it is remembered).
"""

from __future__ import annotations

from collections import OrderedDict

US = 1_000_000


class FloodGuard:
    def __init__(self, per_second: int, capacity: int = 100_000) -> None:
        if per_second < 1:
            raise ValueError("per_second must be at least 1")
        self.per_second, self.capacity = per_second, capacity
        # A FIFO that drops its oldest in O(1) (mqtt_bridge.dedup says why not a dict).
        self._counts: OrderedDict[tuple[str, int], int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._counts)

    def admit(self, sensor_id: str, ts_us: int) -> bool:
        """Count a reading; False once its sensor and event second are past the limit."""
        key = (sensor_id, ts_us // US)
        seen = self._counts.get(key, 0)
        if seen >= self.per_second:
            return False
        self._counts[key] = seen + 1
        if seen == 0 and len(self._counts) > self.capacity:
            self._counts.popitem(last=False)
        return True


def topic_mismatch(topic: bytes, device_prefix: bytes, sensor_id: str) -> bool:
    """A reading on a device's own topic (`sensors/<id>`) must name that device."""
    return topic.startswith(device_prefix) and topic[len(device_prefix) :] != sensor_id.encode()
