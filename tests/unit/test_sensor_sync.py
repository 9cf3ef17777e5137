from mqtt_bridge.sensors import diff_sensors, sensor_record


def test_only_changes_are_published_and_removed_sensors_get_tombstones():
    current = {"S1": b"a", "S2": b"b", "S3": b"c"}
    wanted = {"S1": b"a", "S2": b"B", "S4": b"d"}
    assert diff_sensors(current, wanted) == [("S2", b"B"), ("S3", None), ("S4", b"d")]
    assert diff_sensors(wanted, wanted) == []


def test_record_is_canonical_whatever_the_key_order():
    assert sensor_record({"b": 1, "a": [0, 45]}) == sensor_record({"a": [0, 45], "b": 1})
