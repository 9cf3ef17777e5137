-- Example queries for BI on the hive catalog (Trino). Timestamps are UTC without a
-- zone; filter on event_date (the UTC date of ts) as well as ts: it skips whole days.
-- tests/integration/test_sql.py runs every query below.

-- name: latest_value_per_sensor
-- The newest reading of every sensor seen in the last two days, with unit and place.
SELECT r.sensor_id,
       max(r.ts) AS ts,
       max_by(r.value, r.ts) AS value,
       s.unit,
       s.description
FROM hive.raw.readings r
LEFT JOIN hive.raw.sensors_current s ON s.sensor_id = r.sensor_id
WHERE r.event_date >= CAST(current_timestamp AT TIME ZONE 'UTC' AS date) - INTERVAL '1' DAY
GROUP BY r.sensor_id, s.unit, s.description
ORDER BY r.sensor_id;

-- name: sensor_history
-- One sensor's readings of the last hour.
SELECT ts, value
FROM hive.raw.readings
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
FROM hive.raw.readings
WHERE event_date >= CAST(current_timestamp AT TIME ZONE 'UTC' AS date) - INTERVAL '30' DAY
GROUP BY sensor_id, event_date
ORDER BY sensor_id, day;

-- name: readings_out_of_range
-- Readings outside their sensor's valid range today, with the sensor's metadata.
SELECT sensor_id, ts, value, range_min, range_max, unit, description
FROM hive.curated.readings_enriched
WHERE event_date = CAST(current_timestamp AT TIME ZONE 'UTC' AS date)
  AND NOT in_range
ORDER BY ts DESC;

-- name: rejected_by_reason
-- What the bridge rejected, per day and reason.
SELECT received_date, reason_code, count(*) AS messages
FROM hive.raw.rejected
GROUP BY received_date, reason_code
ORDER BY received_date DESC, messages DESC;

-- name: sensor_minutes
-- One sensor's 1-minute mean, min and max over the last three hours: the newest
-- revision of each minute (docs/resampling.md explains revisions).
SELECT window_start, mean, min, max, count, out_of_range_count
FROM hive.curated.readings_1m
WHERE sensor_id = 'Sensor 1'
  AND window_date >= CAST(current_timestamp AT TIME ZONE 'UTC' AS date) - INTERVAL '1' DAY
  AND window_start >= CAST(current_timestamp AT TIME ZONE 'UTC' AS timestamp(6)) - INTERVAL '3' HOUR
ORDER BY window_start;
