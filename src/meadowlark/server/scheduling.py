"""Deadlines for many keys served by one task: lifetime expiry, end of awake windows."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import structlog

_log = structlog.get_logger("meadowlark.lwm2m")
K = TypeVar("K", bound=Hashable)


class DeadlineHeap(Generic[K]):
    """At most one deadline per key; rescheduling or cancelling is O(log n) / O(1).

    Stale heap entries are skipped lazily when popped instead of being searched for.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._deadlines: dict[K, tuple[float, int]] = {}
        self._sequence = 0

    def __len__(self) -> int:
        return len(self._deadlines)

    def schedule(self, key: K, deadline: float) -> None:
        self._sequence += 1
        self._deadlines[key] = (deadline, self._sequence)
        heapq.heappush(self._heap, (deadline, self._sequence, key))

    def cancel(self, key: K) -> None:
        self._deadlines.pop(key, None)

    def deadline(self, key: K) -> float | None:
        entry = self._deadlines.get(key)
        return None if entry is None else entry[0]

    def next_deadline(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[K]:
        """Remove and return the keys whose deadline is at or before ``now``."""
        due: list[K] = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                return due
            _, _, key = heapq.heappop(self._heap)
            del self._deadlines[key]
            due.append(key)

    def _drop_stale(self) -> None:
        while self._heap:
            deadline, sequence, key = self._heap[0]
            if self._deadlines.get(key) == (deadline, sequence):
                return
            heapq.heappop(self._heap)


class DeadlineScheduler(Generic[K]):
    """Calls ``on_due(key)`` when a key's deadline passes; one asyncio task for all keys."""

    def __init__(
        self, on_due: Callable[[K], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._on_due = on_due
        self._clock = clock
        self._heap: DeadlineHeap[K] = DeadlineHeap()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="deadlines")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def schedule_in(self, key: K, seconds: float) -> None:
        self.schedule_at(key, self._clock() + seconds)

    def schedule_at(self, key: K, deadline: float) -> None:
        earliest = self._heap.next_deadline()
        self._heap.schedule(key, deadline)
        if earliest is None or deadline < earliest:
            self._changed.set()

    def cancel(self, key: K) -> None:
        self._heap.cancel(key)

    def deadline(self, key: K) -> float | None:
        return self._heap.deadline(key)

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            for key in self._heap.pop_due(self._clock()):
                try:
                    self._on_due(key)
                except Exception:  # one failing key must not stop every other deadline
                    _log.exception("deadline_callback_failed", key=str(key))
            next_deadline = self._heap.next_deadline()
            delay = None if next_deadline is None else max(0.0, next_deadline - self._clock())
            try:
                await asyncio.wait_for(self._changed.wait(), delay)
            except TimeoutError:
                pass
