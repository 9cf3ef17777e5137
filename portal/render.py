"""The portal's pages as HTML: pure functions of their data (no I/O, no clock).

Guarantees:
* every text that comes from data (sensor ids, dataset names, descriptions,
  error messages) goes through `esc` (html.escape, quotes too) and every id put
  in a URL through `quote(..., safe="")` first: a hostile sensor id or dataset
  name is shown as text, never as markup, and cannot break out of its link;
* nothing is loaded from elsewhere: CSS and JS are inline (the app also sends a
  Content-Security-Policy that forbids other origins);
* a quality score is coloured by `score_bucket` (thresholds SCORE_BUCKETS; 0.9 is
  where a sensor counts as degraded), grey when there is no row.
Times are naive UTC and shown as such.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from portal.catalogue import CatalogueState, Contract, Dataset, example_message, search_text
from portal.offsets import PartitionOffsets
from portal.warehouse import Facts, HourScore, Minute, QualitySummary, Sensor, SensorStatus

# (lower bound, label, background, text colour): the first whose bound the score reaches.
SCORE_BUCKETS: tuple[tuple[float, str, str, str], ...] = (
    (0.99, "≥ 0.99", "#1a7f37", "#ffffff"),
    (0.9, "0.90\u20130.99", "#7bc86c", "#0b2910"),
    (0.75, "0.75\u20130.90", "#f2d25c", "#3b2f00"),
    (0.5, "0.50\u20130.75", "#f0883e", "#3b1800"),
    (0.0, "< 0.50", "#cf222e", "#ffffff"),
)
NO_DATA = ("no rows", "#d0d7de", "#57606a")
STATUS_COLOURS = {
    "ok": ("#1a7f37", "#ffffff"),
    "degraded": ("#f0883e", "#3b1800"),
    "silent": ("#cf222e", "#ffffff"),
}
UNKNOWN_STATUS = ("#8c959f", "#ffffff")
HOUR_PARAM = "%Y-%m-%dT%H"
DASH = "\u2013"  # what stands for no value  # ?hour=2026-11-30T13


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def score_bucket(score: float | None) -> tuple[str, str, str]:
    """(label, background, text colour) of a score; NO_DATA for None."""
    if score is None:
        return NO_DATA
    for bound, label, background, text in SCORE_BUCKETS:
        if score >= bound:
            return label, background, text
    return SCORE_BUCKETS[-1][1:]


def sensor_url(sensor_id: str, hour: datetime | None = None) -> str:
    url = "/sensors/" + quote(sensor_id, safe="")
    return url + (f"?hour={hour.strftime(HOUR_PARAM)}" if hour is not None else "")


def dataset_url(name: str, suffix: str = "") -> str:
    return "/catalogue/" + quote(name + suffix, safe="")


def fmt_time(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S") + " UTC" if ts is not None else "\u2013"


def ago(now: datetime, ts: datetime | None) -> str:
    """How long before `now`: '42 s ago', '5 min ago', '3 h ago', '2 days ago'."""
    if ts is None:
        return "never"
    seconds = (now - ts).total_seconds()
    if seconds < 0:
        return f"in {int(-seconds)} s"
    if seconds < 120:
        return f"{int(seconds)} s ago"
    if seconds < 7200:
        return f"{int(seconds // 60)} min ago"
    if seconds < 172800:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} days ago"


def fmt_score(score: float | None) -> str:
    return f"{score:.2f}" if score is not None else "\u2013"


def fmt_int(n: int | None) -> str:
    return f"{n:,}" if n is not None else "\u2013"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "\u2013"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{n} B"


# -- layout -------------------------------------------------------------------------

CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
 color:#1f2328;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}
header a{color:#fff;text-decoration:none;opacity:.85}
header a:hover,header a.on{opacity:1;text-decoration:underline}
header .brand{font-weight:600;opacity:1;margin-right:12px}
main{padding:16px 24px;max-width:1400px}
h1{font-size:22px;margin:8px 0 12px}h2{font-size:17px;margin:22px 0 8px}
a{color:#0969da}
table{border-collapse:collapse;background:#fff}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eaeef2;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;margin:8px 0;
 border-radius:6px}
.error{background:#ffebe9;border:1px solid #cf222e;padding:6px 10px;margin:8px 0;
 border-radius:6px}
.muted{color:#57606a}
.docs{display:inline-block;background:#0969da;color:#fff;padding:8px 14px;border-radius:6px;
 font-weight:600;text-decoration:none;margin:4px 16px 8px 0}
.docs:hover{background:#0550ae}
table.heat{border-collapse:separate;border-spacing:2px;background:transparent}
table.heat td,table.heat th{border:0;padding:0}
table.heat th{background:transparent;font-weight:normal;font-size:11px;color:#57606a;
 text-align:center;min-width:34px}
table.heat th.sensor{text-align:right;padding-right:8px;font-size:13px;color:#1f2328;
 white-space:nowrap}
table.heat td a{display:block;width:34px;height:24px;line-height:24px;text-align:center;
 font-size:11px;text-decoration:none;border-radius:3px}
table.heat td a:hover{outline:2px solid #24292f}
.legend span{display:inline-block;padding:1px 8px;margin-right:4px;border-radius:3px;
 font-size:12px}
dl.about{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;background:#fff;
 border:1px solid #d0d7de;padding:10px 14px;border-radius:6px;max-width:1100px}
dl.about dt{font-weight:600}dl.about dd{margin:0}
pre{background:#fff;border:1px solid #d0d7de;padding:10px;border-radius:6px;overflow:auto;
 max-width:1100px}
input[type=search]{font-size:15px;padding:6px 10px;width:420px;max-width:100%}
button{font-size:14px;padding:6px 12px}
[hidden]{display:none!important}
footer{padding:16px 24px;color:#57606a;font-size:12px}
"""

