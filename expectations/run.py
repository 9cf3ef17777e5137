"""One quality run: read the window through Trino, validate every suite with GX,
rebuild the Data Docs, write the run's summary.

Where things land (QUALITY_DOCS_DIR, default data/quality/data_docs, and its parent):

  <docs>/index.html        GX's Data Docs: every kept validation result, newest
                           first, and each suite's expectations (served by the web
                           portal under /quality/docs/)
  <docs>/../latest.json    this run's summary (`summary()`): run time, window, per
                           suite success and its failed expectations with what was
                           observed, and the Data Docs page of its result
  <docs>/../gx/            GX's file-mode project: suites and validation results

Guarantees:
* Every run validates every suite; a table that cannot be read (missing, renamed
  column) is that suite's `error` and counts as a failure, the other suites still run.
* When Trino cannot be reached the run raises TrinoUnavailable, after writing a
  latest.json that says so (so nobody reads the previous run as current).
* latest.json is replaced atomically (written beside, then renamed).
* The Data Docs index links this run's result of every validated suite; only the
  newest KEEP_RESULTS results of each suite are kept (older ones, and their pages,
  are deleted), so neither the folder nor the index grows without bound.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from trino.exceptions import TrinoUserError

from expectations.settings import QualitySettings
from expectations.source import TrinoSource, TrinoUnavailable, Window
from expectations.suites import (
    READINGS,
    REJECTED,
    SUITES,
    Sensor,
    build_suites,
    derive,
)

log = logging.getLogger(__name__)

DATASOURCE = "trino_window"  # GX's pandas data source: one DataFrame asset per suite
BATCH = "window"
SITE = "local_site"
RUN_NAME = "quality"
KEEP_RESULTS = 96  # per suite: 8 hours of runs every 5 minutes
# The rows a failed expectation names in the summary and the Data Docs, per suite.
ID_COLUMNS = {
    READINGS: ["sensor_id", "ts"],
    REJECTED: ["kafka_topic", "kafka_partition", "kafka_offset"],
}
DEFAULT_ID_COLUMNS = ["sensor_id", "window_start"]
# What a failed expectation's result says, as far as the summary repeats it.
OBSERVED_KEYS = (
    "observed_value",
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "partial_unexpected_list",
    "partial_unexpected_index_list",
    "missing_count",
    "partial_missing_list",
)
LISTED = 10  # items of each partial list in the summary


def utc_now() -> datetime:
    """Naive UTC, as the tables store time."""
    return datetime.now(UTC).replace(tzinfo=None)


# -- GX ---------------------------------------------------------------------------------


def open_context(home: Path, docs_dir: Path) -> Any:
    """GX's file-mode project under `home`/gx, its Data Docs site at `docs_dir`."""
    context = gx.get_context(mode="file", project_root_dir=str(home))
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(docs_dir),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    if context.variables.data_docs_sites != {SITE: site}:
        # Only this site: GX's default one would be built too, under gx/uncommitted.
        context.variables.data_docs_sites = {SITE: site}
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    return context


def _batch_definition(context: Any, suite_name: str) -> Any:
    try:
        source = context.data_sources.get(DATASOURCE)
    except KeyError:
        source = context.data_sources.add_pandas(DATASOURCE)
    try:
        asset = source.get_asset(suite_name)
    except LookupError:
        asset = source.add_dataframe_asset(suite_name)
    try:
        return asset.get_batch_definition(BATCH)
    except KeyError:
        return asset.add_batch_definition_whole_dataframe(BATCH)


def validate(
    context: Any, suite: gx.ExpectationSuite, df: pd.DataFrame, run_id: RunIdentifier
) -> ExpectationSuiteValidationResult:
    """Validate `df` (the suite's batch) against `suite`; the result is stored in
    the project's validation results store."""
    suite = context.suites.add_or_update(suite)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(
            name=suite.name, data=_batch_definition(context, suite.name), suite=suite
        )
    )
    ids = [c for c in ID_COLUMNS.get(suite.name, DEFAULT_ID_COLUMNS) if c in df.columns]
    result_format: dict[str, Any] = {"result_format": "SUMMARY"}
    if ids:
        result_format["unexpected_index_column_names"] = ids
    return definition.run(  # type: ignore[no-any-return]
        batch_parameters={"dataframe": df}, result_format=result_format, run_id=run_id
    )


