"""Named steps of our protocols where a test can make the process die at once.

`IOT_CRASH_AT=<step>` (or `<step>@<n>`: the n-th time the step is reached)
makes the process call `os._exit(CRASH_EXIT_CODE)` right there: no finally
blocks, no flush, no goodbye to Kafka or MQTT, as a kill -9 or a power cut
would. Tests use it to prove that a crash at each step neither loses nor
doubles an accepted reading or dead letter. Unset (always, in production) a
step costs one comparison.

The steps, in the order each protocol passes them:
  bridge.produced         a reading handed to the producer, Kafka has not confirmed it
  bridge.confirmed        Kafka confirmed a reading, its MQTT ack not yet sent
  bridge.dead_lettered    Kafka confirmed a dead letter, its MQTT ack not yet sent
  minute.emitted             a checkpoint's emissions are confirmed by Kafka
  quality.emitted            the quality job's emissions and status changes are confirmed
  iceberg.<table>.written    a commit's files are written, the commit not begun
  iceberg.<table>.metadata   in the metastore commit: the new metadata file is
                             written, the metastore not switched to it (its lock held)
  iceberg.<table>.committed  the commit landed, the job has not taken note
  compaction.<table>.written/metadata/committed   the same steps of a compaction's
                             commit (its new file swapped in for the small ones)
  expiry.<table>.start       snapshot expiry and orphan removal about to run (Trino)
  expiry.<table>.expired     snapshots expired, orphans not yet removed
  migration.written          a Hive table's rows rewritten for Iceberg, not committed
  migration.committed        the migrated table committed, the old files not yet deleted
<table> is readings, sensors, rejected, readings_1m_revisions or
sensor_quality_1m_revisions.
"""

from __future__ import annotations

import logging
import os
import sys

CRASH_ENV = "IOT_CRASH_AT"
CRASH_EXIT_CODE = 70

STEPS = (
    "bridge.produced",
    "bridge.confirmed",
    "bridge.dead_lettered",
    "minute.emitted",
    "quality.emitted",
    *(
        f"{step}".replace("<t>", table)
        for table in (
            "readings",
            "sensors",
            "rejected",
            "readings_1m_revisions",
            "sensor_quality_1m_revisions",
        )
        for step in (
            "iceberg.<t>.written",
            "iceberg.<t>.metadata",
            "iceberg.<t>.committed",
            "compaction.<t>.written",
            "compaction.<t>.metadata",
            "compaction.<t>.committed",
            "expiry.<t>.start",
            "expiry.<t>.expired",
        )
    ),
    "migration.written",
    "migration.committed",
)


def _target(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    step, _, nth = value.partition("@")
    if step not in STEPS:
        raise ValueError(f"{CRASH_ENV}={value!r}: unknown step; known steps: {', '.join(STEPS)}")
    if nth and not (nth.isdigit() and int(nth) >= 1):
        raise ValueError(f"{CRASH_ENV}={value!r}: after '@' comes the pass to crash at, 1 or more")
    return step, int(nth) if nth else 1


_TARGET = _target(os.environ.get(CRASH_ENV))
_seen = 0


def crash_point(step: str) -> None:
    """Die here, at once, if IOT_CRASH_AT names this step (and this is its n-th pass)."""
    global _seen
    if _TARGET is None or _TARGET[0] != step:
        return
    _seen += 1
    if _seen >= _TARGET[1]:
        logging.getLogger(__name__).critical("%s=%s: exiting now", CRASH_ENV, step)
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)