NAV = (("/", "Sensors & quality"), ("/catalogue", "Catalogue"), ("/quality/docs/", "Data Docs"))


def page(title: str, body: str, *, active: str = "", now: datetime | None = None) -> str:
    links = "".join(
        f'<a href="{href}"{" class=on" if href == active else ""}>{esc(label)}</a>'
        for href, label in NAV
    )
    stamp = f"page built {fmt_time(now)}; " if now is not None else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · IoT data platform</title><style>{CSS}</style></head>"
        f'<body><header><a class="brand" href="/">IoT data platform</a>{links}</header>'
        f"<main>{body}</main>"
        f'<footer>{stamp}times in UTC · <a href="/health">health</a></footer></body></html>'
    )


def notes_html(notes: Iterable[str], css: str = "note") -> str:
    return "".join(f'<div class="{css}">{esc(n)}</div>' for n in notes)


def badge(text: str, background: str, colour: str, *, attrs: str = "") -> str:
    return (
        f'<span class="badge" style="background:{background};color:{colour}"{attrs}>'
        f"{esc(text)}</span>"
    )


def status_badge(status: str) -> str:
    background, colour = STATUS_COLOURS.get(status, UNKNOWN_STATUS)
    return badge(status, background, colour, attrs=f' data-status="{esc(status)}"')


def score_badge(score: float | None) -> str:
    _, background, colour = score_bucket(score)
    return badge(fmt_score(score), background, colour)


# -- the operator's page ----------------------------------------------------------------


@dataclass(frozen=True)
class SensorRow:
    """A sensor of the list, its status (status 'unknown': none yet) and metadata."""

    sensor_id: str
    status: str
    last_reading_at: datetime | None = None
    recent_score: float | None = None
    description: str = ""
    type: str = ""
    unit: str = ""