def result_key(result: ExpectationSuiteValidationResult) -> ValidationResultIdentifier:
    return ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
        run_id=result.meta["run_id"],
        batch_identifier=result.batch_id,  # as ValidationDefinition.run stores it
    )


def build_docs(context: Any, keys: list[ValidationResultIdentifier]) -> None:
    """Render this run's results and the suites, then the index (which lists every
    kept result: the store's keys)."""
    suites = [k.expectation_suite_identifier for k in keys]
    context.build_data_docs(site_names=[SITE], resource_identifiers=[*keys, *suites])


def docs_page(docs_dir: Path, key: ValidationResultIdentifier) -> Path:
    """Where the site renders a validation result: the store key's path plus .html
    (appended: the batch id holds the suite name, dots included)."""
    path = docs_dir.joinpath("validations", *key.to_tuple())
    return path.with_name(path.name + ".html")


def prune(context: Any, docs_dir: Path, keep: int | None = None) -> int:
    """Delete all but the newest `keep` (KEEP_RESULTS) results of each suite, and
    every result page of the site that is not one of those kept (so a page left
    behind by an interrupted run goes too); returns how many results were deleted."""
    keep = KEEP_RESULTS if keep is None else keep
    store = context.validation_results_store
    by_suite: dict[str, list[ValidationResultIdentifier]] = {}
    for key in store.list_keys():
        by_suite.setdefault(key.expectation_suite_identifier.name, []).append(key)
    kept: set[Path] = set()
    removed = 0
    for keys in by_suite.values():
        keys.sort(key=lambda k: k.run_id.run_time)
        cut = max(0, len(keys) - keep)
        for key in keys[:cut]:
            store.remove_key(key)
            removed += 1
        kept |= {docs_page(docs_dir, k) for k in keys[cut:]}
    pages = docs_dir / "validations"
    for page in pages.rglob("*.html"):
        if page not in kept:
            page.unlink()
    _remove_empty_folders(pages)
    _remove_empty_folders(Path(store.store_backend.full_base_directory))
    return removed


def _remove_empty_folders(top: Path) -> None:
    """Every empty folder under `top` (deepest first), not `top` itself."""
    for folder in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


# -- the summary --------------------------------------------------------------------------


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds") + "Z"


def _short(value: Any) -> Any:
    if isinstance(value, list):
        return value[:LISTED]
    return value


