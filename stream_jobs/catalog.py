"""The SQL side of the tables: views for BI in Trino, over the Iceberg tables.

The tables themselves are created by the jobs that write them (stream_jobs.iceberg,
with their column comments); this creates, once the tables exist and Trino is up,
the views over them: raw.sensors_current, curated.readings_enriched,
curated.readings_1m, curated.sensor_quality_1m, curated.sensor_status and the
live view raw.readings_live. `CREATE OR REPLACE`:
a changed definition replaces the old one at the next start. Trino down or
starting is retried, never fatal. It also runs the maintenance's SQL (`execute`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from trino.exceptions import Error as TrinoError
from trino.exceptions import HttpError, TrinoUserError

from iot_common import trino_client
from stream_jobs.quality import DEGRADED_BELOW, SILENT_AFTER_S, STATUS_MINUTES
from stream_jobs.settings import StreamSettings

log = logging.getLogger(__name__)

# Trino down, starting, or its metastore unreachable: retried, never fatal.
UNAVAILABLE = (TrinoError, HttpError, OSError)


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def view_sqls(catalog: str, raw: str = "raw", curated: str = "curated") -> list[str]:
    """Views for BI; `CREATE OR REPLACE` so a changed definition replaces the old one."""
    return [
        f"""CREATE OR REPLACE VIEW {catalog}.{raw}.sensors_current
COMMENT 'The current version of every sensor that is in the sensor list'
AS SELECT sensor_id, lat, lng, unit, type, range_min, range_max, description,
          seen_at AS valid_since
FROM (SELECT s.*, row_number() OVER (PARTITION BY sensor_id ORDER BY kafka_offset DESC) AS rn
      FROM {catalog}.{raw}.sensors s)
WHERE rn = 1 AND NOT deleted""",
        f"""CREATE OR REPLACE VIEW {catalog}.{curated}.readings_enriched
COMMENT 'Readings with the sensor metadata valid at their time (the first version of a sensor \
also covers readings before it was seen). Filter on event_date to prune days.'
AS WITH versions AS (
  SELECT sensor_id, lat, lng, unit, type, range_min, range_max, description, deleted,
         CASE WHEN row_number() OVER w = 1 THEN TIMESTAMP '0001-01-01 00:00:00'
              ELSE seen_at END AS valid_from,
         lead(seen_at) OVER w AS valid_to
  FROM {catalog}.{raw}.sensors
  WINDOW w AS (PARTITION BY sensor_id ORDER BY kafka_offset))
SELECT r.sensor_id, r.ts, r.value, v.unit, v.type, v.description, v.lat, v.lng,
       v.range_min, v.range_max,
       r.value BETWEEN v.range_min AND v.range_max AS in_range,
       r.received_at, r.event_date
FROM {catalog}.{raw}.readings r
LEFT JOIN versions v
  ON v.sensor_id = r.sensor_id AND r.ts >= v.valid_from
 AND (v.valid_to IS NULL OR r.ts < v.valid_to) AND NOT v.deleted""",
        f"""CREATE OR REPLACE VIEW {catalog}.{curated}.readings_1m
COMMENT '1-minute figures per sensor (the newest revision of each window). Filter on \
window_date to prune days.'
AS SELECT sensor_id, window_start, window_end, mean, min, max, count, out_of_range_count,
          late_count, revision, emitted_at, window_date
FROM (SELECT w.*, row_number() OVER (PARTITION BY sensor_id, window_start, window_date
                                     ORDER BY revision DESC) AS rn
      FROM {catalog}.{curated}.readings_1m_revisions w)
WHERE rn = 1""",
        f"""CREATE OR REPLACE VIEW {catalog}.{curated}.sensor_quality_1m
COMMENT 'Data quality per sensor and minute (the newest revision of each): expected, received, \
valid, out of range, duplicates, late, rejected and the score in [0, 1] (docs/quality.md). \
Filter on window_date to prune days.'
AS SELECT sensor_id, window_start, window_end, expected, received, valid, out_of_range,
          duplicates, late, rejected, score, revision, emitted_at, window_date
FROM (SELECT q.*, row_number() OVER (PARTITION BY sensor_id, window_start, window_date
                                     ORDER BY revision DESC) AS rn
      FROM {catalog}.{curated}.sensor_quality_1m_revisions q)
WHERE rn = 1""",
        sensor_status_sql(catalog, raw, curated),
    ]


def sensor_status_sql(catalog: str, raw: str, curated: str) -> str:
    """Each sensor's status now, by the rule of stream_jobs.quality.status (its
    constants are written into the SQL from there): silent when its newest minute
    with readings ended SILENT_AFTER_S ago or more (or it never sent), degraded when
    the mean score of its newest STATUS_MINUTES minutes is below DEGRADED_BELOW,
    leaving out a minute with readings after one without (a start: partial), as
    QualityState.recent_scores does.
    Every sensor of the list is shown, and any other that sent in the last day."""
    now = "CAST(current_timestamp AT TIME ZONE 'UTC' AS timestamp(6))"
    return f"""CREATE OR REPLACE VIEW {catalog}.{curated}.sensor_status
