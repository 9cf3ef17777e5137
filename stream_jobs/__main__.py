import sys

from stream_jobs.app import app, settings

if len(sys.argv) == 1:  # `python -m stream_jobs` = start a worker
    sys.argv += ["worker", "--loglevel", settings.logging_level.lower().replace("warning", "warn")]
app.main()
