-- Example queries for BI in the lake catalog (Trino): the BI login's read-only view of
-- the platform's Iceberg tables (docs/security.md; admins reach the same tables as
-- iceberg.*). Timestamps are UTC without a zone; filter on ts or event_date (the UTC
-- date of ts): the tables are partitioned by day, so either skips whole days.
-- tests/integration/test_sql.py runs every query below as the BI login.

-- name: latest_value_per_sensor
-- The newest reading of every sensor seen in the last two days, with unit and place.
SELECT r.sensor_id,
       max(r.ts) AS ts,
       max_by(r.value, r.ts) AS value,
       s.unit,
       s.description
FROM lake.raw.readings r
LEFT JOIN lake.raw.sensors_current s ON s.sensor_id = r.sensor_id
WHERE r.event_date >= CAST(current_timestamp AT TIME ZONE 'UTC' AS date) - INTERVAL '1' DAY
GROUP BY r.sensor_id, s.unit, s.description
ORDER BY r.sensor_id;

-- name: sensor_history
-- One sensor's readings of the last hour.
SELECT ts, value
FROM lake.raw.readings
WHERE sensor_id = 'Sensor 1'
  AND event_date >= CAST(current_timestamp AT TIME ZONE 'UTC' AS date) - INTERVAL '1' DAY
  AND ts >= CAST(current_timestamp AT TIME ZONE 'UTC' AS timestamp(6)) - INTERVAL '1' HOUR
ORDER BY ts;

-- name: daily_stats
-- Daily minimum, mean and maximum of every sensor over the last 30 days.
SELECT sensor_id,
       event_date AS day,
       min(value) AS min_value,
       avg(value) AS mean_value,
       max(value) AS max_value,
       count(*) AS readings
FROM lake.raw.readings
WHERE event_date >= CAST(current_timestamp AT TIME ZONE 'UTC' AS date) - INTERVAL '30' DAY
GROUP BY sensor_id, event_date
ORDER BY sensor_id, day;

-- name: readings_out_of_range
-- Readings outside their sensor's valid range today, with the sensor's metadata.
SELECT sensor_id, ts, value, range_min, range_max, unit, description
FROM lake.curated.readings_enriched
WHERE event_date = CAST(current_timestamp AT TIME ZONE 'UTC' AS date)
  AND NOT in_range
ORDER BY ts DESC;

-- name: rejected_by_reason
-- What the bridge rejected, per day and reason.
SELECT received_date, reason_code, count(*) AS messages
FROM lake.raw.rejected
GROUP BY received_date, reason_code
ORDER BY received_date DESC, messages DESC;

-- name: sensor_minutes
-- One sensor's 1-minute mean, min and max over the last three hours: the newest
-- revision of each minute (docs/resampling.md explains revisions).
SELECT window_start, mean, min, max, count, out_of_range_count
FROM lake.curated.readings_1m
WHERE sensor_id = 'Sensor 1'
  AND window_date >= CAST(current_timestamp AT TIME ZONE 'UTC' AS date) - INTERVAL '1' DAY
  AND window_start >= CAST(current_timestamp AT TIME ZONE 'UTC' AS timestamp(6)) - INTERVAL '3' HOUR
ORDER BY window_start;

-- name: readings_a_minute_ago
-- Time travel: the table as it was a minute ago, against now (the readings archived
-- in the last minute). Reaches back SNAPSHOT_RETENTION_SECONDS (an hour by default):
-- a point before the oldest snapshot kept, or before the table's first commit, fails.
SELECT (SELECT count(*) FROM lake.raw.readings) AS now,
       (SELECT count(*)
        FROM lake.raw.readings FOR TIMESTAMP AS OF current_timestamp - INTERVAL '1' MINUTE)
           AS a_minute_ago;

-- name: recent_commits
-- The table's last commits (snapshots): when, what ('append': the archive's commits,
-- 'overwrite': compaction swapping files), how many readings and files each added.
-- A snapshot_id here is what FOR VERSION AS OF takes.
SELECT committed_at,
       snapshot_id,
       operation,
       CAST(element_at(summary, 'added-records') AS bigint) AS added_readings,
       CAST(element_at(summary, 'added-data-files') AS integer) AS added_files,
       CAST(element_at(summary, 'deleted-data-files') AS integer) AS removed_files,
       CAST(element_at(summary, 'total-records') AS bigint) AS total_readings
FROM lake.raw."readings$snapshots"
ORDER BY committed_at DESC
LIMIT 20;

-- name: files_per_day
-- The data files of the current snapshot per day: how many, how large, bytes per
-- reading (small files of the last minutes wait for compaction).
SELECT partition.ts_day AS day,
       count(*) AS files,
       sum(record_count) AS readings,
       sum(file_size_in_bytes) AS bytes,
       round(CAST(sum(file_size_in_bytes) AS double) / sum(record_count), 1) AS bytes_per_reading
FROM lake.raw."readings$files"
GROUP BY partition.ts_day
ORDER BY day DESC;
