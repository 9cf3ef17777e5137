"""The figures `make status` prints, from two scrapes of our services' /metrics.

Pure: text in, lines out (unit-tested); the scraping is in local.stack.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

# name -> {labels (sorted pairs) -> value}
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def parse(text: str) -> Samples:
    out: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name][tuple(sorted(s.labels.items()))] = s.value
    return out


def _one(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get(name, {}).get(tuple(sorted(labels.items())))


def _by(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(k).get(label, ""): v for k, v in samples.get(name, {}).items()}


def _rate(before: Samples, after: Samples, name: str, seconds: float, **labels: str) -> str:
    a, b = _one(before, name, **labels), _one(after, name, **labels)
    if a is None or b is None or seconds <= 0:
        return "-"
    return f"{max(0.0, b - a) / seconds:,.0f}/s"


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "nothing archived yet"
    return f"{seconds:,.1f} s behind" if seconds < 120 else f"{seconds / 60:,.0f} min behind"


def _reasons(counts: Mapping[str, float]) -> str:
    shown = [f"{k} {v:,.0f}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v]
    return ", ".join(shown) or "none"


def summary(
    bridge: tuple[str, str] | None,
    jobs: tuple[str, str] | None,
    seconds: float,
    *,
    generator: tuple[str, str] | None = None,
) -> list[str]:
    """Lines for a terminal; each service as (first scrape, second scrape `seconds` later),
    None when it did not answer (the generator: left out)."""
    lines: list[str] = []
    if generator is not None:
        g0, g1 = parse(generator[0]), parse(generator[1])
        lines.append(
            f"  generator     {_rate(g0, g1, 'iot_generator_published_total', seconds)} published,"
            f" {_rate(g0, g1, 'iot_generator_confirmed_total', seconds)} confirmed by the broker"
        )
    if bridge is None:
        lines.append("  bridge: /metrics did not answer")
    else:
        b0, b1 = parse(bridge[0]), parse(bridge[1])
        connected = _one(b1, "iot_bridge_mqtt_connected") == 1
        lines += [
            f"  bridge        {'connected to MQTT' if connected else 'NOT connected to MQTT'},"
            f" {_rate(b0, b1, 'iot_bridge_received_total', seconds)} in,"
            f" {_rate(b0, b1, 'iot_bridge_forwarded_total', seconds)} to Kafka,"
            f" {_one(b1, 'iot_bridge_in_flight') or 0:,.0f} in flight,"
            f" memory {_mib(_one(b1, 'process_resident_memory_bytes'))}",
            f"    dead letters: {_reasons(_by(b1, 'iot_bridge_dead_letters_total', 'reason'))};"
            f" Kafka errors {_one(b1, 'iot_bridge_kafka_errors_total') or 0:,.0f}",
        ]
    if jobs is None:
        lines.append("  stream jobs: /metrics did not answer")
        return lines
    j0, j1 = parse(jobs[0]), parse(jobs[1])
    fresh = _by(j1, "iot_jobs_freshness_seconds", "table")
    lag = _by(j1, "iot_jobs_archive_lag", "table")
    lines.append(f"  stream jobs   memory {_mib(_one(j1, 'process_resident_memory_bytes'))}")
    for table, rows in sorted(_by(j1, "iot_jobs_archive_rows_total", "table").items()):
        lines.append(
            f"    {table:<20} {rows:>12,.0f} archived,"
            f" {_rate(j0, j1, 'iot_jobs_archive_rows_total', seconds, table=table)},"
            f" lag {lag.get(table, 0):,.0f}, {_ago(fresh.get(table))}"
        )
    lines += [
        f"    1-minute means: {_one(j1, 'iot_jobs_readings_1m_emitted_total') or 0:,.0f}"
        f" windows emitted, lag {_one(j1, 'iot_jobs_readings_1m_lag') or 0:,.0f};"
        f" quality: {_one(j1, 'iot_jobs_quality_1m_emitted_total') or 0:,.0f} emitted",
        f"    dead letters read: {_reasons(_by(j1, 'iot_jobs_dead_letters_total', 'reason'))}",
    ]
    return lines


def refused_logins(broker_log: str) -> int:
    """Connections Mosquitto refused (bad login, no account): it counts none itself,
    but logs each at its default level."""
    return broker_log.count(" disconnected, not authorised.")
