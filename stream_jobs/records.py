"""Kafka records -> rows of the raw tables (stream_jobs.tables), as pure functions.

One builder per table, each keeping the bytes it received verbatim:
  build_readings  (iot.readings)      accepted readings, and dead letters for the
                                      records the contract rejects
  build_sensors   (iot.sensors)       every version of every sensor
  build_rejected  (iot.readings.dlq)  the bridge's dead letters, with the reason

Every build is total: whatever the keys, values, headers and timestamps, it
returns rows and raises nothing. A batch that fails unexpectedly is built record
by record, and a record that still fails becomes a dead letter
(`internal_error: ...`) or a row with what can be kept.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, TypeVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from iot_common.contract import (
    DEFAULT_BOUNDS,
    DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_ID_LENGTH,
    TimeBounds,
    parse_dt,
    parse_reading,
    to_us,
)
from iot_common.errors import InvalidReading
from stream_jobs.tables import READINGS, REJECTED, SENSORS, TS

log = logging.getLogger(__name__)
T = TypeVar("T")

# The calendar Python (and so every date folder) can represent, in µs since the epoch.
MIN_US = to_us(datetime.min)
MAX_US = to_us(datetime.max)
# A dead letter keeps at most this much of its payload (a prefix, verbatim).
MAX_REJECTED_PAYLOAD_BYTES = 65_536


@dataclass(frozen=True, slots=True)
class Record:
    """What the archive needs of a Kafka record (decoupled from the client library)."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class Source:
    """Where a batch of records was read from, and the contract it is judged by."""

    topic: str
    bounds: TimeBounds = DEFAULT_BOUNDS
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES


class Built(NamedTuple):
    """A batch as rows: of the table itself, and dead letters for raw.rejected
    (records the contract rejects), both with their partition column."""

    rows: pa.Table
    rejected: pa.Table | None = None


Builder = Callable[[Sequence[Record], Source], Built]  # one per table written from a topic


def _clamp_us(us: int) -> int:
    return min(max(us, MIN_US), MAX_US)


def _header(headers: object, name: str) -> bytes | None:
    """A header's bytes, None when it is missing or not bytes (never raises)."""
    value = headers.get(name) if isinstance(headers, dict) else None
    return bytes(value) if isinstance(value, bytes | bytearray) else None


def received_us_of(headers: dict[str, bytes], timestamp_ms: int) -> int:
    """When the platform received a record: the bridge's `received_at` header (µs),
    else the Kafka record time, clamped to the calendar (0001..9999). Every stage
    judges a reading's event time against this, so they all reach the bridge's
    verdict. Never raises."""
    raw = _header(headers, "received_at")
    if raw is not None:
        try:
            return parse_dt(raw.decode())
        except (InvalidReading, UnicodeDecodeError):
            pass
    try:
        return _clamp_us(int(timestamp_ms) * 1000)
    except (TypeError, ValueError, OverflowError):
        return 0


def _dates(ts_us: pa.Array) -> pa.Array:
    return pc.cast(pc.cast(ts_us, TS), pa.date32())