COMMENT 'Each sensor''s status now: silent (no reading for {SILENT_AFTER_S:.0f} s), degraded \
(mean score of its newest {STATUS_MINUTES} minutes below {DEGRADED_BELOW}) or ok, with its \
last reading time and recent score. For alerts; history is in sensor_quality_1m.'
AS WITH q AS (
  SELECT sensor_id, window_start, window_end, received - duplicates AS readings, score,
         lag(received - duplicates) OVER w AS readings_before,
         lag(window_start) OVER w AS start_before
  FROM {catalog}.{curated}.sensor_quality_1m
  WHERE window_date >= current_date - INTERVAL '1' DAY
  WINDOW w AS (PARTITION BY sensor_id ORDER BY window_start)),
counted AS (
  -- a minute with readings after one without is a start (partial): not counted
  SELECT sensor_id, score,
         row_number() OVER (PARTITION BY sensor_id ORDER BY window_start DESC) AS rn
  FROM q
  WHERE NOT (readings > 0 AND (start_before IS NULL OR readings_before = 0
                               OR start_before <> window_start - INTERVAL '1' MINUTE))),
recent AS (
  SELECT sensor_id, avg(score) AS recent_score FROM counted
  WHERE rn <= {STATUS_MINUTES} GROUP BY sensor_id),
figures AS (
  SELECT sensor_id, max(window_end) FILTER (WHERE readings > 0) AS last_reading_at,
         max(window_end) AS checked_up_to
  FROM q GROUP BY sensor_id),
sensors AS (
  SELECT coalesce(s.sensor_id, f.sensor_id) AS sensor_id, f.last_reading_at, r.recent_score,
         f.checked_up_to
  FROM {catalog}.{raw}.sensors_current s
  FULL OUTER JOIN figures f ON f.sensor_id = s.sensor_id
  LEFT JOIN recent r ON r.sensor_id = f.sensor_id)
SELECT sensor_id,
       CASE WHEN last_reading_at IS NULL
                 OR last_reading_at <= {now} - INTERVAL '{SILENT_AFTER_S:.0f}' SECOND
            THEN 'silent'
            WHEN recent_score < {DEGRADED_BELOW} THEN 'degraded'
            ELSE 'ok' END AS status,
       last_reading_at, recent_score, checked_up_to, {now} AS checked_at
