"""`make bench`: throughput, freshness, latency and size of the pipeline on this machine,
printed. The tables are Apache Iceberg tables in the Hive Metastore (stream_jobs.iceberg).

Each stage (below; one module each, tests/bench/stage_<name>.py, listed in the table
STAGES of tests/bench/__main__.py) runs against the real services started on free
ports: Mosquitto and Kafka, and PostgreSQL, the Hive Metastore and Trino, which every
stage needs (the tables live there). Rates are given overall (first publish to last
row committed, including the last commit's rotation wait) and steady (between the
counter's first and second-to-last change). `--smoke` runs every stage with tiny
sizes (a minute or two); `--only STAGE` (repeatable) runs some of them, in the
table's order.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench import (
    stage_archiver,
    stage_bridge,
    stage_compaction,
    stage_conflicts,
    stage_curves,
    stage_day,
    stage_e2e,
    stage_freshness,
    stage_gx,
    stage_history,
    stage_minutes,
    stage_quality,
    stage_queries,
    stage_superset,
)
from tests.bench.common import (
    BROKERS,
    KCAT,
    MOSQUITTO_PUB,
    SQL,
    BenchEnv,
    Record,
    machine,
    services,
    show,
)

# Commands a stage may need (besides services), and where they come from.
COMMANDS = {MOSQUITTO_PUB: "Debian package mosquitto-clients", KCAT: "Debian package kcat"}


@dataclass(frozen=True)
class Option:
    """A size of a stage: `--flag` (its type that of its default), and its --smoke value."""

    flag: str
    default: int | float
    help: str
    smoke: int | float | None = None

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


@dataclass(frozen=True)
class Stage:
    """One stage: `--only` name, what it measures, its function, what it needs (services
    to start: BROKERS, SQL; commands: MOSQUITTO_PUB, KCAT), and its sizes."""

    name: str
    help: str
    run: Callable[[BenchEnv, argparse.Namespace, Record], None]
    needs: frozenset[str]
    options: tuple[Option, ...] = ()


STAGES = [
    Stage(
        "archiver",
        "a pre-filled Kafka topic -> the Iceberg table raw.readings (in-process "
        "TopicArchiver): rows committed (the offsets in the table's properties), commit "
        "latency, bytes a reading on disk",
        stage_archiver.run,
        frozenset({BROKERS, SQL}),
        (Option("--archiver", 2_000_000, "readings", smoke=20_000),),
    ),
    Stage(
        "minutes",
        "the 1-minute job alone (pre-filled topic -> curated.readings_1m_revisions, the "
        "same figures), and the end of a minute -> its row in curated.readings_1m through "
        "the whole pipeline",
        stage_minutes.run,
        frozenset({BROKERS, SQL}),
        (
            Option("--minutes", 1_000_000, "readings (1m job)", smoke=20_000),
            Option("--minute-latency", 3, "minutes watched", smoke=1),
        ),
    ),
    Stage(
        "quality",
        "the quality job alone: pre-filled 1-minute emissions and dead letters -> "
        "curated.sensor_quality_1m_revisions (in-process QualityJob)",
        stage_quality.run,
        frozenset({BROKERS, SQL}),
        (Option("--quality", 200_000, "1-minute emissions", smoke=5_000),),
    ),
    Stage(
        "gx",
        "one Great Expectations run (python -m expectations) over a day of 5 and of 100 "
        "sensors backfilled into raw.readings: wall time, its parts, Trino queries",
        stage_gx.run,
        frozenset({BROKERS, SQL}),
        (Option("--gx-interval", 1, "seconds between a sensor's readings", smoke=300),),
    ),
    Stage(
        "bridge",
        "MQTT publish (mosquitto_pub, C, QoS 1) -> Kafka: the C pipe mosquitto_sub | kcat "
        "and the bridge side by side in rounds, and their ratio",
        stage_bridge.run,
        frozenset({BROKERS, MOSQUITTO_PUB, KCAT}),
        (
            Option("--bridge", 200_000, "readings a side and round", smoke=2_000),
            Option("--bridge-rounds", 3, "rounds (pipe, then bridge)", smoke=1),
        ),
    ),
    Stage(
        "e2e",
        "MQTT publish -> bridge -> Kafka -> stream_jobs -> Iceberg, verified exact",
        stage_e2e.run,
        frozenset({BROKERS, SQL, MOSQUITTO_PUB}),
        (Option("--e2e", 200_000, "readings", smoke=2_000),),
    ),
    Stage(
        "freshness",
        "MQTT publish -> visible in Trino: iceberg raw.readings, and the live view",
        stage_freshness.run,
        frozenset({BROKERS, SQL}),
        (Option("--freshness", 40, "readings", smoke=4),),
    ),
    Stage(
        "queries",
        "one sensor-day and a month of daily means over a backfilled history",
        stage_queries.run,
        frozenset({BROKERS, SQL}),
        (Option("--days", 30, "days of backfilled history", smoke=2),),
    ),
    Stage(
        "curves",
        "CPU and memory of each service's state from 5 to 100,000 sensors (bridge, "
        "1-minute job, quality job, sensor registry), each size in a process of its own; "
        "draws curves-cpu.png and curves-memory.png",
        stage_curves.run,
        frozenset({BROKERS}),
        (
            Option("--curves-readings", 500_000, "readings at every size", smoke=20_000),
            Option("--curves-max-sensors", 100_000, "largest number of sensors", smoke=1_000),
            Option("--curves-minutes", 2, "live minutes of the quality job", smoke=1),
        ),
    ),
    Stage(
        "history",
        "query latency through Trino as a backfilled history of 100 sensors grows from "
        "1 to 365 days; draws curves-queries.png",
        stage_history.run,
        frozenset({BROKERS, SQL}),
        (
            Option("--history-days", 365, "longest history (steps 1, 7, 30, 90, 365)", smoke=7),
            Option("--history-interval", 60, "seconds between a sensor's readings", smoke=600),
            Option("--history-sensors", 100, "sensors"),
            Option("--history-runs", 5, "runs of each query (median)", smoke=2),
        ),
    ),
    Stage(
        "superset",
        "Apache Superset: install, start and memory, and each dashboard's load time in "
        "chromium over a month of 100 sensors (backfilled)",
        stage_superset.run,
        frozenset({BROKERS, SQL}),
        (Option("--superset-days", 30, "days of backfilled history", smoke=1),),
    ),
    Stage(
        "day",
        "a day of commits (8,640 at ROTATE_SECONDS=10) at up to 60x speed, with a "
        "maintenance pass (compaction, expiry through Trino) every 30 commits: metadata "
        "size and commit latency, start vs end; and what the compaction policy rewrites "
        "over a day (planned, no I/O)",
        stage_day.run,
        frozenset({SQL}),
        (
            Option("--day-commits", 8_640, "commits (a day: 8,640)", smoke=90),
            Option("--day-sensors", 10, "sensors a commit holds"),
            Option("--day-speed", 60.0, "times real time"),
        ),
    ),
    Stage(
        "compaction",
        "a day of 100 million readings in 500 small files, one compaction pass: wall "
        "time, peak RSS, bytes a reading before and after",
        stage_compaction.run,
        frozenset({SQL}),
        (
            Option("--compact-files", 500, "small files of the day", smoke=4),
            Option("--compact-rows", 200_000, "readings a file", smoke=20_000),
        ),
    ),
    Stage(
        "conflicts",
        "compactions of a past day while the writer's next commit to today lands at a "
        "random moment of the following ROTATE_SECONDS: how many land (files of "
        "--compact-rows readings)",
        stage_conflicts.run,
        frozenset({SQL}),
        (
            Option("--conflict-attempts", 6, "compactions beside a writer", smoke=2),
            Option("--conflict-files", 10, "files a compaction", smoke=4),
        ),
    ),
]


def parser() -> argparse.ArgumentParser:
    """The command line, from STAGES: a group of options per stage, and --only."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--smoke", action="store_true", help="every stage with tiny sizes")
    p.add_argument(
        "--only",
        choices=[s.name for s in STAGES],
        action="append",
        help="run only these stages (repeatable)",
    )
    for stage in STAGES:
        needs = ", ".join(sorted(stage.needs))
        group = p.add_argument_group(
            f"stage {stage.name}", textwrap.fill(f"{stage.help} (needs: {needs})", width=84)
        )
        for option in stage.options:
            group.add_argument(
                option.flag, type=type(option.default), default=option.default, help=option.help
            )
    return p