def _text(values: Sequence[bytes | None]) -> pa.Array:
    try:
        return pa.array(values, pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:  # invalid UTF-8 somewhere: keep what can be read
        return pa.array(
            [v.decode("utf-8", "replace") if v is not None else None for v in values], pa.string()
        )


def _safe_str(text: str) -> str:
    """`text` as storable UTF-8 (a lone surrogate becomes '?')."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def _error_text(exc: BaseException) -> str:
    try:
        return _safe_str(f"{type(exc).__name__}: {exc}")[:500]
    except Exception:  # noqa: BLE001 - an exception whose str() fails
        return type(exc).__name__


# -- event time, vectorised ---------------------------------------------------------

# The one dt form the vectorised path judges itself (what isoformat() writes);
# anything else (offsets, Z, a space, 7+ digit fractions...) goes to the contract.
_NAIVE_ISO = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?$"
_SECONDS = "%Y-%m-%dT%H:%M:%S"
# Where each field starts in that text, and how to read it back from a timestamp.
_COMPONENTS = (
    (0, pc.year),
    (5, pc.month),
    (8, pc.day),
    (11, pc.hour),
    (14, pc.minute),
    (17, pc.second),
)


def _strict_iso_us(texts: pa.Array) -> pa.Array:
    """µs since the epoch of each text of the form YYYY-MM-DDTHH:MM:SS[.f{1,6}];
    null where the text has another form, or where Arrow's reading of it does not
    has other fields than the text (Feb 30, second 60, year 0...). Where not null it
    equals the contract's parse_dt."""
    ok = pc.match_substring_regex(texts, _NAIVE_ISO)
    texts = pc.if_else(ok, texts, pa.scalar(None, pa.string()))
    head = pc.utf8_slice_codeunits(texts, 0, 19)
    secs = pc.strptime(head, format=_SECONDS, unit="s", error_is_null=True)
    same = pa.scalar(True)
    for start, component in _COMPONENTS:
        digits = pc.utf8_slice_codeunits(texts, start, start + (4 if start == 0 else 2))
        same = pc.and_(same, pc.equal(component(secs), digits.cast(pa.int64())))
    frac = pc.utf8_rpad(pc.utf8_slice_codeunits(texts, 20, 26), 6, "0")
    us = pc.add(pc.multiply(secs.cast(pa.int64()), 1_000_000), frac.cast(pa.int64()))
    keep = pc.and_(same, pc.greater_equal(us, MIN_US))
    return pc.if_else(keep, us, pa.scalar(None, pa.int64()))


def _received_us(records: Sequence[Record]) -> pa.Array:
    """received_us_of() of every record (int64, no nulls): the bridge's header
    form vectorised, anything else through received_us_of itself."""
    texts = [_header(rec.headers, "received_at") for rec in records]
    fast: list[int | None] = [None] * len(records)
    try:
        strings = pa.array(texts, pa.binary()).cast(pa.string())
        zulu = pc.ends_with(strings, "Z")
        parsed = _strict_iso_us(pc.if_else(zulu, pc.utf8_slice_codeunits(strings, 0, -1), strings))
        if parsed.null_count == 0:
            return parsed
        fast = parsed.to_pylist()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    return pa.array(
        [
            us if us is not None else received_us_of(rec.headers, rec.timestamp_ms)
            for us, rec in zip(fast, records, strict=True)
        ],
        pa.int64(),
    )


# -- readings -----------------------------------------------------------------------

# The vectorised path accepts only payloads it can judge exactly as the contract
# (orjson + parse_reading) does: one flat JSON object whose strings have no escapes
# and no control characters (so a key is its bytes: no duplicate hides behind
# "\u0069d"), whose numbers cannot overflow (no exponent, at most 18 integer
# digits; only `value` may have a two-digit exponent), without nested objects or
# arrays. Anything else (rare: the bridge writes the generator's payloads) goes
# to the contract row by row.
_WS = r"[ \t\n\r]*"
_STR_BODY = r'[^"\\\x00-\x1f]*'
_STR = f'"{_STR_BODY}"'
_PLAIN_NUM = r"-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,20})?"
_VALUE_NUM = _PLAIN_NUM + r"(?:[eE][+-]?[0-9]{1,2})?"
_SCALAR = f"(?:{_STR}|{_PLAIN_NUM}|true|false|null)"
_MEMBER = f'(?:"value"{_WS}:{_WS}{_VALUE_NUM}|{_STR}{_WS}:{_WS}{_SCALAR})'
_FLAT_OBJECT = f"^{_WS}\\{{{_WS}{_MEMBER}(?:{_WS},{_WS}{_MEMBER})*{_WS}\\}}{_WS}$"
_ID = f'"id"{_WS}:{_WS}"(?P<v>{_STR_BODY})"'
_DT = f'"dt"{_WS}:{_WS}"(?P<v>{_STR_BODY})"'
_VALUE = f'"value"{_WS}:{_WS}(?P<v>{_VALUE_NUM}){_WS}[,}}]'


def _extract(texts: pa.Array, pattern: str) -> pa.Array:
    return pc.struct_field(pc.extract_regex(texts, pattern), [0])


def _parse_fast(
    values: Sequence[bytes], received_us: pa.Array, source: Source
) -> tuple[pa.Array, pa.Array, pa.Array] | None:
    """(sensor_id, ts µs, value) of all payloads at once, vectorised; None unless
    every one is a reading the contract accepts, with the values it would give
    (then the caller asks the contract row by row)."""
    if not values:
        return None
    try:
        raw = pa.array(values, pa.binary())
        sizes = pc.binary_length(raw)
        if pc.max(sizes).as_py() > source.max_payload_bytes:
            return None
        texts = raw.cast(pa.string())  # raises on invalid UTF-8 (orjson rejects it too)
        if not pc.all(pc.match_substring_regex(texts, _FLAT_OBJECT)).as_py():
            return None
        for key in ("id", "dt", "value"):  # each key exactly once: no duplicates to resolve
            count = pc.count_substring_regex(texts, f'"{key}"{_WS}:')
            if not pc.all(pc.equal(count, 1)).as_py():
                return None
        ids, dts, value_texts = (_extract(texts, p) for p in (_ID, _DT, _VALUE))
        if ids.null_count or dts.null_count or value_texts.null_count:
            return None  # id or dt not a string, value not a number
        # str.strip() strips more than ASCII whitespace: insist on a visible ASCII character.
        if not pc.all(pc.match_substring_regex(ids, "[!-~]")).as_py():
            return None
        if pc.max(pc.utf8_length(ids)).as_py() > MAX_ID_LENGTH:
            return None
        ts = _strict_iso_us(dts)
        if ts.null_count:
            return None
        if pc.min(ts).as_py() < source.bounds.floor_us:
            return None
        ahead = pc.subtract(ts, received_us)
        if pc.max(ahead).as_py() > source.bounds.max_ahead_us:
            return None
        if pc.any(pc.equal(value_texts, "-0")).as_py():
            return None  # orjson reads the integer -0 as 0, a float parser as -0.0
        vals = pc.cast(value_texts, pa.float64())
        if vals.null_count or not pc.all(pc.is_finite(vals)).as_py():
            return None
        return ids, ts, vals
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


def _judge(rec: Record, received_us: int, source: Source) -> tuple[str, int, float] | str:
    """The contract's verdict on one record: its columns, or the rejection reason."""
    try:
        r = parse_reading(
            rec.value or b"",
            source.max_payload_bytes,
            received_us=received_us,
            bounds=source.bounds,
        )
    except InvalidReading as exc:
        return exc.reason
    return r.sensor_id, r.ts_us, r.value


def _readings_table(
    records: Sequence[Record],
    sensor_id: pa.Array,
    ts_us: pa.Array,
    value: pa.Array,
    received_us: pa.Array,
) -> pa.Table:
    ts = ts_us.cast(TS)
    return pa.table(
        {
            "sensor_id": sensor_id,
            "ts": ts,
            "value": value,
            "payload": _text([rec.value or b"" for rec in records]),
            "mqtt_topic": _text([_header(rec.headers, "mqtt_topic") for rec in records]),
            "received_at": received_us.cast(TS),
            "kafka_partition": pa.array([rec.partition for rec in records], pa.int32()),
            "kafka_offset": pa.array([rec.offset for rec in records], pa.int64()),
            "event_date": pc.cast(ts, pa.date32()),
        },
        schema=READINGS.table_schema,
    )


def _build_readings(records: Sequence[Record], source: Source) -> Built:
    received = _received_us(records)
    fast = _parse_fast([rec.value or b"" for rec in records], received, source)
    if fast is not None:
        return Built(_readings_table(records, *fast, received), _rejected_table([], [], source))
    received_list = received.to_pylist()
    accepted: list[int] = []
    ids: list[str] = []
    ts: list[int] = []
    vals: list[float] = []
    rejected: list[int] = []
    reasons: list[str] = []
    for i, rec in enumerate(records):
        verdict = _judge(rec, received_list[i], source)
        if isinstance(verdict, str):
            rejected.append(i)
            reasons.append(verdict)
        else:
            accepted.append(i)
            ids.append(verdict[0])
            ts.append(verdict[1])
            vals.append(verdict[2])
    rows = _readings_table(
        [records[i] for i in accepted],
        pa.array(ids, pa.string()),
        pa.array(ts, pa.int64()),
        pa.array(vals, pa.float64()),
        received.take(pa.array(accepted, pa.int64())),
    )
    dead = _rejected_table(
        [records[i] for i in rejected], reasons, source, [received_list[i] for i in rejected]
    )
    return Built(rows, dead)


def build_readings(records: Sequence[Record], source: Source | None = None) -> Built:
    """Readings the contract accepts (judged against each record's receive time
    and `source.bounds`); the others as dead letters for raw.rejected, with the
    contract's reason. Each record lands in exactly one of the two. Never raises."""
    source = source or Source("iot.readings")
    try:
        return _build_readings(records, source)
    except Exception as exc:  # noqa: BLE001 - no record may stop the archive
        log.warning("readings: a batch failed to build (%s); building it record by record", exc)
    rows, rejected = [], []
    for rec in records:
        try:
            one = _build_readings([rec], source)
        except Exception as exc:  # noqa: BLE001 - becomes a dead letter: internal_error
            reason = f"internal_error: {_error_text(exc)}"
            one = Built(
                READINGS.table_schema.empty_table(), build_dead_letters([rec], [reason], source)
            )
        rows.append(one.rows)
        if one.rejected is not None:
            rejected.append(one.rejected)
    return Built(
        pa.concat_tables([READINGS.table_schema.empty_table(), *rows]),
        pa.concat_tables([REJECTED.table_schema.empty_table(), *rejected]),
    )


# -- sensors ------------------------------------------------------------------------


def _number(x: object) -> float | None:
    if isinstance(x, int | float) and not isinstance(x, bool):
        try:
            return float(x)
        except OverflowError:
            return None
    return None


def _decoded(raw: bytes | None) -> str | None:
    return raw.decode("utf-8", "replace") if raw else None


def _sensor_row(rec: Record) -> dict[str, object]:
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
        k: (_safe_str(str(entry[k])) if entry.get(k) is not None else None)
        for k in ("unit", "type", "description")
    }
    return {
        "sensor_id": _decoded(rec.key),
        "lat": _number(entry.get("lat")),
        "lng": _number(entry.get("lng")),
        "unit": text["unit"],
        "type": text["type"],
        "range_min": _number(lo),
        "range_max": _number(hi),
        "description": text["description"],
        "deleted": rec.value is None,
        "payload": _decoded(rec.value),
        "seen_at": _clamp_us(rec.timestamp_ms * 1000),
        "kafka_partition": rec.partition,
        "kafka_offset": rec.offset,
    }


