"""Backfill synthetic history straight into the archive: `python -m stream_jobs.backfill`.

For load and query benchmarks: N sensors, one reading each every INTERVAL
seconds, for DAYS days ending yesterday (UTC), written as the archive writes
readings (same columns, same Parquet layout, one file per day), each day one
Iceberg commit that also deletes the day's earlier backfill rows, so a re-run
replaces rather than adds. The payloads are in the generator's format; the Kafka
lineage columns are null (these rows never went through Kafka) and mqtt_topic is
'backfill'.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And

from stream_jobs.iceberg import IcebergTable, connect, equal
from stream_jobs.lake import Lake
from stream_jobs.settings import StreamSettings
from stream_jobs.tables import READINGS, TS

US = 1_000_000


def day_of_readings(day: date, sensors: int, interval_s: int, seed: int) -> pa.Table:
    """One day of readings of `sensors` sensors, vectorised (about a million rows a second)."""
    n = (86_400 // interval_s) * sensors
    return readings_slice(day, 0, n, sensors, interval_s * US, seed)


def readings_slice(
    day: date, first: int, n: int, sensors: int, tick_us: int, seed: int
) -> pa.Table:
    """Readings first .. first+n-1 of a day of `sensors` sensors, one each every
    `tick_us` (reading i: sensor i % sensors at tick i // sensors), in the readings
    table's columns, received 2-9 ms after their event time, without Kafka lineage."""
    index = pc.add(pa.array(range(n), pa.int64()), first)
    tick = pc.divide(index, sensors)  # integer division on int64
    sensor = pc.add(pc.subtract(index, pc.multiply(tick, sensors)), 1)
    day_start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * US
    jitter = pc.cast(
        pc.floor(pc.multiply(pc.random(n, initializer=seed), min(tick_us, US) - 1)), pa.int64()
    )
    ts_us = pc.add(pc.add(pc.multiply(tick, tick_us), day_start), jitter)
    latency = pc.cast(
        pc.floor(pc.add(pc.multiply(pc.random(n, initializer=seed + 1), 7000), 2000)), pa.int64()
    )
    value = pc.cast(pc.floor(pc.multiply(pc.random(n, initializer=seed + 2), 46)), pa.int64())
    sensor_id = pc.binary_join_element_wise("Sensor ", pc.cast(sensor, pa.string()), "")
    ts = pc.cast(ts_us, TS)
    payload = pc.binary_join_element_wise(
        '{"id": "',
        sensor_id,
        '", "dt": "',
        pc.strftime(ts, format="%Y-%m-%dT%H:%M:%S"),
        '", "value": ',
        pc.cast(value, pa.string()),
        "}",
        "",
    )
    return pa.table(
        {
            "sensor_id": sensor_id,
            "ts": ts,
            "value": pc.cast(value, pa.float64()),
            "payload": payload,
            "mqtt_topic": pa.array(["backfill"] * n, pa.string()),
            "received_at": pc.cast(pc.add(ts_us, latency), TS),
            "kafka_partition": pa.nulls(n, pa.int32()),
            "kafka_offset": pa.nulls(n, pa.int64()),
            "event_date": pc.cast(ts, pa.date32()),
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stream_jobs.backfill", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sensors", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--interval", type=int, default=10, help="seconds between readings")
    parser.add_argument(
        "--end", type=date.fromisoformat, default=None, help="last day (default: yesterday, UTC)"
    )
    args = parser.parse_args(argv)
    s = StreamSettings()
    lake = Lake(s.lake_url, s.storage_options())
    end = args.end or (datetime.now(UTC).date() - timedelta(days=1))
    days = [end - timedelta(days=i) for i in range(args.days - 1, -1, -1)]
    total, started = 0, time.monotonic()
    readings = IcebergTable(
        READINGS,
        catalog=connect(f"thrift://{s.metastore_host}:{s.metastore_port}", lake, s.iceberg_s3()),
        lake=lake,
        namespaces={"raw": s.raw_schema, "curated": s.curated_schema},
        zstd_level=s.zstd_level,
    )
    for i, day in enumerate(days, 1):
        table = day_of_readings(day, args.sensors, args.interval, seed=day.toordinal())
        files = readings.write(table)
        with readings.table.transaction() as tx:
            tx.delete(And(equal("mqtt_topic", "backfill"), equal("event_date", day.isoformat())))
            tx.add_files(files, check_duplicate_files=False)
        total += table.num_rows
        rate = total / (time.monotonic() - started)
        print(
            f"\rday {i}/{len(days)} ({day}): {total:,} readings, {rate:,.0f}/s", end="", flush=True
        )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
