"""The bench's cost curves as PNG images, beside the tables of docs/benchmarks.md.

`write_curves` draws the figures of the stage `curves` (one row per component and
number of sensors) as curves-cpu.png and curves-memory.png, `write_history` those of
the stage `history` (one row per length of history) as curves-queries.png. Both use
matplotlib's Agg backend (no display) and its bundled font: nothing is fetched.
Axes are logarithmic (sensors 5 .. 100,000, days 1 .. 365), with units; each title
names the machine the figures were taken on.

Again from kept figures (BENCH_FIGURES_DIR, see `keep_figures`):
`python -m tests.bench.plots curves.json history.json --out docs`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, PNG only

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

DOCS = Path(__file__).resolve().parents[2] / "docs"
CPU_PNG, MEMORY_PNG, QUERIES_PNG = "curves-cpu.png", "curves-memory.png", "curves-queries.png"

Rows = Sequence[dict[str, Any]]
# (component, figure, label) of one curve
Series = tuple[tuple[str, str, str], ...]

PER_RECORD: Series = (
    ("bridge", "cpu_us_per_record", "bridge: an MQTT message (parse, dedup, flood guard)"),
    ("minutes", "cpu_us_per_record", "1-minute job: a reading into its window"),
    ("quality", "cpu_us_per_record", "quality job: a 1-minute emission"),
)
PER_EVENT: Series = (
    ("minutes", "checkpoint_ms", "1-minute job: checkpoint at a minute's end"),
    ("quality", "checkpoint_ms", "quality job: checkpoint of a minute's emissions"),
    ("quality", "idle_checkpoint_ms", "quality job: checkpoint with nothing new (every 2 s)"),
    ("registry", "publish_ms", "bridge: publish sensors.json (all sensors)"),
    ("registry", "republish_ms", "bridge: publish after one entry changed"),
    ("registry", "ranges_refresh_ms", "1-minute job: sensor ranges refresh (every 30 s)"),
    ("registry", "directory_load_ms", "stream jobs: sensor directory load (start)"),
)
IN_MEMORY: Series = (
    ("bridge", "state_mb", "bridge: dedup memory + flood guard"),
    ("minutes", "state_mb", "1-minute job: windows (3 partitions)"),
    ("quality", "state_mb", "quality job: state (sensor-minutes, statuses)"),
    ("registry", "publisher_mb", "bridge: sensor publisher"),
    ("registry", "directory_mb", "stream jobs: sensor directory"),
    ("registry", "ranges_mb", "1-minute job: sensor ranges"),
)
RESIDENT: Series = (
    ("bridge", "rss_mb", "bridge: dedup memory + flood guard"),
    ("minutes", "rss_mb", "1-minute job: windows, checkpoints"),
    ("quality", "rss_mb", "quality job: state, checkpoints"),
    ("registry", "rss_mb", "sensor registry: publisher + the jobs' readers"),
)
STATE_FILES: Series = (
    ("minutes", "state_doc_kb", "1-minute job: state files (3 partitions)"),
    ("quality", "state_doc_kb", "quality job: state file"),
)
# (figure, label, colour, dashed): a query filtered on ts is drawn dashed in the
# colour of the same query filtered on event_date
QUERIES = (
    ("one_sensor_day_s", "one sensor's day (raw.readings, by ts)", "C0", False),
    (
        "sensor_month_1m_s",
        "one sensor's month of 1-minute means (curated.readings_1m, by window_start)",
        "C1",
        False,
    ),
    ("daily_means_all_s", "daily means of all sensors, all history", "C2", False),
    ("daily_means_month_s", "daily means of all sensors, last 30 days, by event_date", "C3", False),
    ("daily_means_month_ts_s", "the same by ts", "C3", True),
    ("latest_values_s", "latest value of every sensor (last 2 days), by event_date", "C4", False),
    ("latest_values_ts_s", "the same by ts", "C4", True),
)


def out_dir(smoke: bool, work: Path) -> Path:
    """Where a stage writes its PNGs: BENCH_PLOTS_DIR if set, else docs/ (the run's
    work directory under --smoke: tiny sizes must not replace the documented curves)."""
    chosen = os.environ.get("BENCH_PLOTS_DIR")
    if chosen:
        return Path(chosen)
    return work / "plots" if smoke else DOCS


def keep_figures(name: str, rows: Rows) -> Path | None:
    """With BENCH_FIGURES_DIR set, the figures as <name>.json there (to draw again)."""
    folder = os.environ.get("BENCH_FIGURES_DIR")
    if not folder:
        return None
    path = Path(folder) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(rows), indent=1))
    return path


def _points(rows: Rows, component: str, key: str) -> tuple[list[float], list[float]]:
    found = sorted(
        (r["sensors"], float(r[key]))
        for r in rows
        if r.get("component") == component and isinstance(r.get(key), int | float)
    )
    return [x for x, _ in found], [y for _, y in found]


def _plain(value: float, _pos: object = None) -> str:
    """Tick labels as numbers (1,000 rather than 10^3)."""
    if value >= 1:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _decades(ax: Axes) -> float:
    low, high = (v for v in ax.get_ylim())
    return math.log10(high / low) if low > 0 and high > low else 0.0


def _axes(ax: Axes, xlabel: str, ylabel: str, title: str, *, ylog: bool = True) -> None:
    """Log x (and log y unless `ylog` is false: then linear from 0), numbers as ticks."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(_plain))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if ylog:
        ax.set_yscale("log")
        if _decades(ax) <= 3:  # few decades: label 1, 2 and 5 of each
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(FuncFormatter(_plain))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.12)


