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
from dataclasses import dataclass, field

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from mqtt_bridge.contract import parse_dt, parse_reading
from mqtt_bridge.errors import InvalidReading

TS = pa.timestamp("us")


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
    # Kafka records -> rows, with the partition column (None: written by a job of its own)
    build: Callable[[Sequence[Record]], pa.Table] | None
    sort_by: tuple[str, ...]
    description: str = ""
    comments: dict[str, str] = field(default_factory=dict)  # column -> meaning and unit
    zone: str = "raw"  # lake folder and SQL schema: raw (as received) or curated (derived)

    @property
    def folder(self) -> str:
        return f"{self.zone}/{self.name}"


def received_us_of(headers: dict[str, bytes], timestamp_ms: int) -> int:
    """When the platform received a record: the bridge's `received_at` header (µs),
    else the Kafka record time. Every stage judges a reading's event time against
    this, so they all reach the bridge's verdict. Never raises."""
    raw = headers.get("received_at")
    if raw is not None:
        try:
            return parse_dt(raw.decode())
        except (InvalidReading, UnicodeDecodeError):
            pass
    return timestamp_ms * 1000


def _header_ts(rec: Record, name: str) -> int:
    return received_us_of(rec.headers, rec.timestamp_ms)


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


_PAYLOAD_SCHEMA = pa.schema(
    [pa.field("id", pa.string()), pa.field("dt", pa.string()), pa.field("value", pa.float64())]
)
_JSON_OPTIONS = pj.ParseOptions(explicit_schema=_PAYLOAD_SCHEMA, unexpected_field_behavior="ignore")


def _parse_fast(values: list[bytes]) -> tuple[pa.Array, pa.Array, pa.Array] | None:
    """All payloads at once with Arrow's JSON reader; None when any of them
    needs the contract's row-by-row judgement (the bridge only forwards valid
    ones, so that is for records of other producers)."""
    if any(not v or b"\n" in v for v in values):
        return None
    try:
        table = pj.read_json(pa.py_buffer(b"\n".join(values)), parse_options=_JSON_OPTIONS)
        if table.num_rows != len(values):
            return None
        ids, dts, vals = (table.column(c).combine_chunks() for c in ("id", "dt", "value"))
        if ids.null_count or dts.null_count or vals.null_count:
            return None
        if not pc.all(pc.is_finite(vals)).as_py():
            return None
        if pc.any(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(ids)), 0)).as_py():
            return None
        return ids, pc.cast(dts, TS), vals  # naive ISO-8601; an offset raises -> row path
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


def _parse_rows(
    values: list[bytes],
) -> tuple[list[str | None], list[int | None], list[float | None]]:
    ids: list[str | None] = []
    ts: list[int | None] = []
    vals: list[float | None] = []
    for raw in values:
        try:
            r = parse_reading(raw, max_bytes=len(raw) + 1)
            ids.append(r.sensor_id)
            ts.append(r.ts_us)
            vals.append(r.value)
        except InvalidReading:
            # The bridge never forwards these; another producer might. Kept with
            # null columns, filed under the day they were received.
            ids.append(None)
            ts.append(None)
            vals.append(None)
    return ids, ts, vals


def _received_at(records: Sequence[Record]) -> pa.Array:
    """The bridge's receive time (µs), else the Kafka record time."""
    texts = [rec.headers.get("received_at") for rec in records]
    try:
        arr = pc.utf8_rtrim(pa.array(texts, pa.binary()).cast(pa.string()), "Z")
        parsed = pc.cast(arr, TS).cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([_header_ts(rec, "received_at") for rec in records], pa.int64())
    fallback = pa.array([rec.timestamp_ms * 1000 for rec in records], pa.int64())
    return pc.coalesce(parsed, fallback)


