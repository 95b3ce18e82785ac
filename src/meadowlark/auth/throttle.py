"""Sliding-window login throttling per account and per client address (in process)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """Counts events per key within ``window`` seconds; bounded in memory by ``max_keys``."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        self._events: dict[str, deque[float]] = {}

    def _live(self, key: str) -> deque[float]:
        now = self._clock()
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= self._max_keys:
                self._evict(now)
            events = self._events[key] = deque()
        while events and events[0] <= now - self.window:
            events.popleft()
        return events

    def _evict(self, now: float) -> None:
        stale = [k for k, v in self._events.items() if not v or v[-1] <= now - self.window]
        for key in stale:
            del self._events[key]
        if len(self._events) >= self._max_keys:  # still full: drop the oldest keys
            for key in list(self._events)[: self._max_keys // 10 or 1]:
                del self._events[key]

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again; 0 if it is under the limit."""
        events = self._live(key)
        if len(events) < self.limit:
            return 0
        return max(1, math.ceil(events[0] + self.window - self._clock()))

    def hit(self, key: str) -> None:
        self._live(key).append(self._clock())

    def reset(self, key: str) -> None:
        self._events.pop(key, None)
