"""Kafka records -> Arrow tables of the raw archive, as pure functions.

Three tables, one per topic, each keeping the bytes it received verbatim:
  readings  (iot.readings)      partitioned by event_date (UTC date of dt)
  sensors   (iot.sensors)       every version of every sensor, with when it was seen
  rejected  (iot.readings.dlq)  dead letters with the reason, by received_date
Timestamps are UTC, microsecond precision, stored without a zone (Hive's
`timestamp`), so every engine reads the same wall-clock value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from mqtt_bridge.contract import parse_dt, parse_reading
from mqtt_bridge.errors import InvalidReading

TS = pa.timestamp("us")
US_PER_DAY = 86_400_000_000


@dataclass(frozen=True, slots=True)
class Record:
    """What the archive needs of a Kafka record (decoupled from the client library)."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


@dataclass(frozen=True)
class TableSpec:
    name: str  # folder under raw/ and the Hive table name
    schema: pa.Schema
    partition_column: str | None  # Hive partition (a date), not stored inside the files
    build: Callable[[Sequence[Record]], pa.Table]  # includes the partition column
    sort_by: tuple[str, ...]


def _header_ts(rec: Record, name: str) -> int:
    raw = rec.headers.get(name)
    if raw is not None:
        try:
            return parse_dt(raw.decode())
        except (InvalidReading, UnicodeDecodeError):
            pass
    return rec.timestamp_ms * 1000


def _dates(ts_us: pa.Array) -> pa.Array:
    return pc.cast(pc.cast(ts_us, TS), pa.date32())


READINGS_SCHEMA = pa.schema(
    [
        pa.field("sensor_id", pa.string()),
        pa.field("ts", TS),
        pa.field("value", pa.float64()),
        pa.field("payload", pa.string()),
        pa.field("mqtt_topic", pa.string()),
        pa.field("received_at", TS),
        pa.field("kafka_partition", pa.int32()),
        pa.field("kafka_offset", pa.int64()),
    ]
)


def build_readings(records: Sequence[Record]) -> pa.Table:
    sensor_id: list[str | None] = []
    ts: list[int | None] = []
    value: list[float | None] = []
    payload: list[str | None] = []
    topic: list[str | None] = []
    received: list[int] = []
    partitions: list[int] = []
    offsets: list[int] = []
    day_us: list[int] = []
    for rec in records:
        raw = rec.value or b""
        recv = _header_ts(rec, "received_at")
        try:
            r = parse_reading(raw, max_bytes=len(raw) + 1)
            sensor_id.append(r.sensor_id)
            ts.append(r.ts_us)
            value.append(r.value)
            day_us.append(r.ts_us)
        except InvalidReading:
            # The bridge never forwards these; another producer might. Kept, with
            # null columns, filed under the day it was received.
            sensor_id.append(None)
            ts.append(None)
            value.append(None)
            day_us.append(recv)
        payload.append(raw.decode("utf-8", "replace"))
        mqtt_topic = rec.headers.get("mqtt_topic")
        topic.append(mqtt_topic.decode("utf-8", "replace") if mqtt_topic is not None else None)
        received.append(recv)
        partitions.append(rec.partition)
        offsets.append(rec.offset)
    return pa.table(
        {
            "sensor_id": pa.array(sensor_id, pa.string()),
            "ts": pa.array(ts, pa.int64()).cast(TS),
            "value": pa.array(value, pa.float64()),
            "payload": pa.array(payload, pa.string()),
            "mqtt_topic": pa.array(topic, pa.string()),
            "received_at": pa.array(received, pa.int64()).cast(TS),
            "kafka_partition": pa.array(partitions, pa.int32()),
            "kafka_offset": pa.array(offsets, pa.int64()),
            "event_date": _dates(pa.array(day_us, pa.int64())),
        }
    )


SENSORS_SCHEMA = pa.schema(
    [
        pa.field("sensor_id", pa.string()),
        pa.field("lat", pa.float64()),
        pa.field("lng", pa.float64()),
        pa.field("unit", pa.string()),
        pa.field("type", pa.string()),
        pa.field("range_min", pa.float64()),
        pa.field("range_max", pa.float64()),
        pa.field("description", pa.string()),
        pa.field("deleted", pa.bool_()),
        pa.field("payload", pa.string()),
        pa.field("seen_at", TS),
        pa.field("kafka_partition", pa.int32()),
        pa.field("kafka_offset", pa.int64()),
    ]
)