def _table_of_rows(rows: list[dict[str, object]], schema: pa.Schema) -> pa.Table:
    columns = {
        f.name: pa.array([r[f.name] for r in rows], pa.int64()).cast(f.type)
        if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type)
        else pa.array([r[f.name] for r in rows], f.type)
        for f in schema
    }
    return pa.table(columns, schema=schema)


def _guarded(compute: Callable[[], object], typ: pa.DataType) -> object:
    """compute() if it succeeds and fits `typ` (timestamps and dates as integers), else None."""
    try:
        value = compute()
        storage = pa.int64() if pa.types.is_timestamp(typ) or pa.types.is_date(typ) else typ
        pa.array([value], storage).cast(typ)
        return value
    except Exception:  # noqa: BLE001 - a field that cannot be kept is null
        return None


def _whatever_can_be_kept(schema: pa.Schema, fields: dict[str, Callable[[], object]]) -> pa.Table:
    """One row of `schema`: each field computed on its own, null where that fails."""
    row = {f.name: _guarded(fields[f.name], f.type) if f.name in fields else None for f in schema}
    return _table_of_rows([row], schema)


def _total(
    name: str,
    build: Callable[[Sequence[T]], pa.Table],
    fallback: Callable[[T, BaseException], pa.Table],
    items: Sequence[T],
    schema: pa.Schema,
) -> pa.Table:
    """build(items); when that fails, item by item, with fallback() for an item
    that still fails. Never raises."""
    try:
        return build(items)
    except Exception as exc:  # noqa: BLE001 - no record may stop the archive
        log.warning("%s: a batch failed to build (%s); building it record by record", name, exc)
    tables = [schema.empty_table()]
    for item in items:
        try:
            tables.append(build([item]))
        except Exception as exc:  # noqa: BLE001 - kept as far as possible
            log.warning("%s: a record kept as far as possible: %s", name, _error_text(exc))
            tables.append(fallback(item, exc))
    return pa.concat_tables(tables)


