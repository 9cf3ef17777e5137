"""Property tests: the archive's builds agree with the reading contract, whatever arrives.

For arbitrary bytes and for JSON objects mixing valid-looking readings with
hostile fields (dt of many ISO-ish forms, ids of whitespace and unicode, values
of every JSON type, duplicate and escaped keys) and arbitrary receive times:
* the vectorised path accepts only what the contract accepts, with its values;
* every record lands in exactly one of readings or rejected, with the
  contract's columns or reason;
* build_readings, build_rejected and build_sensors never raise.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_common.contract import TimeBounds, parse_reading
from iot_common.errors import InvalidReading
from stream_jobs.records import (
    Record,
    Source,
    _parse_fast,
    _received_us,
    build_readings,
    build_rejected,
    build_sensors,
    received_us_of,
)

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,  # no .hypothesis folder in the tree
)

# -- ISO-ish times ------------------------------------------------------------------


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=n, max_size=n)


years = st.one_of(
    st.sampled_from(["0000", "0001", "1969", "1970", "1999", "2000", "2026", "9999"]), _digits(4)
)
months = st.one_of(st.sampled_from(["01", "02", "11", "12", "00", "13"]), _digits(2))
days = st.one_of(st.sampled_from(["01", "25", "28", "29", "30", "31", "00", "32"]), _digits(2))
hours = st.one_of(st.sampled_from(["00", "12", "23", "24"]), _digits(2))
minutes = st.one_of(st.sampled_from(["00", "30", "59", "60"]), _digits(2))
seconds = st.one_of(st.sampled_from(["00", "44", "59", "60"]), _digits(2))
fractions = st.one_of(
    st.just(""),
    st.integers(1, 9).flatmap(lambda n: _digits(n).map(lambda d: "." + d)),
    st.sampled_from([",5", ".", ".123456789012"]),
)
separators = st.sampled_from(["T", "T", "T", " ", "t", "x", "", "TT"])
suffixes = st.sampled_from(
    ["", "", "", "Z", "z", "+00:00", "+02:00", "-01:00", "+0130", "+14:00", "+24:00", " ", "ZZ"]
)


@st.composite
def iso_texts(draw: st.DrawFn) -> str:
    date = f"{draw(years)}-{draw(months)}-{draw(days)}"
    if draw(st.integers(0, 20)) == 0:
        return date + draw(st.sampled_from(["", "T12", "T12:30"]))
    time = f"{draw(hours)}:{draw(minutes)}:{draw(seconds)}{draw(fractions)}"
    return f"{date}{draw(separators)}{time}{draw(suffixes)}"


@st.composite
def plausible_iso(draw: st.DrawFn) -> str:
    """Mostly valid naive times near now (the bridge's form), sometimes anything ISO-ish."""
    if draw(st.booleans()):
        return draw(iso_texts())
    dt = draw(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1)))
    return dt.isoformat()


dt_texts = st.one_of(
    plausible_iso(), iso_texts(), st.text(max_size=80), st.just("2026-01-01T10:00:00" + "0" * 60)
)

# -- JSON values as raw text --------------------------------------------------------

ids = st.one_of(
    st.sampled_from(["Sensor 1", "S", "id", " x ", "Sensor\u00a01", "\u00e9t\u00e9"]),
    st.text(
        st.one_of(
            st.sampled_from(
                " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u3000\ufeff"
            ),
            st.characters(),
        ),
        max_size=12,
    ),
    st.text(st.sampled_from("ab"), min_size=195, max_size=205),
)


def dumps(x: object) -> st.SearchStrategy[str]:
    return st.booleans().map(lambda ascii_: json.dumps(x, ensure_ascii=ascii_))


number_texts = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats().map(lambda f: json.dumps(f)),  # NaN, Infinity: not JSON
    st.sampled_from(
        ["-0", "0", "-0.0", "1e5", "1E-5", "1e-400", "1e999", "-1e308", "01", "1.", ".5", "+1"]
    ),
    st.builds(
        lambda i, f, e: f"{i}.{f}e{e}",
        st.integers(-(10**20), 10**20),
        _digits(22),
        st.integers(-330, 330),
    ),
)
json_values = st.one_of(
    number_texts,
    st.sampled_from(["true", "false", "null", "[]", "{}", '"17"', "[1, 2]", '{"id": 1}']),
    ids.flatmap(dumps),
    dt_texts.flatmap(dumps),
)


