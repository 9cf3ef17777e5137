import sys

from iot_common.kafka_io import wait_for_kafka
from stream_jobs.app import app, settings

if len(sys.argv) == 1:  # `python -m stream_jobs` = start a worker, once Kafka answers
    wait_for_kafka(settings.kafka_bootstrap_servers, timeout_s=600)
    # JSON logs: no banner (Faust prints it outside logging, as text).
    quiet = ["--quiet"] if settings.log_format == "json" else []
    level = settings.logging_level.lower().replace("warning", "warn")
    sys.argv += [*quiet, "worker", "--loglevel", level]
app.main()
