"""The portal's pages without services: rendering (escaping of hostile ids, the
heatmap's colours and links, the search), the SQL it sends, the catalogue's copy
kept through failures, the Data Docs' files, and every route over a fake
warehouse through aiohttp's test client."""

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from portal import render
from portal.app import Portal, make_app, topic_names
from portal.cache import TtlCache
from portal.catalogue import (
    Catalogue,
    contract,
    example_message,
    example_of,
    search,
    valid_catalogue,
)
from portal.docs import resolve
from portal.offsets import PartitionOffsets
from portal.settings import PortalSettings
from portal.warehouse import (
    DatasetRef,
    Facts,
    HourScore,
    Minute,
    QualitySummary,
    Sensor,
    SensorStatus,
    TrinoWarehouse,
    Unavailable,
)

NOW = datetime(2026, 11, 30, 13, 41, 30)
HOUR = datetime(2026, 11, 30, 13)
HOSTILE = "<script>alert('x')</script> \"&/?#%2F ü"


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text, of a page."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.text = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag, **attrs):
        return [
            a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())
        ]


# -- rendering ----------------------------------------------------------------------------


def test_score_buckets_and_grey_for_no_rows():
    assert render.score_bucket(1.0)[1] == render.score_bucket(0.99)[1] == "#1a7f37"
    assert render.score_bucket(0.95)[1] == render.score_bucket(0.9)[1] == "#7bc86c"
    assert render.score_bucket(0.8999)[1] == render.score_bucket(0.75)[1] == "#f2d25c"
    assert render.score_bucket(0.6)[1] == "#f0883e"
    assert render.score_bucket(0.49)[1] == render.score_bucket(0.0)[1] == "#cf222e"
    assert render.score_bucket(None) == render.NO_DATA
    # each bucket its own colour, and none grey
    colours = [b[2] for b in render.SCORE_BUCKETS]
    assert len(set(colours)) == len(colours) and render.NO_DATA[1] not in colours


def test_heatmap_has_a_cell_per_sensor_and_hour_coloured_by_its_mean_and_linked():
    hours = render.heatmap_hours(NOW)
    assert len(hours) == 24 and hours[-1] == HOUR and hours[0] == HOUR - timedelta(hours=23)
    rows = render.sensor_rows([Sensor("Sensor 1"), Sensor("Sensor 10"), Sensor("Sensor 2")], [])
    scores = [
        HourScore("Sensor 1", HOUR, 0.995, 41),
        HourScore("Sensor 2", HOUR - timedelta(hours=1), 0.42, 60),
        HourScore("Sensor 9", HOUR, 0.8, 3),  # has scores, not in the list: still a row
    ]
    page = Tags(render.heatmap(rows, hours, scores))
    cells = page.find("a", **{"class": "cell"})
    assert len(cells) == 4 * 24
    by = {(c["data-sensor"], c["data-hour"]): c for c in cells}
    assert [s for s, h in by if h == "2026-11-30T13"] == [
        "Sensor 1",
        "Sensor 2",
        "Sensor 10",
        "Sensor 9",
    ]
    good = by[("Sensor 1", "2026-11-30T13")]
    assert "background:#1a7f37" in good["style"] and good["data-score"] == "0.9950"
    assert good["href"] == "/sensors/Sensor%201?hour=2026-11-30T13"
    bad = by[("Sensor 2", "2026-11-30T12")]
    assert "background:#cf222e" in bad["style"] and "60 min" in bad["title"]
    empty = by[("Sensor 10", "2026-11-30T13")]
    assert f"background:{render.NO_DATA[1]}" in empty["style"] and empty["data-score"] == ""
    assert empty["href"] == "/sensors/Sensor%2010?hour=2026-11-30T13"


