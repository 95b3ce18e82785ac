"""What one node's changes mean to the others: device events for their SSE subscribers,
and caches to drop (roles, verified principals, the Things admission index).

Events travel only while some other node has subscribers: a node announces when its
first subscriber arrives and its last leaves, and repeats the announcement while it has
any (a node that starts later learns it within ``INTEREST_REPEAT``; one that dies is
forgotten after ``INTEREST_TTL``). Relayed events are sent in batches of what
accumulated during ``EVENT_BATCH_SECONDS``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from meadowlark.cluster.node import ClusterNode
from meadowlark.cluster.wire import event_from_wire, event_to_wire
from meadowlark.connectivity.enforcement import ThingFacts, ThingIndex
from meadowlark.connectivity.states import ThingState
from meadowlark.core.events import DeviceEvent, EventBus
from meadowlark.core.roles import RoleCache
from meadowlark.store.db import Database

_log = structlog.get_logger("meadowlark.cluster")

EVENTS = "events"
INTEREST = "event_interest"
ROLES = "roles_changed"
PRINCIPALS = "principals_changed"
"""The verified-caller cache's invalidations (``Cluster.share``)."""
THINGS = "things_changed"
BATCH = "batch"
"""A notice's data: the list of what was announced on its topic meanwhile."""


class Announcer:
    """Publishes notices from synchronous code (a cache's change hook). Notices of one
    topic made within ``BATCH_SECONDS`` go out as one message (a bulk import of Things
    is a few messages, not one per Thing)."""

    BATCH_SECONDS = 0.02

    def __init__(self, node: ClusterNode) -> None:
        self._node = node
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._flusher: asyncio.Task[None] | None = None

    def __call__(self, topic: str, data: dict[str, Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a CLI command's teardown): nobody to tell
            return
        self._pending.setdefault(topic, []).append(data)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush(), name="cluster-notices")

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(self.BATCH_SECONDS)
            pending, self._pending = self._pending, {}
            for topic, items in pending.items():
                await self._node.publish(topic, {BATCH: items})
        finally:
            self._flusher = None
            if self._pending:
                self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def drain(self) -> None:
        """Send what is pending now (the node is stopping)."""
        while self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)