FROM sensors"""


def kafka_table(topic: str) -> tuple[str, str]:
    """Trino's Kafka connector names the table of topic `a.b` as schema a, table b
    (and a topic without a dot as table `default.<topic>`)."""
    schema, dot, table = topic.partition(".")
    return (schema, table) if dot else ("default", topic)


def live_view_sql(catalog: str, raw: str, kafka_catalog: str, topic: str, horizon_s: int) -> str:
    """raw.readings_live: the archive up to `horizon_s` ago, the topic after that.

    Both sides split at one instant B (the query's start minus the horizon, in ms):
    a reading is taken from the archive when received_at < B and from Kafka when
    its record timestamp >= B. The bridge sets the record timestamp to received_at
    in ms, so each reading falls on exactly one side; the archive holds every
    reading older than B as long as it lags less than the horizon behind."""
    schema, table = kafka_table(topic)
    boundary = (
        "CAST(current_timestamp AT TIME ZONE 'UTC' AS timestamp(3))"
        f" - INTERVAL '{horizon_s}' SECOND"
    )
    # dt is naive UTC (the contract; an explicit offset is allowed): Trino would
    # read a naive one in the session's zone, so it gets a Z. try(): a dt that
    # Python parses and Trino does not gives a null ts rather than a failed query.
    comment = (
        f"Every reading up to now: raw.readings, and the newest {horizon_s} s straight from "
        "Kafka (visible about a second after publishing). Filter on event_date."
    )
    return rf"""CREATE OR REPLACE VIEW {catalog}.{raw}.readings_live
COMMENT {sql_literal(comment)}
AS SELECT sensor_id, ts, value, payload, mqtt_topic, received_at, kafka_partition,
          kafka_offset, event_date
FROM {catalog}.{raw}.readings
WHERE received_at < {boundary}
UNION ALL
SELECT sensor_id, ts, value, payload, mqtt_topic, received_at, kafka_partition, kafka_offset,
       CAST(ts AS date) AS event_date
FROM (SELECT sensor_id, value, payload, mqtt_topic, kafka_partition, kafka_offset,
             CAST(try(from_iso8601_timestamp_nanos(
                 IF(regexp_like(dt, '([zZ]|[+-]\d{{2}}(:?\d{{2}})?)$'), dt, dt || 'Z')))
                  AT TIME ZONE 'UTC' AS timestamp(6)) AS ts,
             CAST(from_iso8601_timestamp_nanos(received_at) AT TIME ZONE 'UTC'
                  AS timestamp(6)) AS received_at
      FROM (SELECT json_extract_scalar(_message, '$.id') AS sensor_id,
                   regexp_replace(json_extract_scalar(_message, '$.dt'),
                                  '^(\d{{4}}-\d{{2}}-\d{{2}}) ', '$1T') AS dt,
                   CAST(json_extract_scalar(_message, '$.value') AS double) AS value,
                   _message AS payload,
                   from_utf8(element_at(_headers, 'mqtt_topic')[1]) AS mqtt_topic,
                   from_utf8(element_at(_headers, 'received_at')[1]) AS received_at,
                   CAST(_partition_id AS integer) AS kafka_partition,
                   _partition_offset AS kafka_offset
            FROM {kafka_catalog}."{schema}"."{table}"
            WHERE _timestamp >= {boundary}))"""


class SqlCatalog:
    """Creates the views once the tables exist; runs in its own thread."""

    def __init__(
        self,
        *,
        login: Mapping[str, Any],
        catalog: str,
        raw: str,
        curated: str,
        kafka_catalog: str,
        readings_topic: str,
        live_horizon_s: int,
        wait_for: Callable[[], bool],
    ) -> None:
        # host, port, user and credentials (TrinoSettings.trino_login)
        self.login, self.catalog = dict(login), catalog
        self.raw, self.curated = raw, curated  # schema names (tests use their own)
        self.kafka_catalog, self.readings_topic = kafka_catalog, readings_topic
        self.live_horizon_s = live_horizon_s
        self.wait_for = wait_for  # the tables exist (their writers created them)
        self.ready = threading.Event()

    @property
    def status(self) -> str:
        return "ready" if self.ready.is_set() else "waiting"

    def execute(self, sql: str) -> list[list[object]]:
        conn = trino_client.connect(
            **self.login,
            catalog=self.catalog,
            request_timeout=600,
        )
        try:
            cur = conn.cursor()
            cur.execute(sql)
            return cur.fetchall()  # type: ignore[no-any-return]
        finally:
            conn.close()

    def ensure_views(self) -> None:
        for sql in view_sqls(self.catalog, self.raw, self.curated):
            self.execute(sql)
        self.ensure_live_view()
        log.info(
            "SQL views ready in %s.%s and %s.%s", self.catalog, self.raw, self.catalog, self.curated
        )

    def ensure_live_view(self) -> None:
        """raw.readings_live, when Trino's Kafka catalog has the readings topic."""
        if not self.kafka_catalog:
            return
        schema, table = kafka_table(self.readings_topic)
        try:
            found = self.execute(
                f"SELECT count(*) FROM {self.kafka_catalog}.information_schema.tables "
                f"WHERE table_schema = {sql_literal(schema)} "
                f"AND table_name = {sql_literal(table)}"
            )
        except TrinoUserError as exc:
            found = [[0]]
            log.warning("live view: %s", str(exc).splitlines()[0][:200])
        if found != [[1]]:
            log.warning(
                "no live view %s.%s.readings_live: Trino's catalog %r does not list topic "
                "%s (kafka.table-names in trino/etc/catalog/kafka.properties)",
                self.catalog,
                self.raw,
                self.kafka_catalog,
                self.readings_topic,
            )
            return
        self.execute(
            live_view_sql(
                self.catalog, self.raw, self.kafka_catalog, self.readings_topic, self.live_horizon_s
            )
        )

    def run(self, stop: threading.Event, retry_s: float = 5.0) -> None:
        while not stop.is_set() and not self.ready.is_set():
            if not self.wait_for():
                stop.wait(0.5)
                continue
            try:
                self.ensure_views()
                self.ready.set()
            except UNAVAILABLE as exc:
                log.warning(
                    "Trino at %s:%d not usable yet (%s); retrying in %.0f s",
                    self.login["host"],
                    self.login["port"],
                    str(exc).splitlines()[0][:200],
                    retry_s,
                )
                stop.wait(retry_s)


class NoSqlCatalog:
    """SQL off (TRINO_HOST empty): no views, and nothing run through Trino (snapshot
    expiry and orphan removal wait for a Trino)."""

    status = "off"

    def execute(self, sql: str) -> list[list[object]]:
        log.debug("SQL off: not run: %s", sql)
        return []

    def run(self, stop: threading.Event) -> None:
        return


def sql_catalog(
    s: StreamSettings, wait_for: Callable[[], bool] = lambda: True
) -> SqlCatalog | NoSqlCatalog:
    """The SQL catalog the settings describe; one that does nothing when TRINO_HOST is empty."""
    if not s.trino_host:
        return NoSqlCatalog()
    return SqlCatalog(
        login=s.trino_login(),
        catalog=s.trino_catalog,
        raw=s.raw_schema,
        curated=s.curated_schema,
        kafka_catalog=s.trino_kafka_catalog,
        readings_topic=s.kafka_topic_readings,
        live_horizon_s=s.live_view_horizon_seconds,
        wait_for=wait_for,
    )