def test_hostile_sensor_ids_are_text_and_their_links_round_trip():
    rows = render.sensor_rows(
        [Sensor(HOSTILE, description="<b>bold</b>")],
        [SensorStatus(HOSTILE, "degraded", NOW - timedelta(seconds=42), 0.5, NOW)],
    )
    text = render.overview(
        now=NOW,
        rows=rows,
        hours=render.heatmap_hours(NOW),
        scores=[HourScore(HOSTILE, HOUR, 0.5, 1)],
    )
    assert "<script>" not in text and "<b>bold" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    page = Tags(text)
    links = [a["href"] for a in page.find("a") if a.get("href", "").startswith("/sensors/")]
    assert links and all(unquote(urlsplit(h).path[len("/sensors/") :]) == HOSTILE for h in links)
    assert all("?" not in urlsplit(h).path and "#" not in h for h in links)
    assert "42 s ago" in "".join(page.text)
    assert [a["data-status"] for a in page.find("span") if "data-status" in a] == [
        "degraded",
        "degraded",
    ]

    minutes = [Minute(HOUR, HOUR + timedelta(minutes=1), 60.0, 60, 30, 30, 0, 0, 0, 0.5, 2, NOW)]
    hour_page = render.sensor_hour(
        now=NOW, sensor_id=HOSTILE, hour=HOUR, minutes=minutes, row=rows[0]
    )
    assert "<script>" not in hour_page
    assert 'data-minute="13:00"' in hour_page


def test_sensor_hour_lists_every_figure_of_every_minute():
    minutes = [
        Minute(
            HOUR + timedelta(minutes=i),
            HOUR + timedelta(minutes=i + 1),
            60.0,
            61,
            50,
            9,
            2,
            3,
            1,
            0.8,
            1 + i,
            None,
        )
        for i in range(3)
    ]
    page = Tags(render.sensor_hour(now=NOW, sensor_id="S", hour=HOUR, minutes=minutes, row=None))
    header = [t for t in page.text if t in render.MINUTE_FIGURES]
    assert header == list(render.MINUTE_FIGURES)
    assert len(page.find("tr")) == 1 + 3
    text = "".join(page.text)
    assert "13:02" in text and "3 minutes with a row" in text
    assert [a["href"] for a in page.find("a") if "?hour" in a["href"]] == [
        "/sensors/S?hour=2026-11-30T12",
        "/sensors/S?hour=2026-11-30T14",
    ]


def test_sensors_without_a_status_are_unknown_and_order_is_natural():
    rows = render.sensor_rows(
        [Sensor("Sensor 10"), Sensor("Sensor 2", description="Kitchen")],
        [
            SensorStatus("Sensor 2", "ok", NOW, 1.0, NOW),
            SensorStatus("Gone", "silent", None, 0, NOW),
        ],
    )
    assert [(r.sensor_id, r.status) for r in rows] == [
        ("Gone", "silent"),
        ("Sensor 2", "ok"),
        ("Sensor 10", "unknown"),
    ]
    assert rows[1].description == "Kitchen"


def test_ago():
    assert render.ago(NOW, NOW - timedelta(seconds=5)) == "5 s ago"
    assert render.ago(NOW, NOW - timedelta(minutes=5)) == "5 min ago"
    assert render.ago(NOW, NOW - timedelta(hours=5)) == "5 h ago"
    assert render.ago(NOW, None) == "never"


# -- the catalogue ----------------------------------------------------------------------

DATASETS = [
    {
        "name": "iot.readings",
        "kind": "topic",
        "purpose": "Every accepted sensor reading",
        "columns": [{"name": "dt", "type": "string", "description": "Event time"}],
    },
    {
        "name": "raw.readings",
        "kind": "table",
        "purpose": "Every accepted sensor reading, exactly once",
        "partitioning": "day(ts)",
        "columns": [
            {"name": "sensor_id", "type": "string", "description": "Sensor id"},
            {"name": "ts", "type": "timestamp[us]", "description": "Event time, UTC"},
            {"name": "event_date", "type": "date32[day]", "description": "UTC date of ts"},
        ],
        "example_sql": "SELECT 1",
    },
    {"name": "raw.rejected", "kind": "table", "purpose": "Dead letters", "columns": []},
    {"name": "curated.sensor_status", "kind": "view", "purpose": "Status now", "columns": []},
    {"name": "<img src=x onerror=alert(1)>", "kind": "view", "purpose": "hostile", "columns": []},
]


def test_search_matches_every_word_in_name_purpose_and_columns():
    names = lambda q: [d["name"] for d in search(DATASETS, q)]  # noqa: E731
    assert names("") == names("   ") == [d["name"] for d in DATASETS]
    assert names("readings") == ["iot.readings", "raw.readings"]
    assert names("READINGS exactly") == ["raw.readings"]
    assert names("event time") == ["iot.readings", "raw.readings"]  # column descriptions
    assert names("event_date") == ["raw.readings"]  # column names
    assert names("dead") == ["raw.rejected"]
    assert names("nothing-like-this") == []


