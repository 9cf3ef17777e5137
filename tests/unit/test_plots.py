"""tests.bench.plots draws the bench's cost curves as PNG files from a few figures,
without a display, and leaves the documented curves alone under --smoke."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench import plots

PNG = b"\x89PNG\r\n\x1a\n"


def curves_rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for n in (5, 100, 1_000):
        rows += [
            {"component": "bridge", "sensors": n, "cpu_us_per_record": 12.0, "state_mb": 63.0},
            {
                "component": "minutes",
                "sensors": n,
                "cpu_us_per_record": 6.0,
                "checkpoint_ms": n * 0.02,
                "state_mb": n * 4e-4,
                "state_doc_kb": n * 0.24,
            },
            {
                "component": "quality",
                "sensors": n,
                "cpu_us_per_record": 5.0,
                "checkpoint_ms": n * 0.2,
                "idle_checkpoint_ms": n * 0.05,
                "state_mb": n * 5e-3,
                "state_doc_kb": n * 4.5,
            },
            {
                "component": "registry",
                "sensors": n,
                "publish_ms": n * 0.01,
                "republish_ms": n * 0.005,
                "ranges_refresh_ms": n * 0.004,
                "directory_load_ms": n * 0.006,
                "publisher_mb": n * 2e-4,
                "directory_mb": n * 8e-4,
                "ranges_mb": 0.0,  # nothing to draw on a log scale: left out
            },
        ]
    return rows


def history_rows() -> list[dict[str, object]]:
    return [
        {
            "days": days,
            "one_sensor_day_s": 0.2,
            "sensor_month_1m_s": 0.3,
            "daily_means_all_s": 0.1 * days,
            "daily_means_month_s": 0.1 * min(days, 30),
            "latest_values_s": 0.25,
        }
        for days in (1, 7, 30)
    ]


def test_curves_and_history_are_png_files(tmp_path: Path) -> None:
    written = plots.write_curves(curves_rows(), "2 cores (test), 1 GiB", tmp_path)
    written += plots.write_history(history_rows(), "2 cores (test), 1 GiB", tmp_path)
    names = {p.name for p in written}
    assert names == {plots.CPU_PNG, plots.MEMORY_PNG, plots.QUERIES_PNG}
    for path in written:
        assert path.parent == tmp_path
        data = path.read_bytes()
        assert data.startswith(PNG), path
        assert len(data) > 10_000, path  # axes, curves and labels, not an empty canvas


def test_missing_figures_leave_curves_out(tmp_path: Path) -> None:
    """A run of some components only (or a failed size) still draws what it has."""
    rows = [r for r in curves_rows() if r["component"] == "bridge"]
    for path in plots.write_curves(rows, "test", tmp_path):
        assert path.read_bytes().startswith(PNG)


def test_smoke_runs_do_not_replace_the_documented_curves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BENCH_PLOTS_DIR", raising=False)
    assert plots.out_dir(False, tmp_path) == plots.DOCS
    assert plots.out_dir(True, tmp_path) == tmp_path / "plots"
    monkeypatch.setenv("BENCH_PLOTS_DIR", str(tmp_path / "mine"))
    assert plots.out_dir(False, tmp_path) == tmp_path / "mine"


def test_kept_figures_draw_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_FIGURES_DIR", str(tmp_path / "figures"))
    curves = plots.keep_figures("curves", curves_rows())
    history = plots.keep_figures("history", history_rows())
    assert curves is not None and history is not None
    out = tmp_path / "out"
    plots.main([str(curves), str(history), "--out", str(out), "--machine", "test"])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [plots.CPU_PNG, plots.MEMORY_PNG, plots.QUERIES_PNG]
    )
