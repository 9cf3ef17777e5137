"""The catalogue as the portal holds it: fetched from the stream jobs, kept, searched.

The stream jobs describe every dataset (`GET <STREAM_JOBS_URL>/catalogue.json`,
the output of `python -m stream_jobs.catalogue`); the portal never imports them.
Guarantees:
* a fetched copy replaces the held one only when it is a list of datasets, each
  with a string `name` and `kind`; anything else is an error and the last good
  copy stays, with the error and since when it lasts (`Catalogue.state`);
* the search (`search`) is pure: every word of the query must occur, case
  aside, in the name, purpose or a column's name or description;
* a topic's JSON Schemas come from iot_common's contracts (value and headers);
  its example message is the catalogue's `example`, else the schema's own
  `examples`, else None (no invented data).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from iot_common import contracts

log = logging.getLogger(__name__)

Dataset = dict[str, Any]  # one entry of the catalogue, as the stream jobs wrote it


def valid_catalogue(doc: Any) -> list[Dataset]:
    """The datasets of a fetched document; ValueError when it is not a catalogue."""
    if not isinstance(doc, list):
        raise ValueError("not a list of datasets")
    for entry in doc:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("kind"), str)
        ):
            raise ValueError(f"not a dataset: {str(entry)[:100]}")
    return doc


def search_text(dataset: Dataset) -> str:
    """What the search looks in, lower-cased: name, purpose, columns and their docs."""
    parts = [str(dataset.get("name", "")), str(dataset.get("purpose", ""))]
    for column in dataset.get("columns") or []:
        if isinstance(column, dict):
            parts += [str(column.get("name", "")), str(column.get("description", ""))]
    return " ".join(parts).lower()


def search(datasets: Iterable[Dataset], query: str) -> list[Dataset]:
    """The datasets where every word of `query` occurs (all of them for a blank query)."""
    words = query.lower().split()
    return [d for d in datasets if all(w in search_text(d) for w in words)]


def find(datasets: Iterable[Dataset], name: str) -> Dataset | None:
    return next((d for d in datasets if d.get("name") == name), None)


@dataclass(frozen=True)
class Contract:
    """A topic's JSON Schemas (value, headers: None when it has none) and an example."""

    value: dict[str, Any] | None
    headers: dict[str, Any] | None
    example: Any  # None: the contract gives no example


def example_of(schema: dict[str, Any] | None) -> Any:
    """The schema's first `examples` entry, else one made of its properties' own
    `examples` when every required property has one; else None."""
    if not schema:
        return None
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return examples[0]
    props = schema.get("properties") or {}
    made = {
        name: prop["examples"][0]
        for name, prop in props.items()
        if isinstance(prop, dict) and isinstance(prop.get("examples"), list) and prop["examples"]
    }
    required = schema.get("required") or []
    if made and all(name in made for name in required):
        return made
    return None


def contract(topic: str) -> Contract:
    """The newest contract of a topic (the subjects are the topic and <topic>.headers)."""
    known = contracts.versions()
    value = contracts.schema(topic) if topic in known else None
    headers = contracts.schema(f"{topic}.headers") if f"{topic}.headers" in known else None
    return Contract(value, headers, example_of(value))


def example_message(dataset: Dataset, found: Contract) -> dict[str, Any] | None:
    """A topic's example message {"key", "value", "headers"}: the catalogue's own
    (the stream jobs validate it against the contract), else the contract's example
    value, else None."""
    given = dataset.get("example")
    if isinstance(given, dict) and "value" in given:
        return given
    if found.example is not None:
        return {"value": found.example}
    return None


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class CatalogueState:
    """What the portal holds: the datasets of the last good fetch (None before one)."""

    datasets: list[Dataset] | None
    fetched_at: datetime | None  # when the held copy was fetched
    error: str | None  # why the last fetch failed (None: it succeeded)
    failing_since: datetime | None

    @property
    def status(self) -> str:
        """ok (fresh), stale (a copy, the source unreachable) or unavailable (no copy)."""
        if self.datasets is None:
            return "unavailable"
        return "stale" if self.error else "ok"


class Catalogue:
    """Holds the catalogue and refreshes it from `fetch` (the stream jobs)."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Any]],
        *,
        source: str,
        refresh_s: float,
        retry_s: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.fetch, self.source = fetch, source
        self.refresh_s, self.retry_s = refresh_s, min(retry_s, refresh_s)
        self.clock = clock
        self.state = CatalogueState(None, None, None, None)

    async def refresh(self) -> CatalogueState:
        now = self.clock()
        try:
            datasets = valid_catalogue(await self.fetch())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the source does, keep the copy
            reason = f"{type(exc).__name__}: {exc}"[:300]
            if self.state.error is None:
                log.warning("catalogue from %s not fetched: %s", self.source, reason)
            self.state = CatalogueState(
                self.state.datasets,
                self.state.fetched_at,
                reason,
                self.state.failing_since or now,
            )
        else:
            self.state = CatalogueState(datasets, now, None, None)
        return self.state

    async def run(self) -> None:
        """Refresh every refresh_s (every retry_s while it fails), until cancelled."""
        while True:
            state = await self.refresh()
            await asyncio.sleep(self.retry_s if state.error else self.refresh_s)
