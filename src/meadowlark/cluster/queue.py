"""The request queue of a node among many (requests for sleeping queue-mode devices).

Two things change when nodes share the store's queue. The expiry sweep is a singleton
duty: only the holder of the housekeeping lease marks requests expired (and reports
them), so an expiry is reported once. And a device that moved here from another node
may have requests that node queued: the store's in-memory index of endpoints with
pending requests does not know them, so such a device is looked up in the store at its
next wake-up (one reload of the index covers all that moved meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from meadowlark.server.operations import QueuedRequest, QueuedRequestState
from meadowlark.store.devices import SqlRequestQueue


class ClusterRequestQueue:
    """``RequestQueue`` over the store's one; see the module docstring."""

    def __init__(self, queue: SqlRequestQueue, sweeps: Callable[[], bool]) -> None:
        """``sweeps``: whether this node runs the expiry sweep now (holds the lease)."""
        self._queue = queue
        self._sweeps = sweeps
        self._moved_here: set[str] = set()

    def moved_here(self, endpoint: str) -> None:
        """``endpoint``'s registration came from another node."""
        self._moved_here.add(endpoint)

    async def enqueue(self, request: QueuedRequest) -> None:
        await self._queue.enqueue(request)

    def may_have_pending(self, endpoint: str) -> bool:
        return endpoint in self._moved_here or self._queue.may_have_pending(endpoint)

    async def pending(self, endpoint: str, now: datetime) -> list[QueuedRequest]:
        if endpoint in self._moved_here:
            # One reload of the index covers every device that moved here so far.
            covered = set(self._moved_here)
            await self._queue.load()
            self._moved_here -= covered
        return await self._queue.pending(endpoint, now)

    async def finish(
        self, request_id: str, state: QueuedRequestState, result: Mapping[str, Any]
    ) -> None:
        await self._queue.finish(request_id, state, result)

    async def expire(self, now: datetime) -> list[QueuedRequest]:
        if not self._sweeps():
            return []
        return await self._queue.expire(now)