def _sensor_fallback(rec: Record, exc: BaseException) -> pa.Table:
    return _whatever_can_be_kept(
        SENSORS.table_schema,
        {
            "sensor_id": lambda: _decoded(rec.key),
            "deleted": lambda: rec.value is None,
            "payload": lambda: _decoded(rec.value),
            "seen_at": lambda: _clamp_us(rec.timestamp_ms * 1000),
            "kafka_partition": lambda: rec.partition,
            "kafka_offset": lambda: rec.offset,
        },
    )


def build_sensors(records: Sequence[Record], source: Source | None = None) -> Built:
    """Every version of every sensor (a tombstone: deleted). Never raises."""

    def build(batch: Sequence[Record]) -> pa.Table:
        return _table_of_rows([_sensor_row(rec) for rec in batch], SENSORS.table_schema)

    return Built(_total("sensors", build, _sensor_fallback, records, SENSORS.table_schema))


# -- dead letters -------------------------------------------------------------------


def _payload_size(rec: Record) -> int:
    """The size of the payload as received: the bridge's header when it cut it."""
    raw = _header(rec.headers, "payload_size")
    if raw is not None and raw.isdigit() and len(raw) < 19:
        return int(raw)
    return len(rec.value or b"")


def _payload_sha256(rec: Record) -> str:
    raw = _header(rec.headers, "payload_sha256")
    if raw is not None and len(raw) == 64 and all(c in b"0123456789abcdef" for c in raw):
        return raw.decode("ascii")
    return hashlib.sha256(rec.value or b"").hexdigest()