def _text(values: Sequence[bytes | None]) -> pa.Array:
    try:
        return pa.array(values, pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:  # invalid UTF-8 somewhere: keep what can be read
        return pa.array(
            [v.decode("utf-8", "replace") if v is not None else None for v in values], pa.string()
        )


def build_readings(records: Sequence[Record]) -> pa.Table:
    values = [rec.value or b"" for rec in records]
    received = _received_at(records)
    fast = _parse_fast(values)
    if fast is not None:
        sensor_id, ts, value = fast
        day = ts
    else:
        ids, ts_us, vals = _parse_rows(values)
        sensor_id = pa.array(ids, pa.string())
        ts = pa.array(ts_us, pa.int64()).cast(TS)
        value = pa.array(vals, pa.float64())
        day = pc.coalesce(ts, received.cast(TS))
    return pa.table(
        {
            "sensor_id": sensor_id,
            "ts": ts,
            "value": value,
            "payload": _text(values),
            "mqtt_topic": _text([rec.headers.get("mqtt_topic") for rec in records]),
            "received_at": received.cast(TS),
            "kafka_partition": pa.array([rec.partition for rec in records], pa.int32()),
            "kafka_offset": pa.array([rec.offset for rec in records], pa.int64()),
            "event_date": pc.cast(day, pa.date32()),
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


KAFKA_COMMENTS = {
    "kafka_partition": "Kafka partition the record was read from (lineage)",
    "kafka_offset": "Kafka offset of the record within its partition (lineage)",
}

READINGS = TableSpec(
    "readings",
    READINGS_SCHEMA,
    "event_date",
    build_readings,
    ("sensor_id", "ts"),
    description="Every accepted sensor reading, exactly once, as received over MQTT. "
    "Partitioned by event_date: filter on it to read only the days you need.",
    comments={
        "sensor_id": "Sensor id as sent by the device (the payload's id), e.g. 'Sensor 1'",
        "ts": "Event time: the payload's dt, UTC, microseconds",
        "value": "Measured value, in the unit of the sensor (see raw.sensors_current)",
        "payload": "The MQTT payload exactly as received (JSON text)",
        "mqtt_topic": "MQTT topic the reading arrived on",
        "received_at": "When the bridge received the message, UTC, microseconds",
        **KAFKA_COMMENTS,
        "event_date": "UTC date of ts (partition column)",
    },
)
SENSORS = TableSpec(
    "sensors",
    SENSORS_SCHEMA,
    None,
    build_sensors,
    ("sensor_id", "kafka_offset"),
    description="Every version of every sensor of the sensor list (sensors.json), with when "
    "the platform saw it; raw.sensors_current has the current one per sensor.",
    comments={
        "sensor_id": "Sensor id (the key of sensors.json)",
        "lat": "Latitude of the sensor",
        "lng": "Longitude of the sensor",
        "unit": "Unit of the sensor's values, e.g. 'C'",
        "type": "Kind of measurement, e.g. 'temperature'",
        "range_min": "Lowest valid value, in unit",
        "range_max": "Highest valid value, in unit",
        "description": "Where or what the sensor is",
        "deleted": "True when the sensor was removed from the list (a tombstone)",
        "payload": "The sensor's entry as published to Kafka (JSON text)",
        "seen_at": "When this version reached Kafka, UTC, milliseconds",
        **KAFKA_COMMENTS,
    },
)
REJECTED = TableSpec(
    "rejected",
    REJECTED_SCHEMA,
    "received_date",
    build_rejected,
    ("kafka_offset",),
    description="Messages the bridge did not accept (dead letters), kept verbatim with the "
    "reason. Partitioned by received_date.",
    comments={
        "reason": "Why the message was rejected: '<code>: <detail>'",
        "reason_code": "Stable reason code: not_json, not_object, missing_id, bad_id, "
        "missing_dt, bad_dt, missing_value, bad_value, oversized, duplicate",
        "payload": "The MQTT payload exactly as received (bytes)",
        "payload_text": "The payload as UTF-8 text (invalid bytes replaced)",
        "mqtt_topic": "MQTT topic the message arrived on",
        "received_at": "When the bridge received the message, UTC, microseconds",
        **KAFKA_COMMENTS,
        "received_date": "UTC date of received_at (partition column)",
    },
)
READINGS_1M_SCHEMA = pa.schema(
    [
        pa.field("sensor_id", pa.string()),
        pa.field("window_start", TS),
        pa.field("window_end", TS),
        pa.field("mean", pa.float64()),
        pa.field("min", pa.float64()),
        pa.field("max", pa.float64()),
        pa.field("count", pa.int64()),
        pa.field("out_of_range_count", pa.int64()),
        pa.field("sum", pa.float64()),
        pa.field("revision", pa.int32()),
        pa.field("emitted_at", TS),
    ]
)

READINGS_1M_REVISIONS = TableSpec(
    "readings_1m_revisions",
    READINGS_1M_SCHEMA,
    "window_date",
    None,
    ("sensor_id", "window_start", "revision"),
    description="Every emission of every 1-minute window: a window is emitted when it "
    "closes and again, with the next revision, when a late reading corrects it. "
    "curated.readings_1m shows the newest revision only.",
    comments={
        "sensor_id": "Sensor id",
        "window_start": "Start of the minute, UTC (inclusive)",
        "window_end": "End of the minute, UTC (exclusive)",
        "mean": "Mean of the readings in range, in the sensor's unit (null if none)",
        "min": "Lowest reading in range",
        "max": "Highest reading in range",
        "count": "Readings in range (those in mean, min and max)",
        "out_of_range_count": "Readings outside the sensor's range, counted but kept out of "
        "the figures",
        "sum": "Sum of the readings in range (mean = sum / count)",
        "revision": "1 when the window closed, +1 for each correction by late readings",
        "emitted_at": "When this revision was computed, UTC",
        "window_date": "UTC date of window_start (partition column)",
    },
    zone="curated",
)

TABLES = (READINGS, SENSORS, REJECTED, READINGS_1M_REVISIONS)
