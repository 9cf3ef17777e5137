"""The portal: the platform's one web entry point (`python -m portal`, port 8090).

Pages built from our own data only (inline CSS and JS, nothing fetched from the
internet): the operator's page (every sensor's status, a 24-hour heatmap of the
quality score, one sensor-hour's minutes), the data catalogue (every dataset,
searchable, with live facts: row counts, freshness, the latest quality figures),
the Great Expectations Data Docs that `make quality` builds, and `/health`.

It depends on `iot_common` only: the catalogue comes from the stream jobs' web
server (`GET /catalogue.json`), the data from Trino, offsets from Kafka.
"""
