"""The topics' JSON Schemas (iot_common/contracts) agree with the code that makes
the messages, and never change in a way that breaks a consumer."""

import hashlib
import itertools
from datetime import datetime

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from iot_common import contracts
from iot_common.contract import parse_reading
from iot_common.errors import InvalidReading
from iot_data_generator.readings import reading_payload

SETTINGS = settings(max_examples=400, deadline=None)


def valid(subject, doc):
    return Draft202012Validator(contracts.schema(subject)).is_valid(doc)


def accepted(payload: bytes) -> bool:
    try:
        parse_reading(payload)
        return True
    except InvalidReading:
        return False


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),  # what JSON encoders write as integers
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
)
dts = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1))
fields = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(json_scalars, st.sampled_from(["Sensor 1", " ", "x" * 201, "S"])),
        "dt": st.one_of(json_scalars, dts.map(datetime.isoformat), st.just("2026-13-01")),
        "value": json_scalars,
        "unit": json_scalars,
    },
)


@SETTINGS
@given(fields)
def test_every_reading_the_contract_accepts_is_valid_under_the_schema(doc):
    payload = orjson.dumps(doc)
    if accepted(payload):
        assert valid("iot.readings", doc)
    if not valid("iot.readings", doc):
        assert not accepted(payload)


@SETTINGS
@given(dts.filter(lambda d: d.year >= 2000), st.floats(-1e9, 1e9), st.text(min_size=1, max_size=30))
def test_what_the_schema_and_the_contract_both_describe_is_accepted(dt, value, sensor):
    """A well-formed reading (the generator's format) passes both."""
    if not sensor.strip():
        return
    payload = reading_payload(sensor, dt, value)
    assert valid("iot.readings", orjson.loads(payload)) and accepted(payload)


def test_an_emission_of_the_1_minute_job_is_valid():
    from stream_jobs.resample import emit_json
    from stream_jobs.windows import Agg, Emit

    for agg in (Agg(count=2, sum=3.0, min=1.0, max=2.0, revision=1), Agg(revision=2)):
        doc = orjson.loads(emit_json(Emit("Sensor 1", 1_795_564_800_000_000, agg), 0))
        assert valid("iot.readings.1m", doc), doc
    assert not valid("iot.readings.1m", {"sensor_id": "S"})


def test_the_original_sensor_list_is_valid(original_sensors_json):
    for entry in orjson.loads(original_sensors_json).values():
        assert valid("iot.sensors", entry)


def test_headers_as_the_bridge_writes_them():
    from mqtt_bridge.bridge import ReceivedAt

    stamp = ReceivedAt().header(1_795_564_800_123_456).decode()
    assert valid("iot.readings.headers", {"mqtt_topic": "sensors", "received_at": stamp})
    assert not valid("iot.readings.headers", {"mqtt_topic": "sensors", "received_at": "now"})
    dead = {
        "mqtt_topic": "sensors",
        "received_at": stamp,
        "payload_size": "12",
        "payload_sha256": hashlib.sha256(b"x").hexdigest(),
        "reason": "not_json: unexpected character",
    }
    assert valid("iot.readings.dlq.headers", dead)


def test_released_schemas_never_change():
    lines = (contracts.HERE / "RELEASED").read_text().splitlines()
    released = dict(reversed(line.split()) for line in lines if line and not line.startswith("#"))
    on_disk = {p.name for p in contracts.HERE.glob("*.v*.json")}
    assert on_disk == set(released), "release every schema: add its SHA-256 to RELEASED"
    for name, digest in released.items():
        got = hashlib.sha256((contracts.HERE / name).read_bytes()).hexdigest()
        assert got == digest, f"{name} changed after its release: add a new version instead"


def test_each_version_keeps_what_consumers_of_the_previous_rely_on():
    for subject, found in contracts.versions().items():
        for old, new in itertools.pairwise(found):
            problems = contracts.compatible(
                contracts.schema(subject, old), contracts.schema(subject, new)
            )
            assert problems == [], f"{subject} v{new} breaks v{old} consumers: {problems}"


def test_the_compatibility_rules_catch_breaking_changes():
    old = contracts.schema("iot.readings.1m")
    dropped = {**old, "required": [r for r in old["required"] if r != "count"]}
    widened = {**old, "properties": {**old["properties"], "count": {"type": ["integer", "null"]}}}
    removed = {**old, "properties": {k: v for k, v in old["properties"].items() if k != "sum"}}
    assert contracts.compatible(old, old) == []
    assert contracts.compatible(old, dropped) == ["'count' is no longer required"]
    assert contracts.compatible(old, widened) == ["'count' may now be ['null']"]
    assert contracts.compatible(old, removed) == ["'sum' was removed"]
