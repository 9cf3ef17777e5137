"""The data contracts of our Kafka topics: a JSON Schema per topic's value (and
headers), versioned: `<topic>[.headers].v<N>.json`. A released version never
changes (RELEASED holds their SHA-256; a test enforces it): a change consumers
could not read is a new version, and a new version must keep what consumers of
the previous one rely on (iot_common.contracts.compatible, checked by a test).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NAME = re.compile(r"^(?P<subject>.+)\.v(?P<version>[0-9]+)\.json$")


def versions() -> dict[str, list[int]]:
    """subject (a topic, or `<topic>.headers`) -> its versions, ascending."""
    found: dict[str, list[int]] = {}
    for path in HERE.glob("*.json"):
        m = NAME.match(path.name)
        if m:
            found.setdefault(m["subject"], []).append(int(m["version"]))
    return {s: sorted(v) for s, v in sorted(found.items())}


@cache
def schema(subject: str, version: int | None = None) -> dict[str, Any]:
    """A subject's schema (the newest version unless one is named)."""
    version = version or versions()[subject][-1]
    loaded: dict[str, Any] = json.loads((HERE / f"{subject}.v{version}.json").read_text())
    return loaded


def _types(prop: dict[str, Any]) -> set[str]:
    t = prop.get("type", [])
    return {t} if isinstance(t, str) else set(t)


def compatible(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why messages valid under `new` could break a consumer of `old` (empty: none).
    Rules: what `old` requires stays required; a property keeps its name and takes
    no type `old` did not allow; no new constraint on extra properties."""
    problems = []
    for name in old.get("required", []):
        if name not in new.get("required", []):
            problems.append(f"'{name}' is no longer required")
    for name, prop in old.get("properties", {}).items():
        if name not in new.get("properties", {}):
            problems.append(f"'{name}' was removed")
            continue
        widened = _types(new["properties"][name]) - _types(prop)
        if _types(prop) and widened:
            problems.append(f"'{name}' may now be {sorted(widened)}")
    if old.get("additionalProperties", True) is False and new.get("additionalProperties", True):
        problems.append("extra properties are now allowed")
    return problems