def sensor_rows(sensors: Sequence[Sensor], statuses: Sequence[SensorStatus]) -> list[SensorRow]:
    """Every sensor that is in the list or has a status, sorted by id (naturally:
    'Sensor 2' before 'Sensor 10')."""
    meta = {s.sensor_id: s for s in sensors}
    status = {s.sensor_id: s for s in statuses}
    rows = []
    for sid in set(meta) | set(status):
        m, s = meta.get(sid), status.get(sid)
        rows.append(
            SensorRow(
                sensor_id=sid,
                status=s.status if s else "unknown",
                last_reading_at=s.last_reading_at if s else None,
                recent_score=s.recent_score if s else None,
                description=m.description if m else "",
                type=m.type if m else "",
                unit=m.unit if m else "",
            )
        )
    return sorted(rows, key=lambda r: natural_key(r.sensor_id))


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    out: list[tuple[int, int | str]] = []
    digits = ""
    chars = ""
    for ch in text:
        if ch.isdigit() and ch.isascii():
            if chars:
                out.append((1, chars.lower()))
                chars = ""
            digits += ch
        else:
            if digits:
                out.append((0, int(digits)))
                digits = ""
            chars += ch
    if digits:
        out.append((0, int(digits)))
    if chars:
        out.append((1, chars.lower()))
    return tuple(out)


def heatmap_hours(now: datetime, hours: int = 24) -> list[datetime]:
    """The heatmap's columns: the last `hours` hours, the current one last."""
    current = now.replace(minute=0, second=0, microsecond=0)
    return [current - timedelta(hours=hours - 1 - i) for i in range(hours)]


def heatmap(
    rows: Sequence[SensorRow], hours: Sequence[datetime], scores: Iterable[HourScore]
) -> str:
    """One row per sensor, one column per hour; a cell's colour is the mean score of
    that sensor-hour (grey: no rows) and it links to that hour's minutes."""
    cells = {(s.sensor_id, s.hour): s for s in scores}
    ids = [r.sensor_id for r in rows]
    ids += sorted({sid for sid, _ in cells} - set(ids), key=natural_key)
    head = "".join(
        f'<th title="{esc(h.strftime("%Y-%m-%d %H:00"))} UTC">'
        f"{esc(h.strftime('%d.%m.') if h.hour == 0 or i == 0 else '')}<br>{h:%H}</th>"
        for i, h in enumerate(hours)
    )
    body = []
    for sid in ids:
        tds = []
        for h in hours:
            cell = cells.get((sid, h))
            score = cell.score if cell else None
            label, background, colour = score_bucket(score)
            detail = (
                f"mean score {score:.3f} over {cell.minutes} min"
                if cell and score is not None
                else "no rows"
            )
            title = f"{sid}, {h:%Y-%m-%d %H}:00\u2013{h:%H}:59 UTC: {detail}"
            text = f"{round(score * 100)}" if score is not None else ""
            tds.append(
                f'<td><a class="cell" href="{esc(sensor_url(sid, h))}" '
                f'style="background:{background};color:{colour}" title="{esc(title)}" '
                f'data-sensor="{esc(sid)}" data-hour="{h.strftime(HOUR_PARAM)}" '
                f'data-score="{"" if score is None else f"{score:.4f}"}" '
                f'data-bucket="{esc(label)}">{text}</a></td>'
            )
        body.append(
            f'<tr><th class="sensor" scope="row"><a href="{esc(sensor_url(sid))}">{esc(sid)}'
            f"</a></th>{''.join(tds)}</tr>"
        )
    legend = "".join(
        f'<span style="background:{bg};color:{fg}">{esc(label)}</span>'
        for _, label, bg, fg in SCORE_BUCKETS
    )
    legend += f'<span style="background:{NO_DATA[1]};color:{NO_DATA[2]}">{NO_DATA[0]}</span>'
    return (
        f'<table class="heat" id="heatmap"><thead><tr><th></th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
        '<p class="legend muted">Mean quality score of the sensor-hour (cell text: score '
        f"\u00d7 100): {legend}</p>"
    )


