"""Great Expectations suites for the platform's tables, versioned with the code.

`python -m expectations` validates a recent window of raw.readings, raw.rejected,
curated.readings_1m and curated.sensor_quality_1m, read through Trino, against the
suites of expectations.suites; rebuilds GX's Data Docs; writes latest.json. It runs
in its own virtualenv (.venv-quality, from expectations/requirements.txt: GX and
pandas stay out of the platform's .venv) and imports nothing of the platform's
packages. README.md beside this file explains the choices.

  settings.py  QualitySettings: one frozen object, read once
  suites.py    the suites, as code (pure)
  source.py    the window's SQL and Trino -> typed pandas DataFrames
  run.py       one run: validate, Data Docs, latest.json
  __main__.py  the command: once, or every N seconds
"""
