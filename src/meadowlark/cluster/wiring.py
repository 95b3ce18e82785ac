"""One node's cluster parts, built from settings and wired into the runtime's services.

What crosses nodes: downlink requests (to the node holding the device), SSE device
events (to nodes with subscribers), and invalidations of the role cache, the principal
cache and the Things admission index. The ``housekeeping`` lease runs the singleton
duties on one node at a time: dropping old message bodies, and the expiry sweep of
queued requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import delete

from meadowlark.cluster.downlink import ClusterDownlink
from meadowlark.cluster.feeds import (
    ROLES,
    THINGS,
    Announcer,
    EventRelay,
    SharedRoleCache,
    SharedThingIndex,
)
from meadowlark.cluster.leases import Lease
from meadowlark.cluster.node import ClusterNode, new_node_id
from meadowlark.cluster.queue import ClusterRequestQueue
from meadowlark.cluster.registrations import SharedRegistrationStore
from meadowlark.cluster.signals import LocalSignals, PostgresSignals, RedisSignals, Signals
from meadowlark.config import Settings
from meadowlark.core.events import EventBus
from meadowlark.server.service import LwM2mServer
from meadowlark.store.cluster_models import ClusterMessage
from meadowlark.store.db import Database
from meadowlark.store.devices import SqlRequestQueue

_log = structlog.get_logger("meadowlark.cluster")

RELEASE = "release"
HOUSEKEEPING_INTERVAL = 60.0
MESSAGE_RETENTION = timedelta(minutes=5)


def signals_kind(settings: Settings, is_sqlite: bool) -> str:
    """The carrier ``settings`` ask for: ``postgres``, ``redis``, ``local`` or ``off``."""
    kind = settings.cluster.signals
    if kind != "auto":
        return kind
    if settings.cluster.redis_url:
        return "redis"
    return "off" if is_sqlite else "postgres"


def _signals(kind: str, settings: Settings, db: Database, node_id: str) -> Signals:
    if kind == "postgres":
        if db.is_sqlite:
            raise ValueError("MEADOWLARK_CLUSTER__SIGNALS=postgres needs a PostgreSQL store")
        return PostgresSignals(db, node_id)
    if kind == "redis":
        if not settings.cluster.redis_url:
            raise ValueError("MEADOWLARK_CLUSTER__SIGNALS=redis needs a redis_url")
        return RedisSignals(settings.cluster.redis_url, node_id)
    return LocalSignals(local_socket_directory(Path(settings.data_dir)), node_id)


def local_socket_directory(data_dir: Path) -> Path:
    """Where one host's workers put their sockets: ``<data dir>/cluster``, or a folder
    in the temporary directory named after the data dir when that path is too long for
    a Unix socket address (108 bytes on Linux)."""
    directory = data_dir.resolve() / "cluster"
    if len(str(directory / f"{'0' * 12}.sock").encode()) < 100:
        return directory
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"meadowlark-cluster-{digest}"


class Cluster:
    def __init__(self, settings: Settings, db: Database, kind: str) -> None:
        self.node_id = new_node_id()
        self.node = ClusterNode(_signals(kind, settings, db, self.node_id))
        self.announce = Announcer(self.node)
        self.registrations = SharedRegistrationStore(db, self.node_id, self._tell_released)
        self.roles = SharedRoleCache(db)
        self.roles.announce = self.announce
        self.thing_index = SharedThingIndex()
        self.thing_index.announce = self.announce
        self.housekeeping = Lease(
            db, "housekeeping", self.node_id, self._housekeep, settings.cluster.lease_ttl
        )
        self._db = db
        self._relay: EventRelay | None = None
        self.node.on(RELEASE, self._released)
        self.node.on(ROLES, lambda _data: self.roles.invalidate_here())
        self.node.on(THINGS, self.thing_index.apply)
        self._releases: set[asyncio.Task[None]] = set()

    def request_queue(self, queue: SqlRequestQueue) -> ClusterRequestQueue:
        """``queue`` as this node's LwM2M server must use it (see ``ClusterRequestQueue``)."""
        shared = ClusterRequestQueue(queue, lambda: self.housekeeping.held)
        self.registrations.on_moved_here = shared.moved_here
        return shared

    def wire(self, server: LwM2mServer, events: EventBus) -> None:
        """Route this node's downlinks for devices held elsewhere; relay device events."""
        server.downlink.remote = ClusterDownlink(self.node, self.registrations, server)
        self._relay = EventRelay(self.node, events, self.announce)

    def share(
        self,
        topic: str,
        on_local_change: Callable[[Callable[[Any], None]], None],
        apply: Callable[[Any], None],
    ) -> None:
        """Pass a cache's local invalidations to the other nodes, theirs to ``apply``.

        ``on_local_change(listener)`` registers ``listener(key)`` with the cache (e.g.
        the principal cache's ``on_invalidate``); ``apply(key)`` invalidates here
        without announcing again (e.g. ``Identity.invalidate_principals``).
        """
        on_local_change(lambda key: self.announce(topic, {"key": key}))
        self.node.on(topic, lambda data: apply(data.get("key")))

    async def start(self) -> None:
        await self.node.start()
        if self._relay is not None:
            self._relay.start()
        self.housekeeping.start()
        _log.info("cluster_node_started", node=self.node_id)

    async def stop(self) -> None:
        await self.housekeeping.stop()
        if self._relay is not None:
            await self._relay.stop()
        await self.announce.drain()
        for task in list(self._releases):
            task.cancel()
        await self.node.stop()

    # --- between nodes -------------------------------------------------------------------

    def _tell_released(self, node_id: str, released: list[tuple[str, str]]) -> None:
        task = asyncio.get_running_loop().create_task(
            self._send_release(node_id, released), name="cluster-release"
        )
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _send_release(self, node_id: str, released: list[tuple[str, str]]) -> None:
        try:
            await self.node.signals.send(
                node_id,
                {"kind": "notice", "topic": RELEASE, "data": {"registrations": released}},
            )
        except Exception:  # that node is gone: nothing to release there
            _log.info("cluster_release_undelivered", node=node_id)

    def _released(self, data: dict[str, Any]) -> None:
        for endpoint, registration_id in data.get("registrations", []):
            task = asyncio.get_running_loop().create_task(
                self.registrations.release(endpoint, registration_id)
            )
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)

    async def _housekeep(self) -> None:
        """The singleton duty: drop message bodies nobody will read any more."""
        while True:
            try:
                async with self._db.transaction() as session:
                    await session.execute(
                        delete(ClusterMessage).where(
                            ClusterMessage.created_at < datetime.now(UTC) - MESSAGE_RETENTION
                        )
                    )
            except Exception:  # retried at the next round
                _log.exception("cluster_housekeeping_failed")
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