def overview(
    *,
    now: datetime,
    rows: Sequence[SensorRow],
    hours: Sequence[datetime],
    scores: Iterable[HourScore],
    notes: Sequence[str] = (),
    docs_ready: bool = False,
) -> str:
    """The operator's first page: status table, heatmap, link to the Data Docs."""
    docs_text = "Data Docs (Great Expectations)" + ("" if docs_ready else ": no run yet")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = " · ".join(f"{status_badge(k)} {v}" for k, v in sorted(counts.items()))
    table_rows = "".join(
        f'<tr data-sensor="{esc(r.sensor_id)}">'
        f'<td><a href="{esc(sensor_url(r.sensor_id))}">{esc(r.sensor_id)}</a></td>'
        f"<td>{esc(r.description)}</td>"
        f"<td>{esc(r.type)}{' (' + esc(r.unit) + ')' if r.unit else ''}</td>"
        f"<td>{status_badge(r.status)}</td>"
        f"<td>{fmt_time(r.last_reading_at)} <span class=muted>"
        f"({ago(now, r.last_reading_at)})</span></td>"
        f'<td class="num">{score_badge(r.recent_score)}</td></tr>'
        for r in rows
    )
    status_table = (
        '<table id="status"><thead><tr><th>sensor</th><th>place</th><th>type</th>'
        '<th>status</th><th>last reading (end of its minute)</th><th class="num">recent score'
        f"</th></tr></thead><tbody>{table_rows}</tbody></table>"
        if rows
        else '<p class="muted">No sensors known yet.</p>'
    )
    body = (
        '<h1>Sensors and data quality</h1><a class="docs" id="data-docs" href="/quality/docs/">'
        f"{esc(docs_text)} →</a> "
        '<a href="/catalogue">Data catalogue →</a>'
        f"{notes_html(notes)}"
        f"<h2>Status now</h2><p>{summary}</p>{status_table}"
        '<p class="muted">silent: no reading for 2 minutes · degraded: mean score of the newest '
        "5 minutes below 0.9 · ok otherwise (docs/quality.md)</p>"
        "<h2>Quality score, last 24 hours</h2>"
        '<p class="muted">One row per sensor, one column per hour (UTC); click a cell for its '
        "minutes.</p>"
        f"{heatmap(rows, hours, scores)}"
    )
    return page("Sensors", body, active="/", now=now)


MINUTE_FIGURES = (
    "expected",
    "received",
    "valid",
    "out_of_range",
    "duplicates",
    "late",
    "rejected",
)


def sensor_hour(
    *,
    now: datetime,
    sensor_id: str,
    hour: datetime,
    minutes: Sequence[Minute],
    row: SensorRow | None,
    notes: Sequence[str] = (),
) -> str:
    """One sensor-hour: every minute with all its figures (newest revision)."""
    prev_h, next_h = hour - timedelta(hours=1), hour + timedelta(hours=1)
    nav = (
        f'<p><a href="/">← all sensors</a> · <a href="{esc(sensor_url(sensor_id, prev_h))}">'
        f'← {prev_h:%H}:00</a> · <a href="{esc(sensor_url(sensor_id, next_h))}">'
        f"{next_h:%H}:00 →</a></p>"
    )
    about = ""
    if row is not None:
        about = (
            f"<p>{status_badge(row.status)} last reading {fmt_time(row.last_reading_at)} "
            f"({ago(now, row.last_reading_at)}), recent score {score_badge(row.recent_score)}"
            f"{' · ' + esc(row.description) if row.description else ''}</p>"
        )
    head = "".join(f'<th class="num">{esc(f)}</th>' for f in MINUTE_FIGURES)
    trs = []
    for m in minutes:
        figures = "".join(
            f'<td class="num">{esc(_figure(getattr(m, f)))}</td>' for f in MINUTE_FIGURES
        )
        trs.append(
            f'<tr data-minute="{m.window_start:%H:%M}"><td>{m.window_start:%H:%M}</td>{figures}'
            f'<td class="num">{score_badge(m.score)}</td><td class="num">{m.revision}</td>'
            f'<td class="muted">{fmt_time(m.emitted_at)}</td></tr>'
        )
    if minutes:
        mean = sum(m.score for m in minutes) / len(minutes)
        table = (
            f"<p>{len(minutes)} minutes with a row; mean score {score_badge(mean)}</p>"
            f'<table id="minutes"><thead><tr><th>minute</th>{head}<th class="num">score</th>'
            f'<th class="num">revision</th><th>emitted</th></tr></thead>'
            f"<tbody>{''.join(trs)}</tbody></table>"
        )
    else:
        table = '<p class="muted" id="no-minutes">No quality rows for this hour.</p>'
    body = (
        f"<h1>{esc(sensor_id)}: {hour:%Y-%m-%d %H}:00\u2013{hour:%H}:59 UTC</h1>{nav}{about}"
        f"{notes_html(notes)}{table}"
        '<p class="muted">Figures per minute of event time (docs/quality.md): expected = 60 s / '
        "the sensor's interval; valid + out_of_range = received minus duplicates; late = received "
        "over 10 s after dt; rejected = dead letters naming the sensor.</p>"
    )
    return page(sensor_id, body, active="/", now=now)