@st.composite
def objects(draw: st.DrawFn) -> bytes:
    """A JSON object as raw text: id, dt and value in any order, sometimes missing,
    repeated or escaped, with extra fields of any kind."""
    members: list[tuple[str, str]] = []
    if draw(st.integers(0, 9)):
        members.append(('"id"', draw(st.one_of(ids.flatmap(dumps), json_values))))
    if draw(st.integers(0, 9)):
        members.append(('"dt"', draw(st.one_of(dt_texts.flatmap(dumps), json_values))))
    if draw(st.integers(0, 9)):
        members.append(('"value"', draw(st.one_of(number_texts, json_values))))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(
            st.one_of(
                st.sampled_from(['"id"', '"dt"', '"value"', '"\\u0069d"', '"v\\u0061lue"']),
                st.text(max_size=5).map(json.dumps),
            )
        )
        members.append((key, draw(json_values)))
    order = draw(st.permutations(members))
    ws = draw(st.sampled_from(["", " ", "\n", "\t ", "\r\n"]))
    text = "{" + ws + f",{ws}".join(f"{k}:{ws}{v}" for k, v in order) + ws + "}"
    encoded = text.encode("utf-8", "surrogatepass")  # lone surrogates: invalid UTF-8
    return draw(st.sampled_from([encoded, encoded, encoded, b" " + encoded, encoded + b"\n"]))


payloads = st.one_of(objects(), objects(), st.binary(max_size=120), st.just(b""))

# -- records ------------------------------------------------------------------------

timestamps_ms = st.one_of(
    st.integers(1_500_000_000_000, 2_300_000_000_000),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([-1, 0]),
)


@st.composite
def headers(draw: st.DrawFn) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    received = draw(
        st.one_of(
            st.none(),
            plausible_iso().map(lambda t: (t + "Z").encode()),
            plausible_iso().map(str.encode),
            iso_texts().map(str.encode),
            st.binary(max_size=30),
        )
    )
    if received is not None:
        out["received_at"] = received
    if draw(st.booleans()):
        out["mqtt_topic"] = draw(st.one_of(st.just(b"sensors"), st.binary(max_size=10)))
    if draw(st.booleans()):
        out["reason"] = draw(st.one_of(st.just(b"not_json: x"), st.binary(max_size=20)))
    return out


@st.composite
def records(draw: st.DrawFn, offset: int = 0) -> Record:
    return Record(
        draw(st.integers(0, 11)),
        offset,
        draw(timestamps_ms),
        draw(st.one_of(st.none(), st.binary(max_size=20))),
        draw(st.one_of(payloads, st.none())),
        draw(headers()),
    )


@st.composite
def valid_looking(draw: st.DrawFn, offset: int = 0) -> Record:
    """A reading the way the bridge forwards it, with one hostile field now and then."""
    dt = draw(st.datetimes(min_value=datetime(1999, 12, 31), max_value=datetime(2040, 1, 1)))
    ahead_us = draw(st.sampled_from([-5_000, 0, 299_999_999, 300_000_000, 300_000_001, 10**9]))
    received_text = (dt - timedelta(microseconds=ahead_us)).isoformat() + "Z"
    fields = {
        "id": draw(st.one_of(st.just("Sensor 1"), ids)) if draw(st.integers(0, 4)) else "S 2",
        "dt": dt.isoformat() if draw(st.integers(0, 4)) else draw(dt_texts),
        "value": draw(
            st.one_of(
                st.integers(-(2**60), 2**60),
                st.floats(allow_nan=False, allow_infinity=False),
                st.sampled_from([17, -0.5, 0.0, -0.0, 1e-5, 45]),
            )
        ),
    }
    payload = json.dumps(fields).encode()
    if not draw(st.integers(0, 4)):
        payload = draw(objects())
    return Record(
        draw(st.integers(0, 2)),
        offset,
        draw(timestamps_ms),
        b"Sensor 1",
        payload,
        {"mqtt_topic": b"sensors", "received_at": received_text.encode()},
    )


bounds = st.one_of(
    st.just(TimeBounds.of(datetime(2000, 1, 1), 300)),
    st.builds(
        TimeBounds.of,
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(2030, 1, 1)),
        st.sampled_from([0.0, 1.0, 300.0, 86_400.0 * 365 * 10]),
    ),
)
sources = st.builds(
    Source,
    st.just("iot.readings"),
    bounds,
    st.sampled_from([4096, 4096, 60, 1 << 20]),
)


