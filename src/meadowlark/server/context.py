"""What the parts of the LwM2M server share: options, stores, listeners, background work.

``LwM2mServer`` (``service.py``) composes a registration service, an observation
service, a downlink sender and a queue-mode sender (the seams of Eclipse Leshan); each
gets one ``ServerContext`` instead of a reference to the others' internals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from meadowlark.lwm2m.codec.timestamped import TimestampedNodes
from meadowlark.lwm2m.model.registry import ModelRegistry, VersionedModels
from meadowlark.lwm2m.node import Node
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.errors import Lwm2mServerError
from meadowlark.server.operations import QueuedRequest
from meadowlark.server.ports import AdmissionPolicy, DeviceRegistry, RequestQueue, ValueCache
from meadowlark.server.registration import Registration, RegistrationStore
from meadowlark.server.transport import Peer
from meadowlark.server.values import flatten_all

_log = structlog.get_logger("meadowlark.lwm2m")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Tunables of ``LwM2mServer`` (``config.Lwm2mSettings`` maps onto these)."""

    request_timeout: float = 10.0
    supported_versions: tuple[str, ...] = ("1.0", "1.1", "1.2")
    lifetime_grace: float = 30.0
    awake_window: float = 93.0
    max_registrations_per_address_per_minute: int | None = None
    """Registers accepted per source host and minute; ``None`` (the default): no limit."""
    max_pending_uplinks: int = 2048
    """Register and Update requests in process at once; more get 5.03 (load shedding)."""
    overload_max_age: tuple[int, int] = (5, 30)
    """Max-Age range (seconds) of that 5.03, drawn at random per answer so that the
    devices' retries spread out instead of coming back in one wave."""
    queued_request_ttl: float = 86400.0
    queue_sweep_interval: float = 60.0


class ServerListener:
    """Receives server events; override the methods you need.

    Callbacks run on the event loop and must not block: schedule slow work as a task.
    """

    def on_registered(self, registration: Registration, replaced: Registration | None) -> None:
        """A device registered; ``replaced`` is its previous registration, if any."""

    def on_updated(self, registration: Registration, previous: Registration) -> None:
        """A device sent a registration Update."""

    def on_deregistered(self, registration: Registration, *, expired: bool) -> None:
        """A device de-registered, or its lifetime ran out (``expired``).

        For a De-register, ``registration.peer`` is where the request came from.
        """

    def on_registration_refused(
        self, endpoint: str, peer: Peer, reason: str, operation: str
    ) -> None:
        """A Register (``operation`` ``register``), Update (``update``), De-register
        (``deregister``) or Send (``send``) from ``peer`` for ``endpoint`` got 4.03;
        ``reason`` is the ``Admission`` value (e.g. ``unsecured_transport``) or the
        admission policy's (e.g. ``thing_suspended``)."""

    def on_address_changed(
        self, registration: Registration, previous: Peer, operation: str
    ) -> None:
        """An Update or De-register (``operation``) came from ``registration.peer``,
        not from ``previous``, the address the registration had: a NAT rebinding, or
        someone else who knows the registration's location."""

    def on_notification(
        self, registration: Registration, paths: tuple[LwM2mPath, ...], nodes: dict[LwM2mPath, Node]
    ) -> None:
        """An observed path (or composite set of paths) changed."""

    def on_send(self, registration: Registration, batches: list[TimestampedNodes]) -> None:
        """The device pushed data with the Send operation."""

    def on_values_cached(self, registration: Registration, nodes: Mapping[LwM2mPath, Node]) -> None:
        """Values the device reported reached the value cache: the answer to a read, an
        observe or a composite read (whoever asked: REST, task engine, registration reads),
        a notification, or data it pushed with Send."""

    def on_written(self, registration: Registration, paths: tuple[LwM2mPath, ...]) -> None:
        """The device accepted a Write or Write-Composite of ``paths`` (whoever asked)."""

    def on_awake(self, registration: Registration) -> None:
        """A queue-mode device became reachable."""

    def on_sleeping(self, registration: Registration) -> None:
        """A queue-mode device's awake window ended."""

    def on_queued_request_done(
        self, request: QueuedRequest, result: object, error: Lwm2mServerError | None
    ) -> None:
        """A queued request was delivered (``error`` None), failed or expired."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ServerContext:
    """Options, stores, listeners and background tasks the server's parts share."""

    options: ServerOptions
    models: ModelRegistry
    model_resolver: Callable[[Registration], ModelRegistry]
    """Picks the models of a device (e.g. its tenant's custom objects)."""
    registrations: RegistrationStore
    devices: DeviceRegistry
    values: ValueCache
    queue: RequestQueue
    admission_policy: AdmissionPolicy | None = None
    listeners: list[ServerListener] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def models_for(self, registration: Registration) -> VersionedModels:
        return self.model_resolver(registration).with_versions(registration.object_versions)

    def emit(self, call: Callable[[ServerListener], None]) -> None:
        for listener in list(self.listeners):
            try:
                call(listener)
            except Exception:  # a broken listener must not break the protocol exchange
                _log.exception("listener_failed", listener=type(listener).__name__)

    def cache(
        self,
        registration: Registration,
        nodes: Mapping[LwM2mPath, Node],
        timestamp: datetime | None = None,
    ) -> None:
        """Put values the device reported (at ``timestamp``, default now) in the value cache
        and tell the listeners."""
        self.values.put(registration.endpoint, flatten_all(nodes, timestamp or utcnow()))
        self.emit(lambda listener: listener.on_values_cached(registration, nodes))

    def spawn(self, work: Coroutine[Any, Any, Any] | Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    async def cancel_tasks(self, *extra: asyncio.Task[Any]) -> None:
        tasks = [*self.tasks, *extra]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("background_task_failed", error=repr(task.exception()))
