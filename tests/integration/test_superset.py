"""Superset's dashboards, kept as code in bi/dashboards, as a BI user sees them.

A real pipeline (bridge, stream jobs, Trino) receives readings with faults for a
few minutes; Superset starts as `make up` starts it, imports the dashboards, and
Debian's headless chromium logs in and opens each of them. Every chart must have
rendered data from this pipeline: no error, no "No results". The page loads
nothing from another host (what it asks for elsewhere, its CSP refuses).
Screenshots go to docs/screenshots/superset-<slug>.png.
"""

import pytest

from local.services import wait_for
from tests.integration.harness import wait_exit
from tests.integration.superset_browser import (
    chromium,
    dashboards,
    installed,
    login,
    open_dashboard,
    screenshot,
    superset,
)

pytestmark = pytest.mark.integration


@pytest.mark.timeout(1200)
def test_every_dashboard_renders_every_chart_with_data(sql_pipeline, sql):
    if not installed():
        pytest.skip("needs .venv-superset (make superset) and Debian's chromium and its driver")
    pipe = sql_pipeline
    expected = dashboards()
    assert len(expected) >= 3 and all(d["charts"] for d in expected)
    # Two minutes of readings, some malformed (dead letters), so that each chart has
    # data: readings, 1-minute means, quality minutes, statuses, dead letters.
    gen = pipe.generator(seconds=130, interval_ms=1000, fault_malformed="0.05")
    schemas = {k: pipe.env[k] for k in ("RAW_SCHEMA", "CURATED_SCHEMA")}
    with superset(sql.stack, pipe.work / "superset", schemas) as ss:
        assert wait_exit(gen, 200) == 0
        for what, query in {
            "dead letters": "SELECT count(*) FROM iceberg.raw.rejected",
            "1-minute means": "SELECT count(*) FROM iceberg.curated.readings_1m",
            "quality minutes": "SELECT count(*) FROM iceberg.curated.sensor_quality_1m "
            "WHERE received > 0",
        }.items():
            wait_for(lambda q=query: pipe.sql(q)[0][0] > 0, 180, what)
        with chromium() as driver:
            login(driver, ss)
            for board in expected:
                seen = open_dashboard(driver, ss, board["slug"])
                screenshot(driver, f"superset-{board['slug']}.png")
                charts = seen["charts"]
                assert len(charts) == len(board["charts"]), (board["title"], charts)
                for chart in charts:
                    assert not chart["error"], (board["title"], chart)
                    assert not chart["empty"], (board["title"], chart)
                    assert chart["drawn"] > 0, (board["title"], chart)
                assert seen["foreign_loaded"] == [], seen["foreign"]
