"""Counters a service shows on its health endpoint: one shape for all of them."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class Counters:
    """A job's counters (subclasses declare the fields); `as_dict` is what /health shows."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