def _figure(value: float | int) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}"
    return fmt_int(int(value))


# -- the catalogue ------------------------------------------------------------------------


KIND_COLOURS = {"topic": "#8250df", "table": "#0969da", "view": "#1a7f37"}

FILTER_JS = """
(function(){
 var q=document.getElementById('q'),count=document.getElementById('count'),
     rows=[].slice.call(document.querySelectorAll('tr[data-search]'));
 function apply(){
  var words=q.value.toLowerCase().split(/\\s+/).filter(Boolean),n=0;
  rows.forEach(function(r){
   var text=r.getAttribute('data-search'),show=words.every(function(w){return text.indexOf(w)>=0;});
   r.hidden=!show;if(show)n++;});
  count.textContent=n+' of '+rows.length+' datasets';
 }
 q.addEventListener('input',apply);
})();
"""


def kind_badge(kind: str) -> str:
    return badge(kind, KIND_COLOURS.get(kind, "#57606a"), "#ffffff")


def catalogue_notice(state: CatalogueState, source: str, now: datetime) -> str:
    if state.status == "unavailable":
        return notes_html(
            [
                f"The catalogue is not available yet: the stream jobs at {source} did not "
                f"answer ({state.error or 'not asked yet'})."
            ],
            "error",
        )
    if state.status == "stale":
        return notes_html(
            [
                f"The stream jobs at {source} do not answer since "
                f"{fmt_time(state.failing_since)} ({state.error}): this is the copy fetched "
                f"{fmt_time(state.fetched_at)} ({ago(now, state.fetched_at)})."
            ]
        )
    return ""


def catalogue_list(
    *,
    now: datetime,
    datasets: Sequence[Dataset],
    shown: Sequence[Dataset],
    query: str,
    state: CatalogueState,
    source: str,
) -> str:
    """Every dataset (those matching `query` shown), with a search box; the inline
    script narrows the list as one types, by the same rule as the server."""
    shown_names = {d.get("name") for d in shown}
    trs = "".join(
        f'<tr data-search="{esc(search_text(d))}"'
        f"{'' if d.get('name') in shown_names else ' hidden'}>"
        f"<td>{kind_badge(str(d.get('kind', '')))}</td>"
        f'<td><a href="{esc(dataset_url(str(d.get("name", ""))))}">{esc(d.get("name", ""))}</a>'
        f"</td><td>{esc(d.get('purpose', ''))}</td></tr>"
        for d in datasets
    )
    body = (
        "<h1>Data catalogue</h1>"
        f"{catalogue_notice(state, source, now)}"
        '<form method="get" action="/catalogue" role="search">'
        f'<input type="search" id="q" name="q" value="{esc(query)}" autocomplete="off" '
        'placeholder="search names, purposes, columns" aria-label="search the catalogue"> '
        '<button type="submit" id="search">Search</button> '
        '<a href="/catalogue.json">JSON</a></form>'
        f'<p class="muted" id="count">{len(shown)} of {len(datasets)} datasets</p>'
        '<table id="datasets"><thead><tr><th>kind</th><th>name</th><th>purpose</th></tr></thead>'
        f"<tbody>{trs}</tbody></table>"
        f"<script>{FILTER_JS}</script>"
    )
    return page("Catalogue", body, active="/catalogue", now=now)


ABOUT_FIELDS = ("purpose", "owner", "key", "partitioning", "retention", "lineage", "guarantees")


