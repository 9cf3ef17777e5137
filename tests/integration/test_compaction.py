"""Closed days are compacted into one file while queries run, and no query fails,
misses a row or counts one twice."""

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from iot_data_generator.readings import reading_payload
from local.services import wait_for
from tests.integration.harness import Pipeline, mqtt_publish

pytestmark = pytest.mark.integration

DAYS = [datetime(2026, 1, d) for d in (1, 2, 3)]  # long closed


def files_by_day(pipe):
    rows = pipe.sql('SELECT event_date, "$path" FROM hive.raw.readings')
    out: dict[str, set[str]] = {}
    for day, path in rows:
        out.setdefault(str(day), set()).add(path)
    return out


def test_compaction_is_atomic_for_queries(brokers, sql, tmp_path):
    env = {
        "COMPACTION_ENABLED": "true",
        "COMPACT_INTERVAL_SECONDS": "30",
        "COMPACT_GRACE_SECONDS": "4",
        "ROTATE_SECONDS": "0.3",
    }
    pipe = Pipeline(brokers, tmp_path, sql_services=sql, env_extra=env).start()
    try:
        pipe.wait_sql_ready()
        sensors = [f"Sensor {i}" for i in range(1, 6)]
        expected = 0
        for burst in range(8):  # each burst lands in files of its own: many per day
            payloads = [
                reading_payload(s, day + timedelta(minutes=burst, seconds=i), i)
                for day in DAYS
                for i, s in enumerate(sensors)
            ]
            mqtt_publish(pipe.stack.mqtt_port, pipe.mqtt_topic, payloads)
            expected += len(payloads)
            time.sleep(0.6)
        count = "SELECT count(*), count(DISTINCT payload) FROM hive.raw.readings"
        wait_for(lambda: pipe.sql(count)[0] == [expected, expected], 60, "all readings")
        before = files_by_day(pipe)
        assert pipe.health()["compactions"] == 0, "set up too slowly: compaction already ran"
        assert all(len(paths) >= 4 for paths in before.values()), before

        # Query without pause while the compaction runs, from two clients.
        seen: list[list[int]] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def query_loop():
            while not stop.is_set():
                try:
                    seen.append(pipe.sql(count)[0])
                except Exception as exc:  # noqa: BLE001 - any failure is the finding
                    errors.append(exc)

        threads = [threading.Thread(target=query_loop) for _ in range(2)]
        for t in threads:
            t.start()
        try:

            def compacted():
                return all(
                    len(p) == 1 and "/_c1/" in next(iter(p)) for p in files_by_day(pipe).values()
                )

            wait_for(compacted, 90, "compacted days")
            old_file = Path(next(iter(before[str(DAYS[0].date())])).removeprefix("file:"))
            assert old_file.is_relative_to(tmp_path)
            wait_for(lambda: not old_file.exists(), 30, "old files deleted")
            time.sleep(2)  # queries over the deletion too
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors[:3]
        assert len(seen) > 20
        assert all(row == [expected, expected] for row in seen), {tuple(r) for r in seen}

        # A late reading for a compacted day goes where the day's location points.
        late = reading_payload("Sensor 9", DAYS[1] + timedelta(hours=5), 7)
        mqtt_publish(pipe.stack.mqtt_port, pipe.mqtt_topic, [late])
        wait_for(lambda: pipe.sql(count)[0] == [expected + 1, expected + 1], 30, "late reading")
        day2 = files_by_day(pipe)[str(DAYS[1].date())]
        assert all("/_c1/" in p for p in day2) and len(day2) == 2
    finally:
        pipe.stop()
