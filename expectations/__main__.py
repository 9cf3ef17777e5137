"""`python -m expectations`: validate the recent window once, or on a schedule.

  python -m expectations                 run once
  python -m expectations --every 300     run, sleep until 300 s after the run's start,
                                         repeat, until SIGTERM or SIGINT (a failing run
                                         is logged and the loop goes on)
  python -m expectations --strict        once; exit 2 when an expectation failed

Exit codes of a single run: 0 it ran (failed expectations included; the summary
says which), 1 it could not run (Trino unreachable, or an unforeseen error), 2 with
--strict when an expectation failed or a table could not be read. The loop exits 0
when stopped.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

RETRY_UNAVAILABLE_S = 30.0  # Trino unreachable: the next try comes this soon
log = logging.getLogger("expectations")


def describe(summary: dict[str, Any], docs_index: str, summary_path: str) -> str:
    """The run in a few lines, for a terminal or a log."""
    suites = summary["suites"]
    failed = [name for name, v in suites.items() if not v["success"]]
    head = "ok" if summary["success"] else f"FAILED ({len(failed)} of {len(suites)} suites)"
    lines = [
        f"quality run {summary['run_time']} (window {summary['window']['minutes']:g} min, "
        f"{summary['source']['queries']} queries, {summary['duration_s']:.1f} s): {head}"
    ]
    if summary.get("error"):
        lines.append(f"  {summary['error']}")
    for name, v in suites.items():
        if v["error"]:
            lines.append(f"  {name:<27} ERROR   {v['error']}")
            continue
        status = "ok" if v["success"] else "FAILED"
        text = f"  {name:<27} {status:<7} {v['rows']} rows, {v['evaluated']} expectations"
        if v["failed"]:
            text += f", {v['failed_count']} failed: " + ", ".join(
                f"{f['check']}" + _count(f["observed"]) for f in v["failed"]
            )
        lines.append(text)
    lines.append(f"Data Docs: {docs_index}  summary: {summary_path}")
    return "\n".join(lines)


def _count(observed: dict[str, Any]) -> str:
    if "unexpected_count" in observed:
        return f" ({observed['unexpected_count']} unexpected)"
    if "missing_count" in observed:
        return f" ({observed['missing_count']} missing)"
    if observed.get("observed_value") is not None:
        return f" (observed {observed['observed_value']})"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m expectations", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--every", type=float, metavar="SECONDS", help="run on this schedule")
    parser.add_argument("--strict", action="store_true", help="exit 2 when an expectation failed")
    args = parser.parse_args(argv)

    # Imported after parsing: GX takes seconds to import (--help should not).
    from expectations.run import run_once
    from expectations.settings import QualitySettings
    from expectations.source import TrinoUnavailable

    # SECRETS_DIR: a file per setting (trino_password, ...), as compose hands them over.
    s = QualitySettings(_secrets_dir=os.environ.get("SECRETS_DIR") or None)
    logging.basicConfig(
        level=s.logging_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # GX logs every config save at INFO: its warnings are what matters here.
    logging.getLogger("great_expectations").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    every = args.every if args.every is not None else s.quality_every_seconds
    docs_index = str(s.docs_dir / "index.html")

    def once() -> int:
        try:
            summary = run_once(s)
        except TrinoUnavailable as exc:
            log.error("quality run not possible: %s", exc)
            return 1
        print(describe(summary, docs_index, str(s.summary_path)), flush=True)
        return 0 if summary["success"] or not args.strict else 2

    if every <= 0:
        try:
            return once()
        except Exception:  # reported as "could not run", not a traceback exit
            log.exception("quality run failed")
            return 1

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("validating every %g s", every)
    while not stop.is_set():
        started = time.monotonic()
        try:
            # Trino not up yet (the stack is starting): try again soon, not a
            # whole period later, so the first Data Docs come within a minute.
            period = every if once() != 1 else min(every, RETRY_UNAVAILABLE_S)
        except Exception:  # one failing run must not end the schedule
            log.exception("quality run failed; next in %g s", every)
            period = every
        stop.wait(max(0.0, period - (time.monotonic() - started)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