class EventRelay:
    """Sends this node's device events to nodes with subscribers; feeds theirs to its bus."""

    EVENT_BATCH_SECONDS = 0.05
    INTEREST_REPEAT = 5.0
    INTEREST_TTL = 15.0

    def __init__(self, node: ClusterNode, bus: EventBus, announce: Announcer) -> None:
        self._node = node
        self._bus = bus
        self._announce = announce
        self._interested: dict[str, float] = {}
        self._outbox: list[dict[str, Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._repeater: asyncio.Task[None] | None = None
        bus.relay = self._queue
        bus.remote_subscribers = self._others_listen
        bus.on_subscribers_changed = self._subscribers_changed
        node.on(EVENTS, self._received)
        node.on(INTEREST, self._interest)

    def start(self) -> None:
        self._repeater = asyncio.get_running_loop().create_task(
            self._repeat_interest(), name="cluster-interest"
        )

    async def stop(self) -> None:
        tasks = [task for task in (self._flusher, self._repeater) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _others_listen(self) -> bool:
        if not self._interested:
            return False
        now = time.monotonic()
        for node_id, seen in list(self._interested.items()):
            if now - seen > self.INTEREST_TTL:
                del self._interested[node_id]
        return bool(self._interested)

    def _subscribers_changed(self, present: bool) -> None:
        self._announce(INTEREST, {"node": self._node.node_id, "active": present})

    async def _repeat_interest(self) -> None:
        while True:
            await asyncio.sleep(self.INTEREST_REPEAT)
            if self._bus.has_subscribers:
                self._announce(INTEREST, {"node": self._node.node_id, "active": True})

    def _interest(self, data: dict[str, Any]) -> None:
        node_id = str(data.get("node", ""))
        if data.get("active"):
            known = node_id in self._interested
            self._interested[node_id] = time.monotonic()
            if not known and self._bus.has_subscribers:  # a newcomer: tell it about us
                self._announce(INTEREST, {"node": self._node.node_id, "active": True})
        else:
            self._interested.pop(node_id, None)

    def _queue(self, event: DeviceEvent) -> None:
        self._outbox.append(event_to_wire(event))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(self.EVENT_BATCH_SECONDS)
            events, self._outbox = self._outbox, []
            await self._node.publish(EVENTS, {"events": events})
        finally:
            self._flusher = None
            if self._outbox:
                self._flusher = asyncio.get_running_loop().create_task(self._flush())

    def _received(self, data: dict[str, Any]) -> None:
        if not self._bus.has_subscribers:
            return
        for item in data.get("events", []):
            try:
                self._bus.deliver_remote(event_from_wire(item))
            except (KeyError, TypeError, ValueError) as exc:
                _log.warning("cluster_event_undecodable", error=str(exc))


class SharedRoleCache(RoleCache):
    """A ``RoleCache`` whose invalidation (after a role change here) reaches every node."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.announce: Callable[[str, dict[str, Any]], None] | None = None

    def invalidate(self) -> None:
        super().invalidate()
        if self.announce is not None:
            self.announce(ROLES, {})

    def invalidate_here(self) -> None:
        super().invalidate()


class SharedThingIndex(ThingIndex):
    """A ``ThingIndex`` whose changes (a Thing suspended, linked, its IMEI lock...) are
    applied on every node, so admission answers the same everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.announce: Callable[[str, dict[str, Any]], None] | None = None
        self._quiet = 0

    async def load(self, db: Database) -> None:
        self._quiet += 1
        try:
            await super().load(db)
        finally:
            self._quiet -= 1

    def put(self, facts: ThingFacts) -> None:
        self._quiet += 1
        try:
            super().put(facts)
        finally:
            self._quiet -= 1
        self._tell({"op": "put", "facts": _facts_to_wire(facts)})

    def remove(self, thing_id: str) -> None:
        super().remove(thing_id)
        self._tell({"op": "remove", "id": thing_id})

    def put_group(self, group_id: str, imei_prefix: str, locked: bool) -> None:
        super().put_group(group_id, imei_prefix, locked)
        self._tell({"op": "put_group", "id": group_id, "prefix": imei_prefix, "locked": locked})

    def remove_group(self, group_id: str) -> None:
        super().remove_group(group_id)
        self._tell({"op": "remove_group", "id": group_id})

    def apply(self, change: dict[str, Any]) -> None:
        """A change another node made."""
        self._quiet += 1
        try:
            match change.get("op"):
                case "put":
                    self.put(_facts_from_wire(change["facts"]))
                case "remove":
                    self.remove(change["id"])
                case "put_group":
                    self.put_group(change["id"], change["prefix"], change["locked"])
                case "remove_group":
                    self.remove_group(change["id"])
        finally:
            self._quiet -= 1

    def _tell(self, change: dict[str, Any]) -> None:
        if not self._quiet and self.announce is not None:
            self.announce(THINGS, change)


def _facts_to_wire(facts: ThingFacts) -> dict[str, Any]:
    return {
        "id": facts.id,
        "domain": facts.domain_id,
        "state": facts.state.value,
        "imei": facts.imei,
        "master_imei": facts.master_imei,
        "lock": facts.lock_master_imei,
        "group": facts.group_id,
        "endpoint": facts.endpoint,
    }


def _facts_from_wire(data: dict[str, Any]) -> ThingFacts:
    return ThingFacts(
        data["id"],
        data["domain"],
        ThingState(data["state"]),
        data["imei"],
        data["master_imei"],
        data["lock"],
        data["group"],
        data["endpoint"],
    )