def test_catalogue_list_hides_what_the_query_does_not_match_and_escapes_names():
    state = valid_catalogue(DATASETS)
    text = render.catalogue_list(
        now=NOW,
        datasets=state,
        shown=search(DATASETS, "readings"),
        query='readings"><script>',
        state=_state(),
        source="http://jobs",
    )
    page = Tags(text)
    rows = page.find("tr")[1:]
    assert ["hidden" in r for r in rows] == [False, False, True, True, True]
    assert all(r["data-search"] == r["data-search"].lower() for r in rows)
    assert page.find("input", id="q")[0]["value"] == 'readings"><script>'
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "/catalogue/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E" in text
    assert "2 of 5 datasets" in text
    assert "<script>" in text and text.count("<script>") == 1  # the inline filter only


def _state():
    from portal.catalogue import CatalogueState

    return CatalogueState(DATASETS, NOW, None, None)


def test_the_real_catalogue_is_a_valid_one():
    from stream_jobs.catalogue import datasets

    real = json.loads(json.dumps([d.as_dict() for d in datasets()]))
    assert valid_catalogue(real) == real
    for bad in ({"name": "x"}, [{"name": 1, "kind": "table"}], [{"kind": "table"}], "[]"):
        with pytest.raises(ValueError):
            valid_catalogue(bad)


def test_catalogue_keeps_its_last_copy_while_the_source_fails():
    answers = [DATASETS, OSError("refused"), {"not": "a list"}, DATASETS[:1]]

    async def fetch():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = iter(NOW + timedelta(seconds=i) for i in range(10))
    cat = Catalogue(
        fetch, source="http://jobs/catalogue.json", refresh_s=60, clock=lambda: next(clock)
    )
    assert cat.state.status == "unavailable"

    async def go():
        s1 = await cat.refresh()
        assert (s1.status, len(s1.datasets), s1.fetched_at) == ("ok", 5, NOW)
        s2 = await cat.refresh()
        assert s2.status == "stale" and s2.datasets == DATASETS and "refused" in s2.error
        assert s2.failing_since == NOW + timedelta(seconds=1)
        s3 = await cat.refresh()
        assert s3.status == "stale" and s3.failing_since == NOW + timedelta(seconds=1)
        assert "not a list" in s3.error
        s4 = await cat.refresh()
        assert s4.status == "ok" and len(s4.datasets) == 1 and s4.error is None

    asyncio.run(go())


def test_topic_contracts_and_examples():
    c = contract("iot.readings")
    assert c.value["$id"].startswith("iot.readings.v") and c.headers is not None
    dlq = contract("iot.readings.dlq")
    assert dlq.value is None and dlq.headers is not None
    assert example_of({"examples": [{"id": "S"}]}) == {"id": "S"}
    assert example_of(
        {"required": ["a"], "properties": {"a": {"examples": [1]}, "b": {"examples": [2]}}}
    ) == {"a": 1, "b": 2}
    assert example_of({"required": ["a", "c"], "properties": {"a": {"examples": [1]}}}) is None
    assert example_of(None) is None
    catalogued = {"key": "S", "value": "raw text", "headers": {"reason": "bad"}}
    assert example_message({"example": catalogued}, dlq) == catalogued
    assert example_message({}, contract("iot.quality.status"))["value"]["status"]
    assert example_message({}, dlq) is None
    page = render.contract_html(dlq, catalogued)
    assert "raw text" in page and "&quot;bad&quot;" in page and "no schema" in page


def test_topic_names_follow_the_settings():
    s = PortalSettings(_env_file=None, kafka_topic_readings="x.readings")
    names = topic_names(s)
    assert names["iot.readings"] == "x.readings" and names["iot.sensors"] == "iot.sensors"


# -- SQL ------------------------------------------------------------------------------------


class FakeSql:
    def __init__(self, answers):
        self.answers, self.sent = answers, []

    def __call__(self, sql):
        self.sent.append(sql)
        for pattern, rows in self.answers:
            if re.search(pattern, sql):
                if isinstance(rows, Exception):
                    raise rows
                return rows
        raise AssertionError(f"unexpected SQL: {sql}")


def warehouse(answers):
    sql = FakeSql(answers)
    return TrinoWarehouse(query=sql, catalog="iceberg", raw="raw_t", curated="curated_t"), sql


