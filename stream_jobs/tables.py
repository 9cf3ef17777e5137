"""Our tables, each declared once: name, columns with their meaning and unit (in
the Arrow field metadata, key `doc`; Trino and DBeaver show them as column
comments), partitioning, sort order and zone. How Kafka records become rows of
these tables is stream_jobs.records; how a table is written and committed,
stream_jobs.iceberg.

  raw.readings      (iot.readings)      partitioned by day of ts
  raw.sensors       (iot.sensors)       every version of every sensor, with when it was seen
  raw.rejected      (iot.readings.dlq)  dead letters with the reason, by day of received_at;
                                        also the records of iot.readings the contract rejects
  curated.readings_1m_revisions         every emission of every 1-minute window
  curated.sensor_quality_1m_revisions   every emission of every sensor-minute's quality
Timestamps are UTC, microsecond precision, stored without a zone (Iceberg's
`timestamp`), so every engine reads the same wall-clock value.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import pyarrow as pa

TS = pa.timestamp("us")
DOC = b"doc"  # the field metadata key of a column's description


def col(name: str, typ: pa.DataType, doc: str) -> pa.Field:
    """A column and its description (meaning, unit)."""
    return pa.field(name, typ, metadata={DOC: doc.encode()})


@dataclass(frozen=True)
class TableSpec:
    name: str  # the table's name in SQL (and its folder under warehouse/<zone>/)
    schema: pa.Schema  # the columns, each with its `doc`
    sort_by: tuple[str, ...]
    description: str
    zone: str = "raw"  # lake folder and SQL schema: raw (as received) or curated (derived)
    # The table is partitioned by day(partition_source); partition_column holds its
    # UTC date, a column of its own after the others (all None: not partitioned).
    partition_source: str | None = None
    partition_column: str | None = None
    partition_doc: str = ""

    @cached_property
    def documented_schema(self) -> pa.Schema:
        """The table's columns with their docs: `schema`, then the date column."""
        if self.partition_column is None:
            return self.schema
        return self.schema.append(col(self.partition_column, pa.date32(), self.partition_doc))

    @cached_property
    def columns(self) -> pa.Schema:
        """`schema` without field metadata (the columns a builder makes, before the date)."""
        return pa.schema([f.remove_metadata() for f in self.schema])

    @cached_property
    def table_schema(self) -> pa.Schema:
        """The table's columns as rows and files carry them (no field metadata)."""
        return pa.schema([f.remove_metadata() for f in self.documented_schema])

    def doc(self, column: str) -> str | None:
        """A column's description."""
        index = self.documented_schema.get_field_index(column)
        if index < 0:
            return None
        metadata = self.documented_schema.field(index).metadata or {}
        return metadata[DOC].decode() if DOC in metadata else None


# -- raw.readings ---------------------------------------------------------------------

READINGS_SCHEMA = pa.schema(
    [
        col(
            "sensor_id",
            pa.string(),
            "Sensor id as sent by the device (the payload's id), e.g. 'Sensor 1'",
        ),
        col("ts", TS, "Event time: the payload's dt, UTC, microseconds"),
        col(
            "value",
            pa.float64(),
            "Measured value, in the unit of the sensor (see raw.sensors_current)",
        ),
        col("payload", pa.string(), "The MQTT payload exactly as received (JSON text)"),
        col("mqtt_topic", pa.string(), "MQTT topic the reading arrived on"),
        col("received_at", TS, "When the bridge received the message, UTC, microseconds"),
        col("kafka_partition", pa.int32(), "Kafka partition the record was read from (lineage)"),
        col(
            "kafka_offset", pa.int64(), "Kafka offset of the record within its partition (lineage)"
        ),
    ]
)

READINGS = TableSpec(
    "readings",
    READINGS_SCHEMA,
    ("sensor_id", "ts"),
    description="Every accepted sensor reading, exactly once, as received over MQTT. "
    "Partitioned by day of ts: filter on ts or event_date to read only the days you need.",
    partition_source="ts",
    partition_column="event_date",
    partition_doc="UTC date of ts (the table is partitioned by day of ts: filter on "
    "either to read only the days you need)",
)