def failed_expectations(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The failed expectations of a validation result (its JSON dict), each with its
    check name, kind, arguments and what was observed."""
    out = []
    for r in result["results"]:
        if r["success"]:
            continue
        config = r["expectation_config"]
        kwargs = {
            k: v for k, v in config["kwargs"].items() if k not in ("batch_id", "result_format")
        }
        observed = {k: _short(r["result"][k]) for k in OBSERVED_KEYS if k in r["result"]}
        if "partial_unexpected_index_list" in observed:
            # The same rows with their ids: the bare values add nothing.
            observed.pop("partial_unexpected_list", None)
        exc = r.get("exception_info") or {}
        if exc.get("raised_exception"):
            observed["exception"] = str(exc.get("exception_message"))[:300]
        out.append(
            {
                "check": (config.get("meta") or {}).get("check"),
                "expectation": config["type"],
                "kwargs": kwargs,
                "observed": observed,
            }
        )
    return out


def suite_summary(result: Mapping[str, Any], rows: int, docs: str | None) -> dict[str, Any]:
    """One suite's entry of latest.json, from its validation result (JSON dict)."""
    failed = failed_expectations(result)
    return {
        "success": bool(result["success"]),
        "rows": rows,
        "evaluated": result["statistics"]["evaluated_expectations"],
        "failed_count": len(failed),
        "failed": failed,
        "docs": docs,
        "error": None,
    }


def error_summary(error: str) -> dict[str, Any]:
    """A suite that could not be validated (its table could not be read)."""
    return {
        "success": False,
        "rows": None,
        "evaluated": 0,
        "failed_count": 0,
        "failed": [],
        "docs": None,
        "error": error,
    }


def summary(
    window: Window,
    s: QualitySettings,
    suites: Mapping[str, dict[str, Any]],
    queries: int,
    duration_s: float,
    error: str | None = None,
) -> dict[str, Any]:
    """latest.json: the run as a whole. `success` is true when every suite passed."""
    return {
        "run_time": _iso(window.end),
        "window": {
            "start": _iso(window.start),
            "end": _iso(window.end),
            "minutes": window.minutes,
        },
        "source": {
            "trino": f"{s.trino_host}:{s.trino_port}",
            "catalog": s.trino_catalog,
            "raw_schema": s.raw_schema,
            "curated_schema": s.curated_schema,
            "queries": queries,
        },
        "duration_s": round(duration_s, 3),
        "success": error is None and all(v["success"] for v in suites.values()),
        "error": error,
        "docs_index": "index.html",
        "suites": dict(suites),
    }


def write_summary(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


# -- the index's plain links to the latest results -------------------------------------

LATEST_BEGIN = "<!-- iot-quality:latest -->"
LATEST_END = "<!-- /iot-quality:latest -->"


def latest_html(data: Mapping[str, Any]) -> str:
    """This run's results as plain HTML: GX's index lists results in tables that its
    scripts from public CDNs draw, so without them (offline) it lists nothing."""
    e = html.escape
    items = []
    for name, v in data["suites"].items():
        if v["error"]:
            text = f"{e(name)}: <b>not validated</b>: {e(v['error'])}"
        else:
            status = "passed" if v["success"] else "<b>FAILED</b>"
            label = f'<a href="{e(v["docs"])}">{e(name)}</a>' if v["docs"] else e(name)
            text = f"{label}: {status}, {v['rows']} rows, {v['evaluated']} expectations"
            if v["failed"]:
                checks = ", ".join(e(str(f["check"])) for f in v["failed"])
                text += f", failed: {checks}"
        items.append(f"<li>{text}</li>")
    overall = "all suites passed" if data["success"] else "FAILED"
    return (
        f'{LATEST_BEGIN}<div id="iot-quality-latest" style="margin:1em">'
        f"<h2>Latest run: {e(data['run_time'])}: {overall}</h2>"
        f"<p>Window: {e(data['window']['start'])} to {e(data['window']['end'])}; "
        f'summary: <a href="../latest.json">latest.json</a></p>'
        f"<ul>{''.join(items)}</ul></div>{LATEST_END}"
    )


def link_latest(index: Path, data: Mapping[str, Any]) -> None:
    """Put `latest_html` at the top of the Data Docs' index (replacing an earlier one)."""
    block = latest_html(data)
    text = index.read_text() if index.exists() else "<html><body></body></html>"
    if LATEST_BEGIN in text:
        before, rest = text.split(LATEST_BEGIN, 1)
        text = before + block + rest.split(LATEST_END, 1)[1]
    else:
        at = text.find(">", text.find("<body")) + 1
        text = text[:at] + block + text[at:]
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_name(f".{index.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(index)


# -- the Data Docs without the internet ----------------------------------------------------

# GX's pages load Bootstrap, Font Awesome, jQuery and Vega from public CDNs. Our pages
# use no asset from the internet: those tags are dropped and this stylesheet stands
# in, enough to read a result: tables ruled, passed and failed marked in words.
OFFLINE_STYLE = r"""<style id="iot-offline">
body { font-family: system-ui, sans-serif; margin: 1em 2em; color: #222; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ccc; padding: .25em .5em; vertical-align: top; text-align: left; }
.fa-check-circle::before { content: "\2714 passed"; color: #1a7f37; font-style: normal; }
.fa-times::before, .fa-times-circle::before {
  content: "\2718 FAILED"; color: #c62828; font-weight: bold; font-style: normal; }
.text-danger { color: #c62828; }
</style>"""
_REMOTE = re.compile(
    r"<link\b[^>]*\bhref=[\"']https?://[^>]*>"
    r"|<script\b[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>"
    r"|<img\b[^>]*\bsrc=[\"']https?://[^>]*>",
    re.IGNORECASE,
)


def offline(page: str) -> str:
    """A Data Docs page without tags that load from the internet, with OFFLINE_STYLE."""
    page = _REMOTE.sub("", page)
    if 'id="iot-offline"' in page:
        return page
    at = page.find("</head>")
    return page[:at] + OFFLINE_STYLE + page[at:] if at >= 0 else OFFLINE_STYLE + page


def make_offline(docs_dir: Path) -> None:
    """Every page of the Data Docs through `offline` (only those that change)."""
    for path in docs_dir.rglob("*.html"):
        text = path.read_text()
        new = offline(text)
        if new != text:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(new)
            tmp.replace(path)


# -- the run ------------------------------------------------------------------------------


def _error_text(exc: TrinoUserError) -> str:
    message = str(exc.message or exc).splitlines()[0][:300]
    return f"{exc.error_name}: {message}"


def run_once(s: QualitySettings, now: datetime | None = None) -> dict[str, Any]:
    """One run; returns the summary it wrote. Raises TrinoUnavailable (having written
    a summary that says so) when Trino cannot be used."""
    clock = time.monotonic()
    started = clock
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now_ = time.monotonic()
        timings[name] = round(now_ - clock, 3)
        clock = now_

    window = Window.ending(now or utc_now(), s.quality_window_minutes)
    source = TrinoSource(s)
    try:
        sensors: list[Sensor] | None = None
        sensors_error = None
        try:
            sensors = source.sensors()
        except TrinoUserError as exc:
            sensors_error = f"the sensor list: {_error_text(exc)}"
        frames = source.windows(window)
    except TrinoUnavailable as exc:
        write_summary(
            s.summary_path,
            summary(window, s, {}, source.queries, time.monotonic() - started, error=str(exc)),
        )
        raise
    lap("read_s")

    readings = frames[READINGS]
    readings_count = len(readings) if isinstance(readings, pd.DataFrame) else 0
    suites = build_suites(sensors or [], window.end, readings_count)
    context = open_context(s.home, s.docs_dir)
    run_id = RunIdentifier(run_name=RUN_NAME, run_time=window.end.replace(tzinfo=UTC))
    out: dict[str, dict[str, Any]] = {}
    results: dict[str, tuple[ExpectationSuiteValidationResult, int]] = {}
    for name in SUITES:
        frame = frames[name]
        if isinstance(frame, TrinoUserError):
            out[name] = error_summary(_error_text(frame))
        elif name == READINGS and sensors_error:
            out[name] = error_summary(sensors_error)
        else:
            batch = derive(name, frame)
            results[name] = (validate(context, suites[name], batch, run_id), len(frame))
    lap("validate_s")

    keys = {name: result_key(r) for name, (r, _) in results.items()}
    if keys:
        build_docs(context, list(keys.values()))
    prune(context, s.docs_dir)
    for name, (result, rows) in results.items():
        page = docs_page(s.docs_dir, keys[name])
        docs = page.relative_to(s.docs_dir).as_posix() if page.exists() else None
        out[name] = suite_summary(result.to_json_dict(), rows, docs)
    data = summary(
        window,
        s,
        {name: out[name] for name in SUITES},
        source.queries,
        time.monotonic() - started,
    )
    link_latest(s.docs_dir / "index.html", data)
    make_offline(s.docs_dir)
    lap("docs_s")
    data["timings"] = timings
    write_summary(s.summary_path, data)
    log.info(
        "read %s rows with %d queries in %.1f s, validated in %.1f s, docs in %.1f s",
        sum(v["rows"] or 0 for v in out.values()),
        source.queries,
        timings["read_s"],
        timings["validate_s"],
        timings["docs_s"],
    )
    return data