def test_sensor_ids_are_sql_literals_and_minutes_are_read():
    w, sql = warehouse(
        [
            (
                "sensor_quality_1m",
                [[HOUR, HOUR + timedelta(minutes=1), 60.0, 60, 59, 1, 0, 0, 0, 0.98, 2, NOW]],
            )
        ]
    )
    got = w.minutes("it's'; DROP TABLE x; --", HOUR)
    assert got[0].valid == 59 and got[0].revision == 2 and got[0].score == 0.98
    assert "sensor_id = 'it''s''; DROP TABLE x; --'" in sql.sent[0]
    assert '"iceberg"."curated_t"."sensor_quality_1m"' in sql.sent[0]
    assert "window_date = DATE '2026-11-30'" in sql.sent[0]
    assert "window_start >= TIMESTAMP '2026-11-30 13:00:00.000000'" in sql.sent[0]
    assert "window_start < TIMESTAMP '2026-11-30 14:00:00.000000'" in sql.sent[0]


def test_table_facts_come_from_iceberg_metadata_not_a_scan():
    w, sql = warehouse(
        [
            (r'"readings\$files"', [[3, 1234, 99_000, "2026-11-30T13:41:29.5"]]),
            (r'"readings\$snapshots"', [[NOW]]),
        ]
    )
    ref = DatasetRef("raw.readings", "table", (("sensor_id", "string"), ("ts", "timestamp[us]")))
    facts = w.facts(ref, NOW)
    assert (facts.rows, facts.files, facts.bytes) == (1234, 3, 99_000)
    assert (
        facts.newest == datetime(2026, 11, 30, 13, 41, 29, 500000) and facts.newest_column == "ts"
    )
    assert '"iceberg"."raw_t"."readings$files"' in sql.sent[0]
    assert "'$.ts.upper_bound'" in sql.sent[0] and "content = 0" in sql.sent[0]
    assert not any('count(*) FROM "iceberg"."raw_t"."readings"' in s for s in sql.sent)


def test_views_are_counted_only_without_a_date_column():
    w, sql = warehouse(
        [
            (
                "SHOW COLUMNS",
                [["window_start", "timestamp(6)", "", ""], ["window_date", "date", "", ""]],
            ),
            ("max", [[HOUR]]),
        ]
    )
    facts = w.facts(DatasetRef("curated.readings_1m", "view"), NOW)
    assert facts.rows is None and facts.newest == HOUR and facts.columns[0].name == "window_start"
    assert "WHERE \"window_date\" >= DATE '2026-11-29'" in sql.sent[-1]
    assert "count(*)" not in sql.sent[-1]

    w, sql = warehouse(
        [
            (
                "SHOW COLUMNS",
                [["sensor_id", "varchar", "", ""], ["last_reading_at", "timestamp(6)", "", ""]],
            ),
            ("count", [[5, HOUR]]),
        ]
    )
    facts = w.facts(DatasetRef("curated.sensor_status", "view"), NOW)
    assert facts.rows == 5 and facts.newest == HOUR


def test_names_that_are_not_plain_identifiers_are_refused():
    w, sql = warehouse([])
    for name in ('raw.x"; DROP', "nozone", "other.readings"):
        with pytest.raises(Unavailable):
            w.facts(DatasetRef(name, "table", (("ts", "timestamp[us]"),)), NOW)
    assert sql.sent == []


# -- the cache and the Data Docs ------------------------------------------------------------


def test_cache_asks_once_per_ttl_and_keeps_failures():
    calls = []
    t = [0.0]

    def compute():
        calls.append(1)
        if len(calls) == 2:
            raise Unavailable("down")
        return len(calls)

    async def go():
        with ThreadPoolExecutor(2) as pool:
            cache = TtlCache(10, pool, clock=lambda: t[0])
            assert await asyncio.gather(*(cache.get("k", compute) for _ in range(5))) == [1] * 5
            t[0] = 11
            for _ in range(2):
                with pytest.raises(Unavailable):
                    await cache.get("k", compute)
            t[0] = 22
            assert await cache.get("k", compute) == 3

    asyncio.run(go())
    assert len(calls) == 3


def test_docs_files_stay_inside_their_directory(tmp_path):
    root = tmp_path / "docs"
    (root / "validations" / "run").mkdir(parents=True)
    (root / "index.html").write_text("index")
    (root / "validations" / "run" / "a.html").write_text("a")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link").symlink_to(tmp_path / "secret.txt")
    assert resolve(root, "") == (root / "index.html").resolve()
    assert resolve(root, "validations/run/a.html") == (root / "validations/run/a.html").resolve()
    for bad in (
        "../secret.txt",
        "validations/../../secret.txt",
        "/etc/passwd",
        "link",
        ".x",
        "nope",
    ):
        assert resolve(root, bad) is None, bad