# -- raw.sensors ----------------------------------------------------------------------

SENSORS_SCHEMA = pa.schema(
    [
        col("sensor_id", pa.string(), "Sensor id (the key of sensors.json)"),
        col("lat", pa.float64(), "Latitude of the sensor"),
        col("lng", pa.float64(), "Longitude of the sensor"),
        col("unit", pa.string(), "Unit of the sensor's values, e.g. 'C'"),
        col("type", pa.string(), "Kind of measurement, e.g. 'temperature'"),
        col("range_min", pa.float64(), "Lowest valid value, in unit"),
        col("range_max", pa.float64(), "Highest valid value, in unit"),
        col("description", pa.string(), "Where or what the sensor is"),
        col("deleted", pa.bool_(), "True when the sensor was removed from the list (a tombstone)"),
        col("payload", pa.string(), "The sensor's entry as published to Kafka (JSON text)"),
        col("seen_at", TS, "When this version reached Kafka, UTC, milliseconds"),
        col("kafka_partition", pa.int32(), "Kafka partition the record was read from (lineage)"),
        col(
            "kafka_offset", pa.int64(), "Kafka offset of the record within its partition (lineage)"
        ),
    ]
)

SENSORS = TableSpec(
    "sensors",
    SENSORS_SCHEMA,
    ("sensor_id", "kafka_offset"),
    description="Every version of every sensor of the sensor list (sensors.json), with when "
    "the platform saw it; raw.sensors_current has the current one per sensor.",
)

# -- raw.rejected ---------------------------------------------------------------------

REJECTED_SCHEMA = pa.schema(
    [
        col("reason", pa.string(), "Why the message was rejected: '<code>: <detail>'"),
        col(
            "reason_code",
            pa.string(),
            "Stable reason code: not_json, not_object, missing_id, bad_id, missing_dt, bad_dt, "
            "dt_too_old, dt_in_future, missing_value, bad_value, oversized, duplicate, "
            "kafka_rejected, internal_error",
        ),
        col(
            "payload",
            pa.binary(),
            "The MQTT payload exactly as received (bytes; at most the first 64 KiB)",
        ),
        col("payload_text", pa.string(), "The payload as UTF-8 text (invalid bytes replaced)"),
        col("mqtt_topic", pa.string(), "MQTT topic the message arrived on"),
        col("received_at", TS, "When the bridge received the message, UTC, microseconds"),
        col("kafka_partition", pa.int32(), "Kafka partition the record was read from (lineage)"),
        col(
            "kafka_offset", pa.int64(), "Kafka offset of the record within its partition (lineage)"
        ),
        # Last: an existing installation gets these by ALTER TABLE ADD COLUMN, which appends.
        col(
            "kafka_topic",
            pa.string(),
            "Kafka topic the record was read from: the dead-letter topic for the bridge's "
            "rejections, the readings topic for records that reached it without the bridge and "
            "break the contract",
        ),
        col(
            "payload_size",
            pa.int64(),
            "Size of the payload as received, in bytes (payload keeps at most 64 KiB of it)",
        ),
        col(
            "payload_sha256",
            pa.string(),
            "SHA-256 of the whole payload as received (hex): identifies a message whose payload "
            "was cut",
        ),
    ]
)

REJECTED = TableSpec(
    "rejected",
    REJECTED_SCHEMA,
    ("kafka_offset",),
    description="Messages that break the reading contract (dead letters), kept verbatim with "
    "the reason: those the bridge did not accept, and records of the readings topic that "
    "reached it without the bridge. Partitioned by received_date.",
    partition_source="received_at",
    partition_column="received_date",
    partition_doc="UTC date of received_at (the table is partitioned by day of received_at)",
)

# -- curated.readings_1m_revisions ----------------------------------------------------

