"""Stage `freshness`: from an MQTT publish until Trino returns the reading.

Single readings, 0.7 s apart, published with QoS 1 through the whole pipeline
(bridge and stream jobs as real processes, default settings); each is polled for
in Trino until it is seen. Twice: in the Iceberg table iceberg.raw.readings (a
reading waits for its batch's commit, up to ROTATE_SECONDS), and in the live view
iceberg.raw.readings_live (the table, and the newest minute straight from Kafka).
Measures the lag from publish to visible: p50, p95, max.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from iot_data_generator.readings import reading_payload
from local.services import Stack
from tests.bench.common import (
    DEFAULTS,
    BenchEnv,
    Record,
    percentile,
    sql_pipeline_with_client,
)
from tests.integration.harness import LIVE_UID, SqlServices


def bench_freshness(
    stack: Stack, sql: SqlServices, work: Path, n: int, live: bool = False
) -> dict[str, Any]:
    """Publish single readings and time until each is visible in Trino (default
    settings), in the Iceberg table raw.readings or, with `live`, in the live view
    raw.readings_live (the table, and the newest minute straight from Kafka)."""
    pipe, client = sql_pipeline_with_client(
        stack,
        sql,
        work / ("fresh-live" if live else "fresh"),
        {"ROTATE_SECONDS": str(DEFAULTS.rotate_seconds)},
        **({"uid": LIVE_UID} if live else {}),
    )
    published: dict[int, float] = {}
    seen: dict[int, float] = {}
    today = datetime.utcnow().date()
    query = (
        f"SELECT CAST(value AS bigint) FROM iceberg.raw.readings{'_live' if live else ''} "
        f"WHERE sensor_id = 'fresh' AND event_date = DATE '{today}'"
    )
    next_publish = time.monotonic()
    while len(seen) < n:
        now = time.monotonic()
        if len(published) < n and now >= next_publish:
            i = len(published)
            payload = reading_payload("fresh", datetime.utcnow(), i)
            client.publish(pipe.mqtt_topic, payload, qos=1).wait_for_publish()
            published[i] = time.monotonic()
            next_publish = now + 0.7
        for (value,) in pipe.sql(query):
            seen.setdefault(value, time.monotonic())
        if now - next_publish > 120:
            raise TimeoutError("readings did not become visible")
    client.loop_stop()
    pipe.stop()
    lags = [seen[i] - published[i] for i in range(n)]
    return {
        "readings": n,
        "p50_s": percentile(lags, 0.5),
        "p95_s": percentile(lags, 0.95),
        "max_s": max(lags),
        "rotate_seconds": DEFAULTS.rotate_seconds,
    }


def run(env: BenchEnv, args: argparse.Namespace, record: Record) -> None:
    record(
        "freshness (MQTT -> Trino, table)",
        bench_freshness(env.stack, env.sql, env.work, args.freshness),
    )
    record(
        "freshness, live view",
        bench_freshness(env.stack, env.sql, env.work, args.freshness, live=True),
    )
