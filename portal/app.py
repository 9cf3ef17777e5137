"""The portal's composition root: the aiohttp application and what it reads.

Routes (HTML unless .json):
  /                          each sensor's status and a 24-hour heatmap of the quality score
  /sensors/<id>?hour=<YYYY-MM-DDTHH>   that sensor-hour's minutes, every figure
  /catalogue[?q=]            every dataset, searchable; /catalogue.json the same for machines
                             (?facts=1: with each dataset's live facts)
  /catalogue/<name>          one dataset: description, columns, SQL or contract, live facts;
  /catalogue/<name>.json     the same as JSON
  /quality/docs/...          Great Expectations' Data Docs (QUALITY_DOCS_DIR), if built
  /health                    {"healthy": true, "trino": "ok" | "unreachable" | "off", ...}

Guarantees: a page never waits on the event loop for Trino or Kafka (their
clients block; they run in a thread pool) and asks each of them at most once per
FACTS_CACHE_SECONDS and question (portal.cache); Trino or the stream jobs being
down degrades a page to a note, never to an error of the portal; /health answers
200 whenever the process serves (liveness), and says what it cannot reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from iot_common.metrics import CONTENT_TYPE, CountersCollector, by_label, counter, service_registry
from iot_common.metrics import render as render_metrics
from iot_common.settings import KafkaSettings
from iot_common.stats import Counters
from portal import render
from portal.cache import TtlCache
from portal.catalogue import (
    Catalogue,
    Dataset,
    contract,
    example_message,
    find,
    search,
    utcnow,
)
from portal.docs import docs_ready, resolve
from portal.offsets import KafkaOffsets, PartitionOffsets, TopicOffsets
from portal.settings import PortalSettings
from portal.warehouse import (
    DatasetRef,
    Facts,
    QualitySummary,
    TrinoWarehouse,
    Unavailable,
    Warehouse,
    to_jsonable,
    trino_query,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

HOUR = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}$")
# A page that shows these gets the latest quality figures among its live facts.
QUALITY_DATASETS = ("raw.readings",)
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PREFIX = "/quality/docs/"


def topic_names(settings: KafkaSettings) -> dict[str, str]:
    """Catalogue topic name (the default) -> this install's name (KAFKA_TOPIC_*)."""
    out = {}
    for name, info in KafkaSettings.model_fields.items():
        if name.startswith("kafka_topic_") and isinstance(info.default, str):
            out[info.default] = str(getattr(settings, name))
    return out


def wants_quality(name: str) -> bool:
    return name in QUALITY_DATASETS or "quality" in name or name.endswith("sensor_status")


