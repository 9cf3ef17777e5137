"""Prometheus metrics of our services, read from the counters they already keep.

A service keeps its figures in `Counters` dataclasses (iot_common.stats), which its
/health shows; `CountersCollector` turns them into Prometheus metrics when a scrape
comes, so no hot path pays for a metric library. Guarantees:
- a field's kind is declared once, beside the field (`counter`, `gauge`, `by_label`);
  an undeclared int is a counter, an undeclared float or bool a gauge, anything
  else (lists, text) is left out;
- names are `iot_<service>_<field>` (counters end in `_total`), with the labels the
  service gives each `Counters` (a job, a table), so one name never changes shape;
- each service has a registry of its own with the process collector (resident
  memory, CPU seconds, open files): the soak watches `process_resident_memory_bytes`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from iot_common.stats import Counters

__all__ = [
    "CONTENT_TYPE",
    "CountersCollector",
    "GaugeFunction",
    "Sample",
    "by_label",
    "counter",
    "gauge",
    "render",
    "service_registry",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# (labels, counters) pairs a collector reads at each scrape.
Sample = tuple[Mapping[str, str], Counters]


def counter(help: str) -> Any:
    """An int field that only grows (resets only when the process restarts)."""
    return dataclasses.field(default=0, metadata={"kind": "counter", "help": help})


def gauge(help: str, default: float = 0) -> Any:
    """A field that goes up and down (in flight, connected, a timestamp)."""
    return dataclasses.field(default=default, metadata={"kind": "gauge", "help": help})


def by_label(label: str, help: str) -> Any:
    """A `dict[str, int]` of counters, one series per key under `label` (keys must
    come from a bounded set, e.g. reason codes, never from message content)."""
    return dataclasses.field(
        default_factory=dict, metadata={"kind": "counter", "label": label, "help": help}
    )


def _kind(f: dataclasses.Field[Any], value: object) -> str | None:
    declared = f.metadata.get("kind")
    if declared:
        return str(declared)
    if isinstance(value, bool | float):
        return "gauge"
    if isinstance(value, int):
        return "counter"
    return None


class CountersCollector(Collector):
    """Metrics `<prefix>_<field>` from the `Counters` that `source` returns at each scrape."""

    def __init__(self, prefix: str, source: Callable[[], Iterable[Sample]]) -> None:
        self.prefix, self.source = prefix, source

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for labels, counters in self.source():
            for f in dataclasses.fields(counters):
                value = getattr(counters, f.name)
                kind = _kind(f, value)
                if kind is None:
                    continue
                name = f"{self.prefix}_{f.name}"
                help_text = f.metadata.get("help") or f.name.replace("_", " ")
                extra = f.metadata.get("label")
                names = [*labels, *([extra] if extra else [])]
                family = families.get(name)
                if family is None:
                    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                    family = families[name] = cls(name, help_text, labels=names)
                if extra:
                    for key, v in sorted(dict(value).items()):
                        family.add_metric([*labels.values(), str(key)], float(v))
                else:
                    family.add_metric(list(labels.values()), float(value))
        yield from families.values()


class GaugeFunction(Collector):
    """One gauge computed at scrape time, e.g. freshness: now minus a timestamp."""

    def __init__(
        self,
        name: str,
        help: str,
        labels: Iterable[str],
        values: Callable[[], Iterable[tuple[Iterable[str], float]]],
    ) -> None:
        self.name, self.help, self.labels, self.values = name, help, list(labels), values

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.help, labels=self.labels)
        for label_values, value in self.values():
            family.add_metric(list(label_values), value)
        yield family


def service_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry of one service: its collectors and the process's own figures."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    for c in collectors:
        registry.register(c)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text a scrape gets (Content-Type: CONTENT_TYPE)."""
    return _generate_latest(registry)
