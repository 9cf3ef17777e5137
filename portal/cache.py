"""Answers reused for a while: each page's data is asked of Trino (or Kafka) at
most once per `ttl_s` and key, however many browsers ask.

Concurrent requests for one key share one computation (a lock per key), failures
are kept as long as answers (an unreachable Trino is not asked again by every
request), and the blocking computations run in the given thread pool, never on
the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from typing import Any, TypeVar, cast

T = TypeVar("T")


class TtlCache:
    def __init__(
        self,
        ttl_s: float,
        executor: Executor,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1000,
    ) -> None:
        self.ttl_s, self.executor, self.clock = ttl_s, executor, clock
        self.max_keys = max_keys  # keys come from URLs (sensor ids, hours): bounded
        self._entries: dict[Hashable, tuple[float, bool, Any]] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}

    async def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """compute()'s value, or its exception raised again, as of at most ttl_s ago."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._entries.get(key)
            if entry is None or self.clock() - entry[0] >= self.ttl_s:
                loop = asyncio.get_running_loop()
                try:
                    entry = (self.clock(), True, await loop.run_in_executor(self.executor, compute))
                except Exception as exc:  # noqa: BLE001 - kept and raised to every caller
                    entry = (self.clock(), False, exc)
                self._remember(key, entry)
        ok, value = entry[1], entry[2]
        if not ok:
            raise value
        return cast(T, value)

    def _remember(self, key: Hashable, entry: tuple[float, bool, Any]) -> None:
        if len(self._entries) >= self.max_keys and key not in self._entries:
            now = self.clock()
            self._entries = {k: e for k, e in self._entries.items() if now - e[0] < self.ttl_s}
            if len(self._entries) >= self.max_keys:
                self._entries.clear()
            self._locks = {k: v for k, v in self._locks.items() if k in self._entries or k == key}
        self._entries[key] = entry