# -- the routes over fakes ---------------------------------------------------------------------


class FakeWarehouse:
    def __init__(self, *, down=False):
        self.down = down
        self.asked = []

    def _check(self, what):
        self.asked.append(what)
        if self.down:
            raise Unavailable("Trino at x:1 unreachable: refused")

    def ping(self):
        self._check("ping")

    def sensors(self):
        self._check("sensors")
        return [Sensor("Sensor 1", "temperature", "C", "Kitchen"), Sensor(HOSTILE)]

    def statuses(self):
        self._check("statuses")
        return [
            SensorStatus("Sensor 1", "ok", NOW - timedelta(seconds=30), 1.0, NOW),
            SensorStatus(HOSTILE, "degraded", NOW - timedelta(seconds=30), 0.4, NOW),
        ]

    def hour_scores(self, since, until):
        self._check("hours")
        return [HourScore("Sensor 1", HOUR, 1.0, 41), HourScore(HOSTILE, HOUR, 0.4, 41)]

    def minutes(self, sensor_id, hour):
        self._check(("minutes", sensor_id, hour))
        return [Minute(hour, hour + timedelta(minutes=1), 60.0, 60, 20, 40, 0, 0, 0, 0.33, 1, NOW)]

    def quality_summary(self, now):
        self._check("quality")
        return QualitySummary(now, 2, 82, 0.7, 100, 80, 20, 0, 0, 0, HOUR, {"ok": 1})

    def facts(self, dataset, now):
        self._check(("facts", dataset.name))
        return Facts(
            checked_at=now, rows=1234, newest=now - timedelta(seconds=3), newest_column="ts"
        )


class FakeOffsets:
    def offsets(self, topic):
        return [PartitionOffsets(0, 0, 10), PartitionOffsets(1, 5, 7)]


def run_client(tmp_path, check, *, down=False, docs=False, catalogue=DATASETS):
    async def fetch():
        if isinstance(catalogue, Exception):
            raise catalogue
        return catalogue

    async def go():
        wh = FakeWarehouse(down=down)
        with ThreadPoolExecutor(2) as pool:
            portal = Portal(
                warehouse=wh,
                offsets=FakeOffsets(),
                catalogue=Catalogue(fetch, source="http://jobs/catalogue.json", refresh_s=60),
                docs_dir=tmp_path / "data_docs",
                cache=TtlCache(10, pool),
                topics={"iot.readings": "t.readings"},
                clock=lambda: NOW,
            )
            await portal.catalogue.refresh()
            if docs:
                (tmp_path / "data_docs" / "expectations").mkdir(parents=True)
                (tmp_path / "data_docs" / "index.html").write_text("<h1>GE index</h1>")
                (tmp_path / "data_docs" / "expectations" / "index.html").write_text("suite")
            async with TestClient(TestServer(make_app(portal))) as client:
                await check(client, wh)

    asyncio.run(go())


