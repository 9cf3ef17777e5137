"""Apache Superset as a BI user meets it, for the test and the bench: Superset
started the way `make up` starts it (local/services.py: the same command and
environment, bi/superset_service.py), then Debian's headless chromium logs in and
opens the dashboards of bi/dashboards.

A dashboard counts as rendered when every chart of it has left its loading state
and shows data: a canvas or an svg with marks (ECharts), or table rows; a chart
showing an error or "No results" fails it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from local.services import ROOT, SUPERSET_PYTHON, Stack, free_port, wait_for
from tests.integration import browser
from tests.integration.browser import SHOTS
from tests.integration.harness import Proc

BUNDLE = ROOT / "bi" / "dashboards"
ADMIN = "admin"


def dashboards() -> list[dict[str, Any]]:
    """The dashboards kept as code: title, slug and the names of their charts."""
    out = []
    for path in sorted((BUNDLE / "dashboards").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        charts = [
            v["meta"]["sliceName"]
            for v in doc["position"].values()
            if isinstance(v, dict) and v.get("type") == "CHART"
        ]
        out.append({"title": doc["dashboard_title"], "slug": doc["slug"], "charts": charts})
    return out


@dataclass
class Superset:
    url: str
    password: str
    proc: Proc


@contextmanager
def superset(sql: Stack, work: Path, env: dict[str, str]) -> Iterator[Superset]:
    """Superset over the Trino of `sql` (the SQL services' stack) with its login,
    its home in `work`; `env` names the schemas (RAW_SCHEMA, CURATED_SCHEMA) it
    should read."""
    work.mkdir(parents=True, exist_ok=True)
    password = "test-" + work.name
    stack = Stack(
        work,
        trino_https_port=sql.trino_https_port,
        trino_credentials=sql.trino_credentials,
        superset_port=free_port(),
        env={
            **env,
            "SUPERSET_ADMIN_PASSWORD": password,
            "SUPERSET_SECRET_KEY": "test-secret-key-" + work.name,
        },
    )
    # Trino's certificate is the SQL stack's.
    superset_env = {**stack.superset_env(), "SUPERSET_TRINO_CA_FILE": str(sql.trino_ca_file)}
    proc = Proc("superset", stack.superset_cmd(), superset_env, work / "superset.log")
    proc.start()

    def ready() -> bool:
        if not proc.alive:
            raise AssertionError(f"superset exited:\n{proc.tail()}")
        return stack.superset_ready()

    try:
        wait_for(ready, 900, "Superset, with its dashboards imported")
        yield Superset(f"http://127.0.0.1:{stack.superset_port}", password, proc)
    finally:
        proc.stop()
        print(proc.tail(60))


def installed() -> bool:
    return SUPERSET_PYTHON.exists() and browser.installed()


@contextmanager
def chromium() -> Iterator[Any]:
    """The browser, with its console kept (the CSP check reads it)."""
    with browser.chromium(1500, 1200, console=True) as driver:
        yield driver


def login(driver: Any, ss: Superset) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{ss.url}/login/")
    wait_for(lambda: driver.find_elements(By.ID, "username"), 60, "the login form")
    driver.find_element(By.ID, "username").send_keys(ADMIN)
    box = driver.find_element(By.ID, "password")
    box.send_keys(ss.password)
    box.send_keys(Keys.ENTER)
    wait_for(lambda: "/login" not in driver.current_url, 60, "the login to pass")


# Per chart holder: its state, in the page (one round trip for the whole dashboard).
CHART_STATES = """
// a canvas counts once something is painted on it (ECharts draws on canvases)
const painted = c => {
  if (!c.width || !c.height) return false;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < d.length; i += 4 * 31) if (d[i]) return true;
  return false;
};
return Array.from(document.querySelectorAll('[data-test="dashboard-component-chart-holder"]'))
  .map(el => {
    const title = (el.querySelector('[data-test="editable-title"], .header-title')
                   || {}).textContent || '';
    const text = el.innerText || '';
    return {
      title: title.trim(),
      loading: !!el.querySelector('.loading, [data-test="loading-indicator"]'),
      error: !!el.querySelector('.alert-danger, [data-test="error-tile"], .error-message')
             || /Unexpected error|Error:|error occurred/i.test(text),
      empty: /No results|No data/i.test(text),
      drawn: Array.from(el.querySelectorAll('canvas')).filter(painted).length
             + el.querySelectorAll('svg path, svg rect').length
             + el.querySelectorAll('table tbody tr').length,
    };
  });
"""


# What the canvases show now (to see when drawing has ended).
CANVASES = "return Array.from(document.querySelectorAll('canvas')).map(c => c.toDataURL().length)"
STILL_S = 1.0


def open_dashboard(driver: Any, ss: Superset, slug: str, timeout: float = 180) -> dict[str, Any]:
    """Open a dashboard and wait until every chart is done and drawn to the end (ECharts
    animates: the canvases stay the same for STILL_S); the charts' states and the
    seconds from navigation until then."""
    t0 = time.perf_counter()
    driver.get(f"{ss.url}/superset/dashboard/{slug}/")
    states: list[dict[str, Any]] = []
    deadline = t0 + timeout
    last, since = None, 0.0
    while True:
        states = driver.execute_script(CHART_STATES) or []
        done = bool(states) and all(
            not s["loading"] and (s["drawn"] > 0 or s["error"] or s["empty"]) for s in states
        )
        now = time.perf_counter()
        picture = driver.execute_script(CANVASES) if done else None
        if not done or picture != last:
            last, since = picture, now
        elif now - since >= STILL_S:
            break
        if now > deadline:
            raise AssertionError(f"dashboard {slug}'s charts not done in {timeout} s: {states}")
        time.sleep(0.1)
    seconds = since - t0
    # Nothing from another host: whatever the page asks for elsewhere (Superset's
    # bundle always adds an analytics pixel) must have been refused by its CSP.
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    foreign = [r for r in resources if not r.startswith((ss.url, "data:", "blob:"))]
    console = [m["message"] for m in driver.get_log("browser")]
    refused = [m for m in console if "violates the following Content Security Policy" in m]
    loaded = [r for r in foreign if not any(r in m for m in refused)]
    return {"charts": states, "seconds": seconds, "foreign": foreign, "foreign_loaded": loaded}


def screenshot(driver: Any, name: str) -> None:
    """The window as docs/screenshots/<name>. (Not beyond it: a capture that resizes
    the page makes Superset's grid lay out and draw its charts anew.)"""
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / name).write_bytes(driver.get_screenshot_as_png())