class Portal:
    """The request handlers and what they read (all given: tests give fakes)."""

    def __init__(
        self,
        *,
        warehouse: Warehouse | None,
        offsets: TopicOffsets | None,
        catalogue: Catalogue,
        docs_dir: Path,
        cache: TtlCache,
        topics: Mapping[str, str],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.warehouse, self.offsets, self.catalogue = warehouse, offsets, catalogue
        self.docs_dir, self.cache, self.topics, self.clock = docs_dir, cache, topics, clock

    # -- reading, through the cache ------------------------------------------------------

    async def ask(self, key: tuple[Any, ...], compute: Callable[[Warehouse], T]) -> T:
        warehouse = self.warehouse
        if warehouse is None:
            raise Unavailable("SQL is off (TRINO_HOST is empty)")
        return await self.cache.get(key, lambda: compute(warehouse))

    async def sensors_and_statuses(self, notes: list[str]) -> list[render.SensorRow]:
        sensors, statuses = await asyncio.gather(
            self.ask(("sensors",), lambda w: w.sensors()),
            self.ask(("statuses",), lambda w: w.statuses()),
            return_exceptions=True,
        )
        for found, what in ((sensors, "the sensor list"), (statuses, "the sensors' status")):
            if isinstance(found, Unavailable):
                notes.append(f"{what} is not available: {found}")
            elif isinstance(found, BaseException):
                raise found
        return render.sensor_rows(
            sensors if isinstance(sensors, list) else [],
            statuses if isinstance(statuses, list) else [],
        )

    # -- pages ---------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.Response:
        now = self.clock()
        notes: list[str] = []
        hours = render.heatmap_hours(now)
        since, until = hours[0], hours[-1] + timedelta(hours=1)
        rows, scores = await asyncio.gather(
            self.sensors_and_statuses(notes),
            self.ask(("hours", since), lambda w: w.hour_scores(since, until)),
            return_exceptions=True,
        )
        if isinstance(rows, BaseException):
            raise rows
        if isinstance(scores, Unavailable):
            notes.append(f"the quality scores are not available: {scores}")
            scores = []
        elif isinstance(scores, BaseException):
            raise scores
        text = render.overview(
            now=self.clock(),  # after the queries: "N s ago" is never negative
            rows=rows,
            hours=hours,
            scores=scores,
            notes=notes,
            docs_ready=docs_ready(self.docs_dir),
        )
        return html(text)

    async def sensor(self, request: web.Request) -> web.Response:
        now = self.clock()
        sensor_id = request.match_info["sensor_id"]
        given = request.query.get("hour", "")
        if given:
            if not HOUR.match(given):
                return html(render.error_page(400, "hour must be YYYY-MM-DDTHH", now), 400)
            try:
                hour = datetime.strptime(given, render.HOUR_PARAM)
            except ValueError:
                return html(render.error_page(400, "no such hour", now), 400)
        else:
            hour = now.replace(minute=0, second=0, microsecond=0)
        notes: list[str] = []
        rows = await self.sensors_and_statuses(notes)
        row = next((r for r in rows if r.sensor_id == sensor_id), None)
        try:
            minutes = await self.ask(
                ("minutes", sensor_id, hour), lambda w: w.minutes(sensor_id, hour)
            )
        except Unavailable as exc:
            notes.append(f"the minutes are not available: {exc}")
            minutes = []
        text = render.sensor_hour(
            now=self.clock(), sensor_id=sensor_id, hour=hour, minutes=minutes, row=row, notes=notes
        )
        return html(text)

    async def catalogue_page(self, request: web.Request) -> web.Response:
        now = self.clock()
        query = request.query.get("q", "")[:200]
        state = self.catalogue.state
        datasets = state.datasets or []
        text = render.catalogue_list(
            now=now,
            datasets=datasets,
            shown=search(datasets, query),
            query=query,
            state=state,
            source=self.catalogue.source,
        )
        return html(text, 503 if state.datasets is None else 200)

    async def catalogue_json(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "")[:200]
        state = self.catalogue.state
        shown = search(state.datasets or [], query)
        with_facts = request.query.get("facts", "") in ("1", "true", "yes")
        lives: list[dict[str, Any] | None] = [None] * len(shown)
        if with_facts:
            lives = list(await asyncio.gather(*(self.live(d) for d in shown)))
        body = {
            **self.catalogue_meta(),
            "query": query,
            "datasets": [
                render.as_json_dataset(d, url=render.dataset_url(str(d["name"])), live=live)
                for d, live in zip(shown, lives, strict=True)
            ],
        }
        return json_response(body, 503 if state.datasets is None else 200)

    def catalogue_meta(self) -> dict[str, Any]:
        state = self.catalogue.state
        return {
            "catalogue": {
                "source": self.catalogue.source,
                "status": state.status,
                "fetched_at": state.fetched_at,
                "error": state.error,
                "failing_since": state.failing_since,
            }
        }

    async def dataset(self, request: web.Request) -> web.Response:
        now = self.clock()
        name = request.match_info["name"]
        state = self.catalogue.state
        datasets = state.datasets or []
        found = find(datasets, name)
        as_json = False
        if found is None and name.endswith(".json"):
            found, as_json = find(datasets, name[: -len(".json")]), True
        if found is None:
            message = f"no dataset {name!r} in the catalogue"
            if state.datasets is None:
                message = "the catalogue is not available yet (the stream jobs do not answer)"
            status = 503 if state.datasets is None else 404
            if as_json or name.endswith(".json"):
                return json_response({"error": message, **self.catalogue_meta()}, status)
            return html(render.error_page(status, message, now), status)
        live = await self.live(found)
        if as_json:
            body = {
                **render.as_json_dataset(
                    found, url=render.dataset_url(str(found["name"])), live=live
                ),
                **self.catalogue_meta(),
            }
            if found.get("kind") == "topic":
                c = contract(str(found["name"]))
                body["contract"] = {
                    "value_schema": c.value,
                    "headers_schema": c.headers,
                    "example": example_message(found, c),
                }
            return json_response(body)
        facts = live.get("_facts")
        offsets = live.get("_offsets")
        text = render.dataset_page(
            now=self.clock(),
            dataset=found,
            facts=facts if isinstance(facts, Facts) else None,
            offsets=offsets if isinstance(offsets, list) else None,
            contract=contract(str(found["name"])) if found.get("kind") == "topic" else None,
            errors=live.get("errors", []),
            state=state,
            source=self.catalogue.source,
        )
        return html(text)

    async def live(self, dataset: Dataset) -> dict[str, Any]:
        """A dataset's live facts: for JSON (keys without '_'), and as objects for the page
        (`_facts`, `_offsets`); what could not be had is in `errors`. The questions
        (offsets or facts, and the quality figures) are asked at once."""
        now = self.clock()
        name, kind = str(dataset.get("name", "")), str(dataset.get("kind", ""))
        out: dict[str, Any] = {"errors": []}
        asked: dict[str, Awaitable[Any]] = {}
        if kind == "topic":
            topic = self.topics.get(name, name)
            asked["Kafka offsets"] = self.topic_offsets(topic)
        elif kind in ("table", "view"):
            columns = tuple(
                (str(c.get("name", "")), str(c.get("type", "")))
                for c in dataset.get("columns") or []
                if isinstance(c, dict)
            )
            ref = DatasetRef(name, kind, columns)
            asked["live facts"] = self.ask(("facts", ref), lambda w: w.facts(ref, now))
        if wants_quality(name):
            asked["quality figures"] = self.ask(("quality",), lambda w: w.quality_summary(now))
        answers = await asyncio.gather(*asked.values(), return_exceptions=True)
        facts: Facts | None = None
        quality: QualitySummary | None = None
        for what, answer in zip(asked, answers, strict=True):
            if isinstance(answer, Unavailable):
                out["errors"].append(f"{what} not available: {answer}")
            elif isinstance(answer, BaseException):
                raise answer
            elif isinstance(answer, Facts):
                facts = answer
            elif isinstance(answer, QualitySummary):
                quality = answer
            else:
                out["_offsets"] = answer
                out["kafka"] = {
                    "topic": self.topics.get(name, name),
                    "messages": sum(p.messages for p in answer),
                    "partitions": [asdict(p) for p in answer],
                }
        if quality is not None:
            facts = replace(facts or Facts(checked_at=now), quality=quality)
        if facts is not None:
            out["_facts"] = facts
            out["facts"] = asdict(facts)
            if facts.newest is not None:
                age = (self.clock() - facts.newest).total_seconds()
                out["facts"]["newest_age_seconds"] = round(age, 3)
        return out

    async def topic_offsets(self, topic: str) -> list[PartitionOffsets]:
        offsets = self.offsets
        if offsets is None:
            raise Unavailable("Kafka is off (KAFKA_BOOTSTRAP_SERVERS is empty)")
        return await self.cache.get(("offsets", topic), lambda: offsets.offsets(topic))

    async def docs(self, request: web.Request) -> web.StreamResponse:
        rel = request.match_info.get("path", "")
        now = self.clock()
        if not docs_ready(self.docs_dir):
            return html(render.no_quality_docs(self.docs_dir, now), 404)
        target = resolve(self.docs_dir, rel)
        if target is None:
            return html(render.error_page(404, f"no such file in the Data Docs: {rel}", now), 404)
        if (
            rel
            and not rel.endswith("/")
            and target.name == "index.html"
            and not rel.endswith("index.html")
        ):
            raise web.HTTPFound(DOCS_PREFIX + rel + "/")  # its relative links need the slash
        return web.FileResponse(target)

    async def quality_summary(self, request: web.Request) -> web.StreamResponse:
        """The latest quality run's summary (latest.json, beside the Data Docs)."""
        summary = self.docs_dir.parent / "latest.json"
        if not summary.is_file():
            return html(render.no_quality_docs(self.docs_dir, self.clock()), 404)
        return web.FileResponse(summary, headers={"Content-Type": "application/json"})

    async def health(self, request: web.Request) -> web.Response:
        trino = "off"
        if self.warehouse is not None:
            try:
                await self.ask(("ping",), lambda w: w.ping())
                trino = "ok"
            except Unavailable:
                trino = "unreachable"
        state = self.catalogue.state
        return json_response(
            {
                "healthy": True,
                "trino": trino,
                "catalogue": state.status,
                "catalogue_fetched_at": state.fetched_at,
                "quality_docs": "ready" if docs_ready(self.docs_dir) else "none",
            }
        )


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(to_jsonable(strip_private(body)), indent=2),
        status=status,
        content_type="application/json",
    )