def _number(x: object) -> float | None:
    if isinstance(x, int | float) and not isinstance(x, bool):
        return float(x)
    return None


def build_sensors(records: Sequence[Record]) -> pa.Table:
    rows: dict[str, list[object]] = {f.name: [] for f in SENSORS_SCHEMA}
    for rec in records:
        entry: dict[str, object] = {}
        if rec.value is not None:
            try:
                doc = orjson.loads(rec.value)
                entry = doc if isinstance(doc, dict) else {}
            except orjson.JSONDecodeError:
                entry = {}
        rng = entry.get("range")
        lo, hi = rng if isinstance(rng, list) and len(rng) == 2 else (None, None)
        text = {
            k: (str(entry[k]) if entry.get(k) is not None else None)
            for k in ("unit", "type", "description")
        }
        rows["sensor_id"].append(rec.key.decode("utf-8", "replace") if rec.key else None)
        rows["lat"].append(_number(entry.get("lat")))
        rows["lng"].append(_number(entry.get("lng")))
        rows["unit"].append(text["unit"])
        rows["type"].append(text["type"])
        rows["range_min"].append(_number(lo))
        rows["range_max"].append(_number(hi))
        rows["description"].append(text["description"])
        rows["deleted"].append(rec.value is None)
        rows["payload"].append(rec.value.decode("utf-8", "replace") if rec.value else None)
        rows["seen_at"].append(rec.timestamp_ms * 1000)
        rows["kafka_partition"].append(rec.partition)
        rows["kafka_offset"].append(rec.offset)
    columns = {
        f.name: pa.array(rows[f.name], pa.int64()).cast(TS)
        if f.type == TS
        else pa.array(rows[f.name], f.type)
        for f in SENSORS_SCHEMA
    }
    return pa.table(columns, schema=SENSORS_SCHEMA)


REJECTED_SCHEMA = pa.schema(
    [
        pa.field("reason", pa.string()),
        pa.field("reason_code", pa.string()),
        pa.field("payload", pa.binary()),
        pa.field("payload_text", pa.string()),
        pa.field("mqtt_topic", pa.string()),
        pa.field("received_at", TS),
        pa.field("kafka_partition", pa.int32()),
        pa.field("kafka_offset", pa.int64()),
    ]
)


def build_rejected(records: Sequence[Record]) -> pa.Table:
    reasons = [
        (rec.headers.get("reason") or b"unknown: no reason header").decode("utf-8", "replace")
        for rec in records
    ]
    received = [_header_ts(rec, "received_at") for rec in records]
    topics = [rec.headers.get("mqtt_topic") for rec in records]
    return pa.table(
        {
            "reason": pa.array(reasons, pa.string()),
            "reason_code": pa.array([r.split(":", 1)[0] for r in reasons], pa.string()),
            "payload": pa.array([rec.value or b"" for rec in records], pa.binary()),
            "payload_text": pa.array(
                [(rec.value or b"").decode("utf-8", "replace") for rec in records], pa.string()
            ),
            "mqtt_topic": pa.array(
                [t.decode("utf-8", "replace") if t is not None else None for t in topics],
                pa.string(),
            ),
            "received_at": pa.array(received, pa.int64()).cast(TS),
            "kafka_partition": pa.array([rec.partition for rec in records], pa.int32()),
            "kafka_offset": pa.array([rec.offset for rec in records], pa.int64()),
            "received_date": _dates(pa.array(received, pa.int64())),
        }
    )


READINGS = TableSpec("readings", READINGS_SCHEMA, "event_date", build_readings, ("sensor_id", "ts"))
SENSORS = TableSpec("sensors", SENSORS_SCHEMA, None, build_sensors, ("sensor_id", "kafka_offset"))
REJECTED = TableSpec(
    "rejected", REJECTED_SCHEMA, "received_date", build_rejected, ("kafka_offset",)
)


def utc_now_us() -> int:
    return int(datetime.now(UTC).timestamp() * 1_000_000)