def _bounded(payload: bytes | None) -> bytes:
    """The payload as it is, up to MAX_REJECTED_PAYLOAD_BYTES (a prefix beyond)."""
    return bytes(payload[:MAX_REJECTED_PAYLOAD_BYTES]) if payload else b""


def _reason_code(reason: str) -> str:
    return reason.split(":", 1)[0]


def _rejected_table(
    records: Sequence[Record],
    reasons: Sequence[str],
    source: Source,
    received_us: Sequence[int] | None = None,
) -> pa.Table:
    if received_us is None:
        received_us = [received_us_of(rec.headers, rec.timestamp_ms) for rec in records]
    payloads = [_bounded(rec.value) for rec in records]
    texts = [_safe_str(r) for r in reasons]
    received = pa.array(received_us, pa.int64())
    return pa.table(
        {
            "reason": pa.array(texts, pa.string()),
            "reason_code": pa.array([_reason_code(r) for r in texts], pa.string()),
            "payload": pa.array(payloads, pa.binary()),
            "payload_text": pa.array([p.decode("utf-8", "replace") for p in payloads], pa.string()),
            "mqtt_topic": _text([_header(rec.headers, "mqtt_topic") for rec in records]),
            "received_at": received.cast(TS),
            "kafka_partition": pa.array([rec.partition for rec in records], pa.int32()),
            "kafka_offset": pa.array([rec.offset for rec in records], pa.int64()),
            "kafka_topic": pa.array([source.topic] * len(records), pa.string()),
            "payload_size": pa.array([_payload_size(rec) for rec in records], pa.int64()),
            "payload_sha256": pa.array([_payload_sha256(rec) for rec in records], pa.string()),
            "received_date": _dates(received),
        },
        schema=REJECTED.table_schema,
    )


def build_dead_letters(
    records: Sequence[Record], reasons: Sequence[str], source: Source
) -> pa.Table:
    """raw.rejected rows of `records` (read from source.topic) with their reasons.
    Never raises."""

    def build(batch: Sequence[tuple[Record, str]]) -> pa.Table:
        return _rejected_table([r for r, _ in batch], [reason for _, reason in batch], source)

    def fallback(item: tuple[Record, str], exc: BaseException) -> pa.Table:
        rec, given = item
        received = _guarded(lambda: received_us_of(rec.headers, rec.timestamp_ms), pa.int64())
        reason = _guarded(lambda: _safe_str(given), pa.string())
        if not isinstance(reason, str):
            reason = f"internal_error: {_error_text(exc)}"
        text = reason
        day = received // 86_400_000_000 if isinstance(received, int) else None
        return _whatever_can_be_kept(
            REJECTED.table_schema,
            {
                "reason": lambda: text,
                "reason_code": lambda: _reason_code(text),
                "payload": lambda: _bounded(rec.value),
                "payload_text": lambda: _bounded(rec.value).decode("utf-8", "replace"),
                "mqtt_topic": lambda: _decoded(_header(rec.headers, "mqtt_topic")),
                "received_at": lambda: received,
                "kafka_partition": lambda: rec.partition,
                "kafka_offset": lambda: rec.offset,
                "kafka_topic": lambda: source.topic,
                "payload_size": lambda: _payload_size(rec),
                "payload_sha256": lambda: _payload_sha256(rec),
                "received_date": lambda: day,
            },
        )

    items = list(zip(records, reasons, strict=True))
    return _total("rejected", build, fallback, items, REJECTED.table_schema)


def build_rejected(records: Sequence[Record], source: Source | None = None) -> Built:
    """The bridge's dead letters (the DLQ topic), with the reason from its header.
    Never raises."""
    source = source or Source("iot.readings.dlq")
    reasons = [
        (_header(rec.headers, "reason") or b"unknown: no reason header").decode("utf-8", "replace")
        for rec in records
    ]
    return Built(build_dead_letters(records, reasons, source))