READINGS_1M_SCHEMA = pa.schema(
    [
        col("sensor_id", pa.string(), "Sensor id"),
        col("window_start", TS, "Start of the minute, UTC (inclusive)"),
        col("window_end", TS, "End of the minute, UTC (exclusive)"),
        col(
            "mean",
            pa.float64(),
            "Mean of the readings in range, in the sensor's unit (null if none)",
        ),
        col("min", pa.float64(), "Lowest reading in range"),
        col("max", pa.float64(), "Highest reading in range"),
        col("count", pa.int64(), "Readings in range (those in mean, min and max)"),
        col(
            "out_of_range_count",
            pa.int64(),
            "Readings outside the sensor's range, counted but kept out of the figures",
        ),
        col("sum", pa.float64(), "Sum of the readings in range (mean = sum / count)"),
        col(
            "revision",
            pa.int32(),
            "1 when the window closed, +1 for each correction by late readings",
        ),
        col("emitted_at", TS, "When this revision was computed, UTC"),
        col(
            "late_count",
            pa.int64(),
            "Readings received more than 10 s after their dt (in range or not): a data "
            "quality figure (docs/quality.md); null in windows emitted before it existed",
        ),
    ]
)

READINGS_1M_REVISIONS = TableSpec(
    "readings_1m_revisions",
    READINGS_1M_SCHEMA,
    ("sensor_id", "window_start", "revision"),
    description="Every emission of every 1-minute window: a window is emitted when it "
    "closes and again, with the next revision, when a late reading corrects it. "
    "curated.readings_1m shows the newest revision only.",
    zone="curated",
    partition_source="window_start",
    partition_column="window_date",
    partition_doc="UTC date of window_start (the table is partitioned by day of window_start)",
)

# -- curated.sensor_quality_1m_revisions ------------------------------------------------

SENSOR_QUALITY_1M_SCHEMA = pa.schema(
    [
        col("sensor_id", pa.string(), "Sensor id"),
        col("window_start", TS, "Start of the minute, UTC (inclusive)"),
        col("window_end", TS, "End of the minute, UTC (exclusive)"),
        col(
            "expected",
            pa.float64(),
            "Readings the sensor should send in a minute: 60 s / its interval (interval_ms "
            "in its sensors.json entry, else EXPECTED_INTERVAL_MS)",
        ),
        col(
            "received",
            pa.int64(),
            "Readings the bridge received for the minute (by dt), duplicates included",
        ),
        col("valid", pa.int64(), "Received, not duplicates, within the sensor's range"),
        col("out_of_range", pa.int64(), "Received, not duplicates, outside the sensor's range"),
        col(
            "duplicates",
            pa.int64(),
            "Readings whose (sensor, dt) had arrived before (dead letters with reason duplicate)",
        ),
        col(
            "late",
            pa.int64(),
            "Received, not duplicates, more than 10 s after their dt (LATE_AFTER_S)",
        ),
        col(
            "rejected",
            pa.int64(),
            "Other dead letters naming the sensor: by their dt's minute, else their receive time's",
        ),
        col(
            "score",
            pa.float64(),
            "Quality score in [0, 1]: completeness x validity x (1 - 0.5 x lateness share) "
            "(docs/quality.md); 0 when nothing was received",
        ),
        col(
            "revision",
            pa.int32(),
            "1 when the minute closed, +1 for each change by a later record",
        ),
        col("emitted_at", TS, "When this revision was computed, UTC"),
    ]
)

SENSOR_QUALITY_1M_REVISIONS = TableSpec(
    "sensor_quality_1m_revisions",
    SENSOR_QUALITY_1M_SCHEMA,
    ("sensor_id", "window_start", "revision"),
    description="Every emission of every sensor-minute's data quality figures: emitted when "
    "the minute closes and again, with the next revision, when a later reading or dead "
    "letter changes it. curated.sensor_quality_1m shows the newest revision only.",
    zone="curated",
    partition_source="window_start",
    partition_column="window_date",
    partition_doc="UTC date of window_start (the table is partitioned by day of window_start)",
)

TABLES = (READINGS, SENSORS, REJECTED, READINGS_1M_REVISIONS, SENSOR_QUALITY_1M_REVISIONS)
