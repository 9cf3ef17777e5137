"""Faust agents for the low-volume topics: the sensor list and the dead letters.

What Faust is for here (docs/architecture.md, "Why Faust"): the worker's
lifecycle, its web server, and these agents, which follow a topic of a few
records a second or fewer. The high-volume topic, iot.readings, is read by the
batch consumers of archive.py and resample.py instead.

* `SensorDirectory` keeps every sensor of the compacted topic iot.sensors, with
  its declared metadata and when its current version was seen; a tombstone
  removes it. Filled by one read of the whole topic at start, then kept current
  by the agent, which skips what that read already applied (by offset), so a
  restart never puts an older version over a newer one.
* `DeadLetterWatch` counts dead letters by reason code, overall and over the last
  minute, and logs a warning when a code's count in a minute reaches its
  threshold (once per code per minute): a noisy device or a broken producer
  shows in the logs and on /health without a query.

Both are plain classes, unit-tested without Kafka; `register` ties them to Faust.
Neither may stop the worker: a record they cannot read is counted and skipped.

With several stream-job processes (one Faust app id), Faust splits the topics'
partitions between them, as for any agent: both topics have one partition, so one
process follows each. The others' directory is the whole topic as read at their
start, and their dead-letter counts stay empty: their /health shows what their
process saw, not the fleet's. Nothing is written from either (no table, no topic),
so no reading is lost or doubled by it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from iot_common.metrics import by_label, counter
from iot_common.stats import Counters

log = logging.getLogger(__name__)

WINDOW_S = 60.0  # the dead letters' recent window


@dataclass(frozen=True)
class SensorEntry:
    sensor_id: str
    metadata: dict[str, Any]  # the sensors.json entry as the bridge published it
    seen_at: str  # when this version reached the stream jobs (UTC, ISO-8601)


class SensorDirectory:
    """The sensors iot.sensors holds now."""

    def __init__(self) -> None:
        self.sensors: dict[str, SensorEntry] = {}
        self._next: dict[int, int] = {}  # per partition: offsets below are applied
        self.skipped = 0  # records that are not a sensor entry

    def load(self, records: Iterable[tuple[int, int, bytes | None, bytes | None]]) -> None:
        """(partition, offset, key, value) of the whole topic, in offset order."""
        for partition, offset, key, value in records:
            self.apply(partition, offset, key, value)

    def apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> bool:
        """One record; False when it was applied before or is not a sensor entry."""
        if offset < self._next.get(partition, 0):
            return False
        self._next[partition] = offset + 1
        if key is None:
            self.skipped += 1
            return False
        sensor_id = key.decode("utf-8", "replace")
        if value is None:
            self.sensors.pop(sensor_id, None)
            return True
        try:
            metadata = orjson.loads(value)
        except orjson.JSONDecodeError:
            metadata = None
        if not isinstance(metadata, dict):
            self.skipped += 1
            return False
        seen = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
        self.sensors[sensor_id] = SensorEntry(sensor_id, metadata, seen)
        return True

    def summary(self) -> dict[str, Any]:
        return {"known": len(self.sensors), "skipped": self.skipped}


@dataclass
class DeadLetterCounts(Counters):
    dead_letters: dict[str, int] = by_label("reason", "dead letters read, by reason code")
    alerts: int = counter("alerts logged (DEAD_LETTER_ALERT_PER_MINUTE)")


class DeadLetterWatch:
    """Dead letters by reason code: in total, in the last minute, and alerts."""

    def __init__(self, alert_per_minute: int) -> None:
        self.alert_per_minute = alert_per_minute
        self.total: Counter[str] = Counter()
        self._recent: deque[tuple[float, str]] = deque()
        self._in_window: Counter[str] = Counter()  # codes of _recent: no recount per record
        self._alerted: dict[str, float] = {}
        self.alerts = 0

    def record(self, headers: Mapping[str, bytes | None], now: float | None = None) -> str:
        """One dead letter (its headers); returns its reason code."""
        now = time.monotonic() if now is None else now
        code = reason_code(headers.get("reason"))
        self.total[code] += 1
        self._recent.append((now, code))
        self._in_window[code] += 1
        self._forget(now)
        in_window = self._in_window[code]
        if (
            in_window >= self.alert_per_minute
            and now - self._alerted.get(code, -WINDOW_S) >= WINDOW_S
        ):
            self._alerted[code] = now
            self.alerts += 1
            log.warning(
                "dead letters: %d with reason %s in the last minute (alert at %d)",
                in_window,
                code,
                self.alert_per_minute,
            )
        return code

    def _forget(self, now: float) -> None:
        while self._recent and now - self._recent[0][0] > WINDOW_S:
            _, code = self._recent.popleft()
            self._in_window[code] -= 1
            if not self._in_window[code]:
                del self._in_window[code]

    def counts(self) -> DeadLetterCounts:
        """The totals as metrics (iot_common.metrics)."""
        return DeadLetterCounts(dict(self.total), self.alerts)

    def summary(self, now: float | None = None) -> dict[str, Any]:
        self._forget(time.monotonic() if now is None else now)
        return {
            "total": dict(self.total),
            "last_minute": dict(self._in_window),
            "alerts": self.alerts,
        }


def reason_code(reason: bytes | None) -> str:
    """The stable code of a `reason` header ("invalid_json: ..." -> "invalid_json");
    "other" for a header our bridge would not write (anyone may write to the topic,
    and a code is a metric's label: it must come from a small set)."""
    if not reason:
        return "unknown"
    code = reason.split(b":", 1)[0].strip()
    return code.decode("ascii") if _CODE.fullmatch(code) else "other"


_CODE = re.compile(rb"[a-z][a-z0-9_]{0,39}")


def headers_of(raw: Any) -> dict[str, bytes | None]:
    """Kafka headers as Faust hands them (a list of pairs or a mapping) -> a dict."""
    pairs = raw.items() if isinstance(raw, Mapping) else (raw or ())
    out: dict[str, bytes | None] = {}
    for pair in pairs:
        try:
            name, value = pair
        except (TypeError, ValueError):
            continue
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        if isinstance(name, str):
            out[name] = value if isinstance(value, bytes) or value is None else None
    return out


Records = Iterable[tuple[int, int, bytes | None, bytes | None]]


def register(
    app: Any,
    *,
    sensors_topic: str,
    dlq_topic: str,
    directory: SensorDirectory,
    load_sensors: Callable[[], Records],
    watch: DeadLetterWatch,
    retry_s: float = 5.0,
) -> None:
    """The two agents, on the Faust app (raw bytes in, nothing out). The sensor
    agent first loads the whole topic (`load_sensors`, retried until Kafka
    answers), then applies what comes after it."""
    raw = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }

    async def load() -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(None, lambda: directory.load(load_sensors()))
                return
            except Exception as exc:  # noqa: BLE001 - Kafka not there yet: wait, never crash
                log.warning("sensor directory: cannot read %s yet (%s)", sensors_topic, exc)
                await asyncio.sleep(retry_s)

    async def sensor_directory(stream: Any) -> None:
        await load()
        async for event in stream.events():
            msg = event.message
            try:
                directory.apply(msg.partition, msg.offset, event.key, event.value)
            except Exception:
                directory.skipped += 1
                log.exception("sensor directory: %s@%s skipped", msg.partition, msg.offset)

    async def dead_letter_watch(stream: Any) -> None:
        async for event in stream.events():
            try:
                watch.record(headers_of(event.headers))
            except Exception:
                log.exception("dead-letter watch: a record skipped")

    app.agent(app.topic(sensors_topic, **raw), name="sensor-directory")(sensor_directory)
    app.agent(app.topic(dlq_topic, **raw), name="dead-letter-watch")(dead_letter_watch)