def test_routes_over_a_fake_warehouse(tmp_path):
    async def check(client, wh):
        r = await client.get("/")
        text = await r.text()
        assert r.status == 200 and "Kitchen" in text and "<script>alert" not in text
        assert "no run yet" in text and 'href="/quality/docs/"' in text
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        assert "http://" not in text and "https://" not in text  # nothing from elsewhere

        # a hostile id through the URL, as the page links it (%2F, ?, # included)
        url = render.sensor_url(HOSTILE, HOUR)
        r = await client.get(url)
        text = await r.text()
        assert r.status == 200, text
        assert ("minutes", HOSTILE, HOUR) in wh.asked
        assert 'data-minute="13:00"' in text and 'data-status="degraded"' in text
        r = await client.get("/sensors/Sensor%201?hour=2026-13-40T99")
        assert r.status == 400
        r = await client.get("/sensors/Sensor%201?hour=tomorrow")
        assert r.status == 400

        r = await client.get("/catalogue", params={"q": "exactly"})
        text = await r.text()
        assert r.status == 200 and "1 of 5 datasets" in text
        r = await client.get("/catalogue.json", params={"q": "readings"})
        body = await r.json()
        assert [d["name"] for d in body["datasets"]] == ["iot.readings", "raw.readings"]
        assert body["datasets"][1]["url"] == "/catalogue/raw.readings"
        assert body["catalogue"]["status"] == "ok" and "live" not in body["datasets"][0]
        body = await (await client.get("/catalogue.json?facts=1&q=raw.readings")).json()
        assert body["datasets"][0]["live"]["facts"]["rows"] == 1234

        r = await client.get("/catalogue/raw.readings")
        text = await r.text()
        assert r.status == 200 and "1,234" in text and "(3 s ago)" in text
        assert "Latest quality figures" in text and "SELECT 1" in text
        body = await (await client.get("/catalogue/raw.readings.json")).json()
        assert body["live"]["facts"]["rows"] == 1234
        assert body["live"]["facts"]["newest_age_seconds"] == 3.0
        assert body["live"]["facts"]["quality"]["mean_score"] == 0.7
        assert body["live"]["facts"]["newest"] == "2026-11-30T13:41:27Z"

        body = await (await client.get("/catalogue/iot.readings.json")).json()
        assert body["live"]["kafka"] == {
            "topic": "t.readings",
            "messages": 12,
            "partitions": [
                {"partition": 0, "low": 0, "high": 10},
                {"partition": 1, "low": 5, "high": 7},
            ],
        }
        assert body["contract"]["value_schema"]["$id"].startswith("iot.readings")
        text = await (await client.get("/catalogue/iot.readings")).text()
        assert "12 messages held in Kafka" in text and "JSON Schema of the value" in text

        hostile = render.dataset_url("<img src=x onerror=alert(1)>")
        r = await client.get(hostile)
        assert r.status == 200 and "<img src=x" not in await r.text()
        assert (await client.get("/catalogue/nope")).status == 404
        assert (await client.get("/catalogue/nope.json")).status == 404
        assert (await client.get("/no/such/page")).status == 404

        r = await client.get("/quality/docs/")
        assert r.status == 404 and "No quality run yet" in await r.text()
        assert "make quality" in await r.text()

        assert await (await client.get("/health")).json() == {
            "healthy": True,
            "trino": "ok",
            "catalogue": "ok",
            "catalogue_fetched_at": (await (await client.get("/health")).json())[
                "catalogue_fetched_at"
            ],
            "quality_docs": "none",
        }

        # Every response counted by its class, served to Prometheus.
        metrics = await (await client.get("/metrics")).text()
        assert 'iot_portal_responses_total{status="4xx"}' in metrics
        assert 'iot_portal_responses_total{status="2xx"}' in metrics
        assert "process_resident_memory_bytes" in metrics

    run_client(tmp_path, check)


def test_trino_down_degrades_pages_to_notes_and_health_stays_200(tmp_path):
    async def check(client, wh):
        r = await client.get("/")
        text = await r.text()
        assert r.status == 200 and "unreachable" in text and "No sensors known yet" in text
        r = await client.get("/catalogue/raw.readings")
        assert r.status == 200 and "live facts not available" in await r.text()
        r = await client.get("/health")
        body = await r.json()
        assert r.status == 200 and body["healthy"] is True and body["trino"] == "unreachable"

    run_client(tmp_path, check, down=True)


def test_no_catalogue_yet_is_said_and_the_data_docs_are_served(tmp_path):
    async def check(client, wh):
        r = await client.get("/catalogue")
        assert r.status == 503 and "not available yet" in await r.text()
        r = await client.get("/catalogue/raw.readings.json")
        assert r.status == 503 and (await r.json())["catalogue"]["status"] == "unavailable"
        assert (await (await client.get("/health")).json())["catalogue"] == "unavailable"

        r = await client.get("/quality/docs/")
        assert r.status == 200 and await r.text() == "<h1>GE index</h1>"
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]  # nothing remote
        r = await client.get("/quality/docs", allow_redirects=False)
        assert r.status == 302 and r.headers["Location"] == "/quality/docs/"
        r = await client.get("/quality/docs/expectations", allow_redirects=False)
        assert r.status == 302 and r.headers["Location"] == "/quality/docs/expectations/"
        assert await (await client.get("/quality/docs/expectations/")).text() == "suite"
        assert (await client.get("/quality/docs/..%2F..%2Fetc%2Fpasswd")).status == 404
        assert (await client.get("/quality/latest.json")).status == 404  # no summary yet
        (tmp_path / "latest.json").write_text('{"success": false}')
        r = await client.get("/quality/latest.json")
        assert r.status == 200 and (await r.json()) == {"success": False}

    run_client(tmp_path, check, docs=True, catalogue=OSError("refused"))
