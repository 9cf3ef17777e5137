"""The live view: hive.raw.readings_live has the newest readings straight from
Kafka and every reading exactly once while the archive catches up under it."""

import threading
import time
from datetime import datetime, timedelta

import pytest

from iot_data_generator.readings import reading_payload
from local.services import wait_for
from tests.integration.harness import LIVE_UID, Pipeline, mqtt_publish

pytestmark = pytest.mark.integration

HORIZON_S = 10
PER_PARTITION = """SELECT kafka_partition, count(*), count(DISTINCT kafka_offset),
       min(kafka_offset), max(kafka_offset)
FROM hive.raw.readings_live GROUP BY 1 ORDER BY 1"""


def exactly_once(rows):
    """Offsets of a fresh topic run 0..max without a gap: each once is count = max + 1."""
    for partition, count, distinct, low, high in rows:
        assert (count, distinct, low) == (high + 1, high + 1, 0), (partition, rows)
    return sum(r[1] for r in rows)


def test_live_view_is_exact_across_the_archive_boundary(brokers, sql, tmp_path):
    pipe = Pipeline(
        brokers,
        tmp_path,
        uid=LIVE_UID,
        sql_services=sql,
        env_extra={"LIVE_VIEW_HORIZON_SECONDS": str(HORIZON_S)},
    ).start()
    try:
        pipe.wait_sql_ready()
        # Readings for 2.5 horizons, queried all along: the boundary between archive
        # and topic moves through them while files land and partitions register.
        start = datetime.utcnow().replace(microsecond=0)
        sent = 0
        done = threading.Event()

        def publish() -> None:
            nonlocal sent
            for second in range(int(HORIZON_S * 2.5)):
                batch = [
                    reading_payload(f"Sensor {i}", start + timedelta(seconds=second), i)
                    for i in range(1, 21)
                ]
                mqtt_publish(brokers.mqtt_port, pipe.mqtt_topic, batch)
                sent += len(batch)
                time.sleep(1)
            done.set()

        publisher = threading.Thread(target=publish)
        publisher.start()
        queries = 0
        while not done.is_set():
            before = sent  # the broker confirmed these before the query began
            seen = exactly_once(pipe.sql(PER_PARTITION))
            # Gaps at the boundary show in exactly_once; here: the tail is there, all
            # but what the bridge may still hold (a few seconds under a loaded CI).
            assert seen >= before - 20 * 5
            queries += 1
        publisher.join()
        assert queries >= 5

        # Nothing archives for a while: the newest readings come from Kafka alone.
        wait_for(lambda: exactly_once(pipe.sql(PER_PARTITION)) == sent, 30, "all readings")
        pipe.jobs.stop()
        dt = datetime(2026, 11, 25, 12, 0, 0, 123456)
        mqtt_publish(brokers.mqtt_port, pipe.mqtt_topic, [reading_payload("Sensor 7", dt, 42)])
        marker = "SELECT sensor_id, ts, value, event_date, mqtt_topic FROM {} WHERE ts = {}"
        ts = "TIMESTAMP '2026-11-25 12:00:00.123456'"
        wait_for(
            lambda: pipe.sql(marker.format("hive.raw.readings_live", ts)) != [], 10, "the marker"
        )
        assert pipe.sql(marker.format("hive.raw.readings_live", ts)) == [
            ["Sensor 7", dt, 42.0, dt.date(), pipe.mqtt_topic]
        ]
        assert pipe.sql(marker.format("hive.raw.readings", ts)) == []  # not archived
        assert exactly_once(pipe.sql(PER_PARTITION)) == sent + 1

        # The archive takes it over: still once, now from the files.
        pipe.jobs.start()
        pipe.wait_healthy(pipe.jobs, "WEB_PORT")
        wait_for(
            lambda: pipe.sql(marker.format("hive.raw.readings", ts)) != [], 60, "marker archived"
        )
        assert exactly_once(pipe.sql(PER_PARTITION)) == sent + 1
    finally:
        pipe.stop()