def batches(record: st.SearchStrategy[Record]) -> st.SearchStrategy[list[Record]]:
    return st.lists(record, min_size=1, max_size=6).map(
        lambda recs: [
            Record(r.partition, i, r.timestamp_ms, r.key, r.value, r.headers)
            for i, r in enumerate(recs)
        ]
    )


any_batch = st.one_of(
    batches(records()), batches(valid_looking()), valid_looking().map(lambda r: [r])
)

# -- the properties -----------------------------------------------------------------


def contract(rec: Record, source: Source) -> tuple[str, int, float] | str:
    try:
        r = parse_reading(
            rec.value or b"",
            source.max_payload_bytes,
            received_us=received_us_of(rec.headers, rec.timestamp_ms),
            bounds=source.bounds,
        )
    except InvalidReading as exc:
        return exc.reason
    return r.sensor_id, r.ts_us, r.value


def same_float(a: float, b: float) -> bool:
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


@SETTINGS
@given(any_batch, sources)
def test_the_fast_path_accepts_only_what_the_contract_accepts_with_its_values(batch, source):
    received = _received_us(batch)
    assert received.to_pylist() == [received_us_of(r.headers, r.timestamp_ms) for r in batch]
    fast = _parse_fast([r.value or b"" for r in batch], received, source)
    if fast is None:
        return
    expected = [contract(r, source) for r in batch]
    assert all(not isinstance(e, str) for e in expected), expected
    ids, ts, vals = (a.to_pylist() for a in fast)
    for i, e in enumerate(expected):
        assert (ids[i], ts[i]) == (e[0], e[1])
        assert same_float(vals[i], e[2]), (vals[i], e[2])


@SETTINGS
@given(batches(valid_looking()), sources)
def test_the_fast_path_handles_the_bridges_readings(batch, source):
    """Readings as the bridge forwards them (no hostile field) take the fast path."""
    plain = [r for r in batch if b'"id": "Sensor 1"' in (r.value or b"")]
    if not plain or not all(isinstance(contract(r, source), tuple) for r in plain):
        return
    values = [r.value or b"" for r in plain]
    if any(
        b"e" in v.split(b'"value": ')[-1] or b"-0}" in v or re.search(rb"[0-9]{19}", v)
        for v in values
    ):
        return  # exponent, -0 or 19+ digit forms the fast path leaves to the contract
    assert _parse_fast(values, _received_us(plain), source) is not None


@SETTINGS
@given(any_batch, sources)
def test_every_record_lands_once_in_readings_or_rejected_as_the_contract_says(batch, source):
    built = build_readings(batch, source)
    rows = {r["kafka_offset"]: r for r in built.rows.to_pylist()}
    dead = {r["kafka_offset"]: r for r in built.rejected.to_pylist()}
    assert not rows.keys() & dead.keys()
    assert sorted([*rows, *dead]) == [r.offset for r in batch]
    ts = dict(
        zip(
            built.rows.column("kafka_offset").to_pylist(),
            built.rows.column("ts").cast("int64").to_pylist(),
            strict=True,
        )
    )
    for rec in batch:
        expected = contract(rec, source)
        if isinstance(expected, str):
            row = dead[rec.offset]
            assert row["reason"] == expected
            assert row["reason_code"] == expected.split(":", 1)[0]
            assert row["payload"] == (rec.value or b"")[: len(row["payload"])]
            assert row["kafka_topic"] == source.topic
        else:
            row = rows[rec.offset]
            assert (row["sensor_id"], ts[rec.offset]) == expected[:2]
            assert same_float(row["value"], expected[2])
            assert row["event_date"] == row["ts"].date()


@SETTINGS
@given(batches(records()))
def test_sensors_and_dead_letters_are_built_from_anything(batch):
    rejected = build_rejected(batch).rows
    assert rejected.column("kafka_offset").to_pylist() == [r.offset for r in batch]
    sensors = build_sensors(batch).rows
    assert sensors.column("kafka_offset").to_pylist() == [r.offset for r in batch]


@SETTINGS
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=8), timestamps_ms, sources)
def test_arbitrary_bytes_never_stop_a_build(values, ts_ms, source):
    batch = [Record(0, i, ts_ms, v, v, {"received_at": v}) for i, v in enumerate(values)]
    built = build_readings(batch, source)
    assert built.rows.num_rows + built.rejected.num_rows == len(batch)
    assert build_rejected(batch).rows.num_rows == len(batch)
    assert build_sensors(batch).rows.num_rows == len(batch)