def default_sql(dataset: Dataset) -> str:
    return f"SELECT * FROM iceberg.{dataset.get('name', '')} LIMIT 100"


def dataset_page(
    *,
    now: datetime,
    dataset: Dataset,
    facts: Facts | None = None,
    offsets: Sequence[PartitionOffsets] | None = None,
    contract: Contract | None = None,
    errors: Sequence[str] = (),
    state: CatalogueState,
    source: str,
) -> str:
    """One dataset: what it is, its columns, how to read it, and its live facts."""
    name = str(dataset.get("name", ""))
    kind = str(dataset.get("kind", ""))
    about = "".join(
        f"<dt>{esc(f)}</dt><dd>{esc(dataset.get(f) or DASH)}</dd>" for f in ABOUT_FIELDS
    )
    parts = [
        f"<h1>{esc(name)} {kind_badge(kind)}</h1>",
        f'<p><a href="/catalogue">← catalogue</a> · <a href="{esc(dataset_url(name, ".json"))}">'
        "JSON</a></p>",
        catalogue_notice(state, source, now),
        f'<dl class="about">{about}</dl>',
        '<h2>Live facts</h2><div id="facts">',
        notes_html(errors, "error"),
    ]
    if facts is not None:
        parts.append(facts_html(facts, now))
    if offsets is not None:
        parts.append(offsets_html(offsets))
    if facts is None and offsets is None and not errors:
        parts.append('<p class="muted">none for this dataset</p>')
    parts.append("</div>")
    columns = [
        (str(c.get("name", "")), str(c.get("type", "")), str(c.get("description", "")))
        for c in dataset.get("columns") or []
        if isinstance(c, dict)
    ]
    if not columns and facts is not None:
        columns = [(c.name, c.type, c.description) for c in facts.columns]
    title = "Fields" if kind == "topic" else "Columns"
    trs = "".join(
        f"<tr><td><code>{esc(n)}</code></td><td>{esc(t)}</td><td>{esc(d)}</td></tr>"
        for n, t, d in columns
    )
    parts.append(
        f"<h2>{title}</h2>"
        + (
            f'<table id="columns"><thead><tr><th>name</th><th>type</th><th>description</th></tr>'
            f"</thead><tbody>{trs}</tbody></table>"
            if columns
            else '<p class="muted">not described</p>'
        )
    )
    if kind in ("table", "view"):
        sql = str(dataset.get("example_sql") or default_sql(dataset))
        parts.append(f'<h2>Example SQL</h2><pre id="example-sql">{esc(sql)}</pre>')
    if contract is not None:
        parts.append(contract_html(contract, example_message(dataset, contract)))
    return page(name, "".join(parts), active="/catalogue", now=now)


def facts_html(facts: Facts, now: datetime) -> str:
    rows: list[tuple[str, str, str]] = []
    if facts.rows is not None:
        rows.append(("rows", fmt_int(facts.rows), facts.rows_how))
    if facts.files is not None:
        rows.append(("data files", fmt_int(facts.files), fmt_bytes(facts.bytes)))
    if facts.newest_column:
        rows.append(
            (
                "freshness",
                f"{fmt_time(facts.newest)} ({ago(now, facts.newest)})",
                f"newest {facts.newest_column}",
            )
        )
    if facts.last_commit_at is not None:
        rows.append(
            (
                "last commit",
                f"{fmt_time(facts.last_commit_at)} ({ago(now, facts.last_commit_at)})",
                "",
            )
        )
    trs = "".join(
        f'<tr data-fact="{esc(k)}"><th>{esc(k)}</th><td class="num">{esc(v)}</td>'
        f'<td class="muted">{esc(how)}</td></tr>'
        for k, v, how in rows
    )
    out = f'<table id="live"><tbody>{trs}</tbody></table>' if trs else ""
    out += notes_html(facts.notes)
    if facts.quality is not None:
        out += quality_html(facts.quality, now)
    out += f'<p class="muted">checked {fmt_time(facts.checked_at)}</p>'
    return out


