"""The Faust agents' logic, without Kafka: the sensor directory and the dead-letter watch."""

import logging

import orjson
from hypothesis import given
from hypothesis import strategies as st

from stream_jobs.agents import DeadLetterWatch, SensorDirectory, headers_of, reason_code

sensor_records = st.lists(
    st.tuples(
        st.sampled_from([b"Sensor 1", b"Sensor 2", b"Sensor 3", None]),
        st.one_of(
            st.none(),
            st.builds(lambda lo: orjson.dumps({"range": [lo, lo + 10]}), st.integers(-50, 50)),
            st.binary(max_size=20),
        ),
    ),
    max_size=30,
)


def topic(records):
    """(partition, offset, key, value) of a one-partition topic."""
    return [(0, offset, key, value) for offset, (key, value) in enumerate(records)]


def state(directory):
    return {k: e.metadata for k, e in directory.sensors.items()}


@given(sensor_records, st.data())
def test_a_restart_resuming_from_an_older_offset_never_goes_back(records, data):
    """The agent resumes at its group's committed offset, which may be older than
    what the start-up read of the whole topic saw: the end state is the topic's."""
    once = SensorDirectory()
    once.load(topic(records))
    restarted = SensorDirectory()
    seen = data.draw(st.integers(0, len(records)))  # the topic's end at the start-up read
    restarted.load(topic(records)[:seen])
    at_start = state(restarted)
    committed = data.draw(st.integers(0, seen))
    for record in topic(records)[committed:seen]:  # replayed: already applied
        assert not restarted.apply(*record)
        assert state(restarted) == at_start  # never an older version, even for a moment
    for record in topic(records)[seen:]:
        restarted.apply(*record)
    assert state(restarted) == state(once)


def test_a_tombstone_removes_a_sensor_and_junk_is_counted():
    d = SensorDirectory()
    d.load(topic([(b"Sensor 1", b'{"range": [0, 45]}'), (b"Sensor 2", b"[1]"), (None, b"{}")]))
    assert list(d.sensors) == ["Sensor 1"] and d.skipped == 2
    assert d.sensors["Sensor 1"].metadata == {"range": [0, 45]}
    d.apply(0, 3, b"Sensor 1", None)
    assert d.sensors == {} and d.summary() == {"known": 0, "skipped": 2}


def test_dead_letters_are_counted_by_code_and_alert_once_a_minute(caplog):
    w = DeadLetterWatch(alert_per_minute=3)
    with caplog.at_level(logging.WARNING, logger="stream_jobs.agents"):
        for i in range(5):
            w.record({"reason": b"invalid_json: line 1"}, now=100.0 + i)
        w.record({"reason": b"value_not_number: x"}, now=105.0)
        w.record({}, now=106.0)
    assert w.total == {"invalid_json": 5, "value_not_number": 1, "unknown": 1}
    assert w.alerts == 1 and len(caplog.records) == 1
    assert "3 with reason invalid_json" in caplog.records[0].getMessage()  # at the third
    assert w.summary(now=130.0)["last_minute"]["invalid_json"] == 5
    assert w.summary(now=200.0)["last_minute"] == {}  # a minute later: nothing recent
    for i in range(3):
        w.record({"reason": b"invalid_json: again"}, now=200.0 + i)
    assert w.alerts == 2  # a new minute, a new alert


@given(st.one_of(st.none(), st.binary(), st.lists(st.tuples(st.text(), st.binary()))))
def test_headers_and_reasons_never_raise(raw):
    headers = headers_of(raw)
    assert isinstance(reason_code(headers.get("reason")), str)
    assert reason_code(raw if isinstance(raw, bytes) else None)
