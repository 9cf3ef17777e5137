"""The portal as a person uses it: Debian's headless chromium, driven by selenium,
over a real pipeline (bridge, stream jobs, Trino). The catalogue is searched and a
table's page shows the rows that were published and how fresh they are; the
operator's page shows a sensor with faults as degraded, as curated.sensor_status
says, and its heatmap cell opens that hour's minutes. Screenshots go to
docs/screenshots/."""

import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from local import trino_auth
from local.services import ROOT, free_port, wait_for
from tests.integration.browser import MISSING, SHOTS, chromium, installed
from tests.integration.harness import Proc, published, wait_exit

pytestmark = pytest.mark.integration

QUALITY_PYTHON = ROOT / ".venv-quality" / "bin" / "python"


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture
def portal(sql_pipeline):
    """`python -m portal` over this test's pipeline: its Trino schemas, its topics, the
    stream jobs' own /catalogue.json; a Data Docs directory that does not exist yet."""
    pipe = sql_pipeline
    port = free_port()
    env = {
        **pipe.env,
        **pipe.sql_services.bi_env(trino_auth.PORTAL_USER),
        "STREAM_JOBS_URL": f"http://127.0.0.1:{pipe.env['WEB_PORT']}",
        "PORTAL_HOST": "127.0.0.1",
        "PORTAL_PORT": str(port),
        "FACTS_CACHE_SECONDS": "1",
        "QUALITY_DOCS_DIR": str(pipe.work / "data_docs"),
    }
    proc = Proc("portal", [sys.executable, "-m", "portal"], env, pipe.work / "portal.log").start()
    url = f"http://127.0.0.1:{port}"

    def ready():
        if not proc.alive:
            raise AssertionError(f"the portal exited:\n{proc.tail()}")
        try:
            health = get_json(f"{url}/health")
        except OSError:
            return False
        return health["catalogue"] == "ok" and health["trino"] == "ok"

    try:
        wait_for(ready, 60, "the portal, with its catalogue and Trino")
        yield url
    finally:
        proc.stop()
        print(proc.tail())


@pytest.fixture
def browser():
    if not installed():
        pytest.skip(MISSING)
    with chromium(1400, 1000) as driver:
        yield driver


def screenshot(driver, name):
    """The whole page, beyond the window's height, as docs/screenshots/<name>."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / name).write_bytes(base64.b64decode(shot["data"]))


def reload_until(driver, predicate, timeout, what):
    """Reload the page until predicate(driver) holds (the pages are not live)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate(driver):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s; page:\n{driver.page_source[:3000]}")
        time.sleep(1)
        driver.refresh()