def quality_html(q: QualitySummary, now: datetime) -> str:
    statuses = " · ".join(f"{status_badge(k)} {v}" for k, v in sorted(q.statuses.items()))
    figures = (
        ("sensors", q.sensors),
        ("minutes", q.minutes),
        ("received", q.received),
        ("valid", q.valid),
        ("out_of_range", q.out_of_range),
        ("duplicates", q.duplicates),
        ("late", q.late),
        ("rejected", q.rejected),
    )
    trs = "".join(
        f'<tr><th>{esc(k)}</th><td class="num">{fmt_int(v)}</td></tr>' for k, v in figures
    )
    return (
        f'<h2>Latest quality figures</h2><div id="quality"><p>Since {fmt_time(q.since)}: mean '
        f"score {score_badge(q.mean_score)}; newest minute ends {fmt_time(q.newest_minute_end)} "
        f"({ago(now, q.newest_minute_end)}). Sensors now: {statuses or DASH}</p>"
        f"<table><tbody>{trs}</tbody></table></div>"
    )


def offsets_html(offsets: Sequence[PartitionOffsets]) -> str:
    trs = "".join(
        f'<tr><td class="num">{p.partition}</td><td class="num">{fmt_int(p.low)}</td>'
        f'<td class="num">{fmt_int(p.high)}</td><td class="num">{fmt_int(p.messages)}</td></tr>'
        for p in offsets
    )
    total = sum(p.messages for p in offsets)
    return (
        f"<p>{fmt_int(total)} messages held in Kafka, {len(offsets)} partitions</p>"
        '<table id="offsets">'
        '<thead><tr><th class="num">partition</th><th class="num">earliest offset</th>'
        '<th class="num">next offset</th><th class="num">messages</th></tr></thead>'
        f"<tbody>{trs}</tbody></table>"
    )


def contract_html(c: Contract, example: Mapping[str, Any] | None) -> str:
    """A topic's example message (key, headers, value) and its JSON Schemas."""
    if example is None:
        out = (
            '<h2>Example message</h2><p class="muted" id="example-message">No example in the '
            "catalogue or the contract yet.</p>"
        )
    else:
        value = example.get("value")
        text = value if isinstance(value, str) else json.dumps(value, indent=2)
        about = "".join(
            f"<dt>{esc(k)}</dt><dd><code>{esc(json.dumps(example[k]))}</code></dd>"
            for k in ("key", "headers")
            if k in example
        )
        out = (
            "<h2>Example message</h2>"
            + (f'<dl class="about">{about}</dl>' if about else "")
            + f'<pre id="example-message">{esc(text)}</pre>'
        )
    if c.value is not None:
        out += (
            f"<h2>JSON Schema of the value</h2>"
            f'<pre id="value-schema">{esc(json.dumps(c.value, indent=2))}</pre>'
        )
    else:
        out += '<p class="muted">The value has no schema (kept as received).</p>'
    if c.headers is not None:
        out += (
            f"<h2>JSON Schema of the headers</h2>"
            f'<pre id="headers-schema">{esc(json.dumps(c.headers, indent=2))}</pre>'
        )
    return out


# -- the rest -----------------------------------------------------------------------------


def no_quality_docs(docs_dir: Path, now: datetime) -> str:
    body = (
        "<h1>Data Docs</h1>"
        f'<p class="note" id="no-quality-run">No quality run yet: run <code>make quality</code>. '
        f"Its Great Expectations Data Docs will be served here (from {esc(docs_dir)}).</p>"
    )
    return page("Data Docs", body, active="/quality/docs/", now=now)


def error_page(status: int, message: str, now: datetime) -> str:
    body = f'<h1>{status}</h1><p class="error">{esc(message)}</p><p><a href="/">← home</a></p>'
    return page(str(status), body, now=now)


def as_json_dataset(
    dataset: Mapping[str, Any],
    *,
    url: str,
    live: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A catalogue entry for machines: the stream jobs' description, its page, and live facts."""
    out = dict(dataset)
    out["url"] = url
    if live is not None:
        out["live"] = dict(live)
    return out