def without_missing_commands(stages: list[Stage]) -> list[Stage]:
    """The stages whose commands are installed; says which are skipped, and why."""
    kept = stages
    for command, source in COMMANDS.items():
        if shutil.which(command) is not None:
            continue
        skipped = [s.name for s in kept if command in s.needs]
        if skipped:
            plural = "s" if len(skipped) > 1 else ""
            print(
                f"{command} not found ({source}): "
                f"skipping the {' and '.join(skipped)} stage{plural}",
                flush=True,
            )
            kept = [s for s in kept if command not in s.needs]
    return kept


def main() -> None:
    args = parser().parse_args()
    if args.smoke:
        for stage in STAGES:
            for option in stage.options:
                if option.smoke is not None:
                    setattr(args, option.dest, option.smoke)
    chosen = set(args.only or [s.name for s in STAGES])
    stages = without_missing_commands([s for s in STAGES if s.name in chosen])
    print(f"machine: {machine()}", flush=True)
    results: dict[str, dict[str, Any]] = {}

    def record(name: str, r: dict[str, Any]) -> None:
        results[name] = r
        show(name, r)

    needs = set().union(*(s.needs for s in stages))
    with tempfile.TemporaryDirectory(prefix="iot-bench-") as tmp, services(Path(tmp), needs) as env:
        for stage in stages:
            stage.run(env, args, record)
    print()
    print(f"machine: {machine()}")
    for name, r in results.items():
        show(name, r)


if __name__ == "__main__":
    main()
