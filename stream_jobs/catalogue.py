"""The data catalogue: every dataset the platform offers, described once.

For each Kafka topic and each SQL table and view: purpose, owner, key,
partitioning, retention, lineage (which job makes it from which input), its
guarantees, and its schema with a description of every column or field. The
schemas are not written here again: a table's columns and their docs come from
its declaration (stream_jobs.tables, which also gives Trino its column
comments), a topic's fields from its data contract (iot_common/contracts). A
test checks that every topic and every table and view that exists is described
here, and nothing else.

`python -m stream_jobs.catalogue` prints the catalogue as JSON (for machines;
the catalogue web page renders the same document).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from iot_common import contracts, topics
from stream_jobs.catalog import live_view_sql, view_sqls
from stream_jobs.tables import (
    READINGS,
    READINGS_1M_REVISIONS,
    REJECTED,
    SENSOR_QUALITY_1M_REVISIONS,
    SENSORS,
    TableSpec,
)

OWNER = "IoT data platform team"
KAFKA_RETENTION = "7 days (Kafka's log.retention.hours=168, kafka/server.properties)"
TABLE_RETENTION = "kept; snapshots for time travel: SNAPSHOT_RETENTION_SECONDS (1 h)"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str


@dataclass(frozen=True)
class Dataset:
    name: str  # a topic name, or <schema>.<table> in the catalog `iceberg`
    kind: str  # "topic", "table" or "view"
    purpose: str
    lineage: str
    guarantees: str
    key: str = ""
    partitioning: str = ""
    retention: str = ""
    owner: str = OWNER
    columns: list[Column] = field(default_factory=list)
    example_sql: str = ""
    # A topic's example: {"value": ..., "headers": {...}} (a test validates it
    # against the topic's contracts); None for tables and views.
    example: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _table_columns(spec: TableSpec) -> list[Column]:
    return [Column(f.name, str(f.type), spec.doc(f.name) or "") for f in spec.documented_schema]


def _contract_columns(subject: str) -> list[Column]:
    doc = contracts.schema(subject)
    out = []
    for name, prop in doc.get("properties", {}).items():
        kind = prop.get("type", "any")
        out.append(
            Column(
                name,
                "/".join(kind) if isinstance(kind, list) else kind,
                prop.get("description", ""),
            )
        )
    return out


def _table(spec: TableSpec, **kw: Any) -> Dataset:
    partitioning = f"day({spec.partition_source})" if spec.partition_source else "none"
    return Dataset(
        name=f"{spec.zone}.{spec.name}",
        kind="table",
        purpose=spec.description,
        partitioning=partitioning,
        retention=TABLE_RETENTION,
        columns=_table_columns(spec),
        **kw,
    )


def datasets() -> list[Dataset]:
    """Every dataset, topics first."""
    return [
        Dataset(
            name=topics.READINGS,
            kind="topic",
            purpose="Every accepted sensor reading, the device's payload byte for byte.",
            lineage="mqtt_bridge, from the MQTT topic `sensors` (and `sensors/#`)",
            guarantees="exactly once per reading; in order per sensor",
            key="sensor id (UTF-8)",
            partitioning=f"{topics.READINGS_PARTITIONS} partitions by key",
            retention=KAFKA_RETENTION,
            columns=_contract_columns("iot.readings"),
            example={
                "key": "Sensor 1",
                "value": {"id": "Sensor 1", "dt": "2026-11-30T12:00:01.250000", "value": 17},
                "headers": {
                    "mqtt_topic": "sensors",
                    "received_at": "2026-11-30T12:00:01.262114Z",
                },
            },
        ),
        Dataset(
            name=topics.DEAD_LETTERS,
            kind="topic",
            purpose="Messages that break the reading contract, as received, with the reason "
            "in the headers.",
            lineage="mqtt_bridge, from the MQTT topic `sensors`",
            guarantees="each rejected message once",
            key="none",
            partitioning="1 partition",
            retention=KAFKA_RETENTION,
            columns=_contract_columns("iot.readings.dlq.headers"),
            example={
                "key": None,
                "value": '{"id": "Sensor 1", "dt": "2026-11-30T12:00:01", "value": "hot"}',
                "headers": {
                    "reason": "bad_value: value must be a finite number, got str",
                    "mqtt_topic": "sensors",
                    "received_at": "2026-11-30T12:00:01.262114Z",
                    "payload_size": "62",
                    "payload_sha256": "0" * 64,
                },
            },
        ),
        Dataset(
            name=topics.SENSORS,
            kind="topic",
            purpose="The sensor list: the latest sensors.json entry of every sensor.",
            lineage="mqtt_bridge, from iot_data_generator/sensors.json (SENSORS_FILE)",
            guarantees="compacted: the latest entry of every sensor stays; null = removed",
            key="sensor id",
            partitioning="1 partition",
            retention="compacted (kept)",
            columns=_contract_columns("iot.sensors"),
            example={
                "key": "Sensor 1",
                "value": {
                    "lat": 52.52,
                    "lng": 13.405,
                    "unit": "C",
                    "type": "temperature",
                    "range": [-20, 45],
                    "description": "Roof, north side",
                },
            },
        ),
        Dataset(
            name=topics.READINGS_1M,
            kind="topic",
            purpose="1-minute figures per sensor, re-emitted with the next revision when "
            "late readings correct a window.",
            lineage="stream_jobs 1-minute job (stream_jobs/resample.py), from iot.readings",
            guarantees="at least once; keep the highest revision per (sensor_id, "
            "window_start) (docs/consumers.md)",
            key="sensor id",
            partitioning=f"{topics.READINGS_1M_PARTITIONS} partitions by key",
            retention=KAFKA_RETENTION,
            columns=_contract_columns("iot.readings.1m"),
            example={
                "key": "Sensor 1",
                "value": {
                    "sensor_id": "Sensor 1",
                    "window_start": "2026-11-30T12:00:00.000000",
                    "window_end": "2026-11-30T12:01:00.000000",
                    "mean": 17.5,
                    "min": 12.0,
                    "max": 24.0,
                    "count": 58,
                    "out_of_range_count": 2,
                    "late_count": 0,
                    "sum": 1015.0,
                    "revision": 1,
                    "emitted_at": "2026-11-30T12:01:07.201337",
                },
            },
        ),
        Dataset(
            name=topics.QUALITY_1M,
            kind="topic",
            purpose="Data quality per sensor and minute: expected, received, valid, out of "
            "range, duplicates, late, rejected, and a score in [0, 1] (docs/quality.md).",
            lineage="stream_jobs quality job (stream_jobs/scoring.py), from iot.readings.1m, "
            "iot.readings.dlq and iot.sensors",
            guarantees="at least once; keep the highest revision per (sensor_id, "
            "window_start) (docs/consumers.md)",
            key="sensor id",
            partitioning=f"{topics.QUALITY_1M_PARTITIONS} partition",
            retention=KAFKA_RETENTION,
            columns=_contract_columns("iot.quality.1m"),
            example={"key": "Sensor 1", "value": contracts.schema("iot.quality.1m")["examples"][0]},
        ),
        Dataset(
            name=topics.QUALITY_STATUS,
            kind="topic",
            purpose="Each change of a sensor's status (ok, degraded, silent): subscribe to "
            "alert on a silent or noisy sensor.",
            lineage="stream_jobs quality job, from its quality figures and the wall clock",
            guarantees="at least once (a restart may repeat a change); compacted: the "
            "latest status of every sensor stays",
            key="sensor id",
            partitioning="1 partition",
            retention="compacted (kept)",
            columns=_contract_columns("iot.quality.status"),
            example={
                "key": "Sensor 3",
                "value": contracts.schema("iot.quality.status")["examples"][0],
            },
        ),
        _table(
            READINGS,
            lineage="stream_jobs archive (stream_jobs/archive.py), from iot.readings",
            guarantees="exactly once (each commit carries the Kafka offsets it covers)",
            key="(sensor_id, ts)",
            example_sql="SELECT ts, value FROM iceberg.raw.readings\n"
            "WHERE sensor_id = 'Sensor 1' AND ts >= current_timestamp - INTERVAL '1' HOUR\n"
            "ORDER BY ts",
        ),
        _table(
            SENSORS,
            lineage="stream_jobs archive, from iot.sensors",
            guarantees="every version once",
            key="(sensor_id, kafka_offset)",
            example_sql="SELECT * FROM iceberg.raw.sensors ORDER BY sensor_id, seen_at",
        ),
        _table(
            REJECTED,
            lineage="stream_jobs archive, from iot.readings.dlq (and records of iot.readings "
            "that break the contract)",
            guarantees="exactly once",
            key="(kafka_topic, kafka_partition, kafka_offset)",
            example_sql="SELECT reason_code, count(*) FROM iceberg.raw.rejected\n"
            "WHERE received_at >= current_timestamp - INTERVAL '1' DAY GROUP BY 1 ORDER BY 2 DESC",
        ),
        _table(
            READINGS_1M_REVISIONS,
            lineage="stream_jobs 1-minute job, from iot.readings (the same emissions as "
            "iot.readings.1m)",
            guarantees="every emission exactly once",
            key="(sensor_id, window_start, revision)",
            example_sql="SELECT * FROM iceberg.curated.readings_1m_revisions\n"
            "WHERE sensor_id = 'Sensor 1' AND window_date = current_date ORDER BY window_start",
        ),
        _table(
            SENSOR_QUALITY_1M_REVISIONS,
            lineage="stream_jobs quality job, from iot.readings.1m, iot.readings.dlq and "
            "iot.sensors (the same emissions as iot.quality.1m)",
            guarantees="every emission exactly once",
            key="(sensor_id, window_start, revision)",
            example_sql="SELECT window_start, score, revision FROM "
            "iceberg.curated.sensor_quality_1m_revisions\n"
            "WHERE sensor_id = 'Sensor 1' AND window_date = current_date "
            "ORDER BY window_start, revision",
        ),
        _view(
            "raw.sensors_current",
            lineage="view over raw.sensors",
            guarantees="as raw.sensors",
            key="sensor_id",
            example_sql="SELECT sensor_id, type, unit, range_min, range_max "
            "FROM iceberg.raw.sensors_current",
        ),
        _view(
            "raw.readings_live",
            lineage="view over raw.readings and Trino's Kafka catalog (iot.readings)",
            guarantees="each reading once across the boundary between table and topic",
            key="(sensor_id, ts)",
            example_sql="SELECT * FROM iceberg.raw.readings_live\n"
            "WHERE event_date = current_date AND ts >= current_timestamp - INTERVAL '5' MINUTE",
        ),
        _view(
            "curated.readings_enriched",
            lineage="view over raw.readings and raw.sensors",
            guarantees="as raw.readings",
            key="(sensor_id, ts)",
        ),
        _view(
            "curated.readings_1m",
            lineage="view over curated.readings_1m_revisions",
            guarantees="one row per sensor and minute",
            key="(sensor_id, window_start)",
            example_sql="SELECT window_start, mean, count FROM iceberg.curated.readings_1m\n"
            "WHERE sensor_id = 'Sensor 1' AND window_date = current_date ORDER BY window_start",
        ),
        _view(
            "curated.sensor_quality_1m",
            lineage="view over curated.sensor_quality_1m_revisions",
            guarantees="one row per sensor and minute",
            key="(sensor_id, window_start)",
            example_sql="SELECT sensor_id, avg(score) AS score, sum(out_of_range) AS "
            "out_of_range\nFROM iceberg.curated.sensor_quality_1m\n"
            "WHERE window_date = current_date GROUP BY sensor_id ORDER BY score",
        ),
        _view(
            "curated.sensor_status",
            lineage="view over curated.sensor_quality_1m and raw.sensors_current",
            guarantees="one row per sensor; computed at query time",
            key="sensor_id",
            example_sql="SELECT sensor_id, status, last_reading_at, recent_score\n"
            "FROM iceberg.curated.sensor_status WHERE status <> 'ok'",
        ),
    ]


def view_comments() -> dict[str, str]:
    """The views the stream jobs create (<schema>.<view>) and their COMMENT, which
    Trino shows: stream_jobs.catalog is their one home, the catalogue reads it."""
    sqls = [*view_sqls("iceberg"), live_view_sql("iceberg", "raw", "kafka", topics.READINGS, 60)]
    found = {}
    for sql in sqls:
        m = re.search(r"CREATE OR REPLACE VIEW iceberg\.(\S+)\s+COMMENT '((?:[^']|'')*)'", sql)
        if m:
            found[m.group(1)] = m.group(2).replace("''", "'")
    return found


def view_names() -> set[str]:
    return set(view_comments())


def _view(name: str, *, lineage: str, guarantees: str, key: str, example_sql: str = "") -> Dataset:
    return Dataset(
        name=name,
        kind="view",
        purpose=view_comments()[name],
        lineage=lineage,
        guarantees=guarantees,
        key=key,
        example_sql=example_sql,
    )


def main() -> int:
    text = json.dumps([d.as_dict() for d in datasets()], indent=2)
    try:
        print(text)
    except BrokenPipeError:  # `| head`: the reader had enough
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