def test_catalogue_search_and_a_tables_row_count_and_freshness(sql_pipeline, portal, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    pipe = sql_pipeline
    gen = pipe.generator(seconds=3, interval_ms=100)
    assert wait_exit(gen, 60) == 0
    sent = len(published(gen))
    assert sent > 50
    wait_for(
        lambda: pipe.sql("SELECT count(*) FROM iceberg.raw.readings") == [[sent]],
        60,
        f"{sent} readings in raw.readings",
    )

    browser.get(f"{portal}/catalogue")
    rows = browser.find_elements(By.CSS_SELECTOR, "#datasets tbody tr")
    assert len(rows) > 10
    box = browser.find_element(By.ID, "q")
    box.send_keys("readings")
    # the inline filter narrows the list as one types ...
    visible = [r for r in rows if r.is_displayed()]
    assert 0 < len(visible) < len(rows)
    assert all("readings" in r.get_attribute("data-search") for r in visible)
    filtered = [r.find_element(By.CSS_SELECTOR, "td:nth-child(2) a").text for r in visible]
    # ... and the server's search gives the same list
    box.send_keys(Keys.ENTER)
    wait_for(lambda: "q=readings" in browser.current_url, 10, "the search's page")
    shown = [
        r.find_element(By.CSS_SELECTOR, "td:nth-child(2) a").text
        for r in browser.find_elements(By.CSS_SELECTOR, "#datasets tbody tr")
        if r.is_displayed()
    ]
    assert shown == filtered
    assert {"iot.readings", "raw.readings", "curated.readings_1m"} <= set(shown)
    assert "raw.sensors" not in shown
    assert re.search(
        rf"^{len(shown)} of {len(rows)} datasets$", browser.find_element(By.ID, "count").text
    )
    screenshot(browser, "catalogue-search.png")

    browser.find_element(By.LINK_TEXT, "raw.readings").click()
    wait_for(lambda: browser.current_url.endswith("/catalogue/raw.readings"), 10, "its page")

    def facts(driver):
        cells = {
            row.find_element(By.TAG_NAME, "th").text: row.find_element(
                By.CSS_SELECTOR, "td.num"
            ).text
            for row in driver.find_elements(By.CSS_SELECTOR, "#live tr")
        }
        return cells

    reload_until(browser, lambda d: facts(d).get("rows") == f"{sent:,}", 30, f"{sent} rows shown")
    freshness = facts(browser)["freshness"]
    newest = pipe.sql("SELECT max(ts) FROM iceberg.raw.readings")[0][0]
    assert freshness.startswith(newest.strftime("%Y-%m-%d %H:%M:%S UTC")), freshness
    assert re.search(r"\(\d+ (s|min) ago\)$", freshness), freshness
    assert "exactly once" in browser.find_element(By.CSS_SELECTOR, "dl.about").text
    assert "FROM iceberg.raw.readings" in browser.find_element(By.ID, "example-sql").text
    assert browser.find_element(By.ID, "quality").is_displayed()  # the latest quality figures
    screenshot(browser, "catalogue.png")

    # the same for machines
    body = get_json(f"{portal}/catalogue/raw.readings.json")
    assert (
        body["live"]["facts"]["rows"] == sent and body["live"]["facts"]["newest_age_seconds"] >= 0
    )
    topic = get_json(f"{portal}/catalogue/iot.readings.json")
    assert topic["live"]["kafka"]["messages"] == sent  # the test's own readings topic
    assert topic["contract"]["value_schema"]["required"] == ["id", "dt", "value"]
    assert set(topic["contract"]["example"]["value"]) >= {"id", "dt", "value"}


def sensors_file(pipe, name, ids):
    sensors = json.loads((ROOT / "iot_data_generator" / "sensors.json").read_text())
    path = pipe.work / name
    path.write_text(json.dumps({i: sensors[i] for i in ids}))
    return str(path)


STATUS = "SELECT sensor_id, status FROM iceberg.curated.sensor_status ORDER BY sensor_id"


@pytest.mark.timeout(420)
def test_operator_page_shows_the_degraded_sensor_and_its_minutes(sql_pipeline, portal, browser):
    from selenium.webdriver.common.by import By

    pipe = sql_pipeline
    # Sensors 1 and 2 healthy; every reading of Sensor 3 out of its range (0..45).
    healthy = pipe.generator(
        seconds=240,
        interval_ms=1000,
        sensors_file=sensors_file(pipe, "ok.json", ["Sensor 1", "Sensor 2"]),
    )
    faulty = pipe.generator(
        seconds=240,
        interval_ms=1000,
        sensors_file=sensors_file(pipe, "faulty.json", ["Sensor 3"]),
        fault_out_of_range="1",
    )
    try:
        wait_for(
            lambda: ["Sensor 3", "degraded"] in pipe.sql(STATUS), 180, "Sensor 3 degraded in SQL"
        )

        browser.get(f"{portal}/")

        def status_on_page(driver, sensor):
            rows = driver.find_elements(By.CSS_SELECTOR, f'#status tr[data-sensor="{sensor}"]')
            if not rows:
                return None
            return (
                rows[0].find_element(By.CSS_SELECTOR, "[data-status]").get_attribute("data-status")
            )

        # For the screenshot: every publishing sensor has a closed minute with readings.
        read = (
            "SELECT count(*) FROM iceberg.curated.sensor_status WHERE last_reading_at IS NOT NULL"
        )
        wait_for(lambda: pipe.sql(read) == [[3]], 60, "a minute of each of Sensors 1 to 3")
        reload_until(
            browser, lambda d: status_on_page(d, "Sensor 3") == "degraded", 30, "Sensor 3 degraded"
        )
        # Every sensor as the view has it (a status may change between the two reads).
        before = dict(pipe.sql(STATUS))
        browser.refresh()
        page = {s: status_on_page(browser, s) for s in before}
        after = dict(pipe.sql(STATUS))
        for sensor, status in page.items():
            assert status in (before[sensor], after[sensor]), (sensor, status, before, after)
        assert page["Sensor 3"] == "degraded"
        badge = browser.find_element(
            By.CSS_SELECTOR, '#status tr[data-sensor="Sensor 3"] [data-status]'
        )
        assert "240, 136, 62" in badge.value_of_css_property("background-color")

        # The heatmap: a row per sensor, 24 cells each; Sensor 3's hour is red (score < 0.5).
        cells = browser.find_elements(By.CSS_SELECTOR, '#heatmap a.cell[data-sensor="Sensor 3"]')
        assert len(cells) == 24
        scored = [c for c in cells if c.get_attribute("data-score")]
        assert scored, "no heatmap cell with a score for Sensor 3"
        cell = scored[-1]
        assert float(cell.get_attribute("data-score")) < 0.5
        assert cell.get_attribute("data-bucket") == "< 0.50"
        hour = cell.get_attribute("data-hour")
        now = datetime.now(UTC).replace(tzinfo=None)
        recent = {(now - timedelta(hours=h)).strftime("%Y-%m-%dT%H") for h in (0, 1)}
        assert hour in recent, (hour, recent)  # the newest cell with a score: this hour or the last
        assert (
            browser.find_element(By.ID, "data-docs")
            .get_attribute("href")
            .endswith("/quality/docs/")
        )
        screenshot(browser, "quality.png")

        cell.click()
        wait_for(
            lambda: browser.current_url.endswith(f"/sensors/Sensor%203?hour={hour}"),
            10,
            "the sensor-hour's page",
        )
        minutes = browser.find_elements(By.CSS_SELECTOR, "#minutes tbody tr")
        assert minutes
        header = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#minutes thead th")]
        assert header == [
            "minute",
            "expected",
            "received",
            "valid",
            "out_of_range",
            "duplicates",
            "late",
            "rejected",
            "score",
            "revision",
            "emitted",
        ]
        start = datetime.strptime(hour, "%Y-%m-%dT%H")
        in_sql = {
            r[0].strftime("%H:%M"): r[1:]
            for r in pipe.sql(
                "SELECT window_start, received, valid, out_of_range, revision "
                "FROM iceberg.curated.sensor_quality_1m WHERE sensor_id = 'Sensor 3' "
                f"AND window_start >= TIMESTAMP '{start:%Y-%m-%d %H}:00:00' "
                f"AND window_start < TIMESTAMP '{start:%Y-%m-%d %H}:00:00' + INTERVAL '1' HOUR"
            )
        }
        for tr in minutes:
            tds = [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            minute, received, valid, out_of_range = tds[0], tds[2], tds[3], tds[4]
            assert minute in in_sql, (minute, in_sql)
            sql_received, sql_valid, sql_out, sql_revision = in_sql[minute]
            if int(tds[9]) == sql_revision:  # a later revision may have landed meanwhile
                want = [f"{sql_received:,}", f"{sql_valid:,}", f"{sql_out:,}"]
                assert [received, valid, out_of_range] == want
            assert valid == "0"  # nothing of Sensor 3 is valid
        assert any(
            int(tr.find_elements(By.TAG_NAME, "td")[4].text.replace(",", "")) > 0 for tr in minutes
        )

        # The Data Docs: none before a quality run, then its index.
        browser.get(f"{portal}/quality/docs/")
        assert (
            "No quality run yet: run make quality"
            in browser.find_element(By.ID, "no-quality-run").text
        )
        # A real quality run (Great Expectations, its own virtualenv) over this
        # pipeline's tables: the Data Docs' latest run shows Sensor 3's readings
        # failing the range expectation.
        if not QUALITY_PYTHON.exists():
            pytest.skip("no .venv-quality (make test creates it from expectations/)")
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            **{k: pipe.env[k] for k in ("RAW_SCHEMA", "CURATED_SCHEMA")},
            **pipe.sql_services.bi_env(trino_auth.QUALITY_USER),
            "QUALITY_DOCS_DIR": str(pipe.work / "data_docs"),
        }
        done = subprocess.run(
            [str(QUALITY_PYTHON), "-m", "expectations"],
            env=env,
            cwd=pipe.work,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        browser.get(f"{portal}/quality/docs/")
        latest = browser.find_element(By.ID, "iot-quality-latest")
        assert "FAILED" in latest.text and "value_in_range" in latest.text
        latest.find_element(By.LINK_TEXT, "raw.readings").click()
        wait_for(
            lambda: "value_in_range: value is within [0, 45]" in browser.page_source,
            20,
            "the latest raw.readings run with its failing range expectation",
        )
        screenshot(browser, "data-docs.png")
        summary = get_json(f"{portal}/quality/latest.json")
        failed = [f["check"] for f in summary["suites"]["raw.readings"]["failed"]]
        assert "value_in_range" in failed
    finally:
        healthy.stop()
        faulty.stop()