def _draw(ax: Axes, rows: Rows, series: Series, scale: float = 1.0) -> int:
    drawn = 0
    for component, key, label in series:
        xs, ys = _points(rows, component, key)
        ys = [y * scale for y in ys]
        pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if y > 0]
        if not pairs:
            continue
        ax.plot([x for x, _ in pairs], [y for _, y in pairs], marker="o", label=label)
        drawn += 1
    _legend(ax)
    return drawn


def _legend(ax: Axes) -> None:
    """Below the axes: curves that rise to the top corner stay visible."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)


def _figure(title: str, machine: str, panels: int) -> tuple[Figure, list[Axes]]:
    size = (max(8.5, 6.2 * panels), 6.6)
    fig, axes = plt.subplots(1, panels, figsize=size, squeeze=False)
    fig.suptitle(title, fontsize=13)
    fig.text(0.5, 0.925, f"{machine}, shared", ha="center", fontsize=9, color="0.3")
    return fig, list(axes[0])


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def write_curves(rows: Rows, machine: str, folder: Path) -> list[Path]:
    """curves-cpu.png and curves-memory.png from the figures of the stage curves."""
    sensors = "sensors (N)"
    fig, (left, right) = _figure("CPU as the number of sensors grows", machine, 2)
    _draw(left, rows, PER_RECORD)
    _axes(left, sensors, "process CPU per record (µs)", "per record", ylog=False)
    _draw(right, rows, PER_EVENT)
    _axes(right, sensors, "process CPU per event (ms)", "per checkpoint, refresh or publish")
    cpu = _save(fig, folder / CPU_PNG)

    fig, (left, middle, right) = _figure(
        "Memory of the state as the number of sensors grows", machine, 3
    )
    _draw(left, rows, IN_MEMORY)
    _axes(left, sensors, "state in memory (MB)", "held in memory (Python objects)")
    _draw(middle, rows, RESIDENT)
    _axes(
        middle, sensors, "resident memory growth (MB)", "resident (RSS), end minus start of a run"
    )
    _draw(right, rows, STATE_FILES, scale=1e-3)
    _axes(right, sensors, "state file (MB)", "written at each checkpoint that commits")
    memory = _save(fig, folder / MEMORY_PNG)
    return [cpu, memory]


def write_history(rows: Rows, machine: str, folder: Path) -> list[Path]:
    """curves-queries.png from the figures of the stage history (one row per length)."""
    fig, (ax,) = _figure("Query latency as the history grows (100 sensors)", machine, 1)
    for key, label, colour, dashed in QUERIES:
        found = sorted(
            (r["days"], float(r[key])) for r in rows if isinstance(r.get(key), int | float)
        )
        if found:
            xs, ys = [d for d, _ in found], [s for _, s in found]
            style = "--" if dashed else "-"
            ax.plot(xs, ys, style, color=colour, marker="o", label=label)
    _legend(ax)
    _axes(ax, "days of history", "median latency through Trino (s)", "")
    return [_save(fig, folder / QUERIES_PNG)]


def main(argv: Iterable[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.bench.plots", description=__doc__)
    p.add_argument("figures", nargs="+", type=Path, help="curves.json and/or history.json")
    p.add_argument("--out", type=Path, default=DOCS)
    p.add_argument("--machine", default="", help="the machine line (default: this one)")
    args = p.parse_args(list(argv) if argv is not None else None)
    if not args.machine:
        from tests.bench.common import machine

        args.machine = machine()
    for path in args.figures:
        rows = json.loads(path.read_text())
        draw = write_history if rows and "days" in rows[0] else write_curves
        for written in draw(rows, args.machine, args.out):
            print(written)


if __name__ == "__main__":
    main()