def strip_private(value: Any) -> Any:
    """Drop the keys starting with '_' (objects for the HTML page, not for JSON)."""
    if isinstance(value, dict):
        return {k: strip_private(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [strip_private(v) for v in value]
    return value


@dataclass
class PortalStats(Counters):
    responses: dict[str, int] = by_label("status", "responses by status class (2xx, 4xx, 5xx)")
    errors: int = counter("requests that failed with an unforeseen error (logged)")


STATS: web.AppKey[PortalStats] = web.AppKey("stats", PortalStats)


@web.middleware
async def pages_of_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Errors as pages (404 for unknown paths; 500, logged, for a bug), and every page,
    the Data Docs too, forbids loading anything from elsewhere; each counted."""
    stats = request.app[STATS]
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = html(render.error_page(exc.status, exc.reason, utcnow()), exc.status)
    except Exception:
        stats.errors += 1
        log.exception("%s %s failed", request.method, request.path)
        response = html(
            render.error_page(500, "internal error (see the portal's log)", utcnow()), 500
        )
    status = f"{response.status // 100}xx"
    stats.responses[status] = stats.responses.get(status, 0) + 1
    # The Data Docs too: `make quality` strips their internet assets; the browser
    # refuses any that remain.
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def make_app(portal: Portal) -> web.Application:
    """The routes over `portal`; the catalogue refreshes in the background while it runs."""
    app = web.Application(middlewares=[pages_of_errors])
    stats = app[STATS] = PortalStats()
    registry = service_registry(CountersCollector("iot_portal", lambda: [({}, stats)]))

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=render_metrics(registry), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/", portal.overview)
    app.router.add_get("/sensors/{sensor_id:.+}", portal.sensor)
    app.router.add_get("/catalogue", portal.catalogue_page)
    app.router.add_get("/catalogue.json", portal.catalogue_json)
    app.router.add_get("/catalogue/{name}", portal.dataset)
    app.router.add_get("/quality/latest.json", portal.quality_summary)
    app.router.add_get("/quality/docs", docs_slash)
    app.router.add_get("/quality/docs/{path:.*}", portal.docs)
    app.router.add_get("/health", portal.health)
    app.router.add_get("/metrics", metrics)

    async def refresher(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(portal.catalogue.run(), name="catalogue")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(refresher)
    return app


async def docs_slash(request: web.Request) -> web.Response:
    raise web.HTTPFound(DOCS_PREFIX)  # the site's relative links need the slash


class HttpJson:
    """GET a URL and parse its JSON, through one aiohttp session (made in the loop)."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        async with self._session.get(self.url) as resp:
            resp.raise_for_status()
            return await resp.json(content_type=None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def create(settings: PortalSettings) -> web.Application:
    """The portal as the settings describe it: Trino, Kafka, the stream jobs' catalogue."""
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="portal-io")
    warehouse = None
    if settings.trino_host:
        warehouse = TrinoWarehouse(
            query=trino_query(
                login=settings.trino_login(),
                catalog=settings.trino_catalog,
                timeout_s=settings.trino_timeout_seconds,
            ),
            catalog=settings.trino_catalog,
            raw=settings.raw_schema,
            curated=settings.curated_schema,
        )
    offsets = (
        KafkaOffsets(settings.kafka_bootstrap_servers) if settings.kafka_bootstrap_servers else None
    )
    fetch = HttpJson(settings.stream_jobs_url.rstrip("/") + "/catalogue.json")
    portal = Portal(
        warehouse=warehouse,
        offsets=offsets,
        catalogue=Catalogue(fetch, source=fetch.url, refresh_s=settings.catalogue_refresh_seconds),
        docs_dir=settings.quality_docs_dir,
        cache=TtlCache(settings.facts_cache_seconds, executor),
        topics=topic_names(settings),
    )
    app = make_app(portal)

    async def close(_app: web.Application) -> None:
        await fetch.close()
        if offsets is not None:
            await asyncio.get_running_loop().run_in_executor(executor, offsets.close)
        executor.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(close)
    return app
