"""Device events fanned out to live subscribers (SSE streams, the Coiote events feed).

``EventBus`` is a ``ServerListener``: server callbacks become ``DeviceEvent``s tagged
with the device's domain, and every subscription whose filter matches gets a copy in
its own bounded queue. A slow subscriber loses its oldest events; the server never
waits for one.

A device's domain comes from the store (``DomainLookup``), looked up once per endpoint
and again at each Register and Update, so a device moved to another domain is seen
there from its next registration on. Events of an endpoint whose lookup is under way
wait for it, in order. Nothing is looked up while nobody is subscribed.

Across nodes (a scaled-out deployment): a device's events happen on the node that holds
its registration, while its SSE subscribers may be on any node. When ``relay`` is set
and ``remote_subscribers`` says some other node has subscribers, each tagged event also
goes to ``relay``; events relayed by other nodes come in through ``deliver_remote``.
``on_subscribers_changed`` is told when this node's first subscriber arrives or its last
one leaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog

from meadowlark.lwm2m.codec.timestamped import TimestampedNodes
from meadowlark.lwm2m.node import Node
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.errors import Lwm2mServerError
from meadowlark.server.operations import QueuedRequest
from meadowlark.server.registration import Registration
from meadowlark.server.service import ServerListener
from meadowlark.server.transport import Peer

_log = structlog.get_logger("meadowlark.events")

DomainLookup = Callable[[str], Awaitable[str | None]]
"""Endpoint name -> id of the domain its device belongs to (None: no such device)."""


class EventKind(StrEnum):
    REGISTRATION = "REGISTRATION"
    UPDATED = "UPDATED"
    DEREGISTRATION = "DEREGISTRATION"
    NOTIFICATION = "NOTIFICATION"
    SEND = "SEND"
    AWAKE = "AWAKE"
    SLEEPING = "SLEEPING"
    REQUEST_RESPONSE = "REQUEST_RESPONSE"
    """The outcome of a request that was queued for a sleeping device."""
    REGISTRATION_REFUSED = "REGISTRATION_REFUSED"
    """A Register, Update, De-register or Send of the device was answered 4.03."""
    ADDRESS_CHANGED = "ADDRESS_CHANGED"
    """An Update or De-register came from another address than the registration's."""
    BOOTSTRAP = "BOOTSTRAP"
    """A step of a bootstrap (request, discover, delete, write, read, finish, pack)."""
    ALERT_RAISED = "ALERT_RAISED"
    ALERT_ACKNOWLEDGED = "ALERT_ACKNOWLEDGED"
    ALERT_CLEARED = "ALERT_CLEARED"


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """One event; which optional fields are set depends on ``kind``.

    NOTIFICATION: ``paths`` (the observed path, or the composite set) and ``nodes``.
    SEND: ``batches``. DEREGISTRATION: ``expired`` (a De-register's source address is
    ``registration.peer``). REQUEST_RESPONSE: ``request``, ``result`` (what the
    operation returned) and ``error`` (its failure, if any). REGISTRATION_REFUSED:
    ``peer`` (the requester), ``reason`` (``unsecured_transport``, ``identity_mismatch``,
    ``blacklisted``, ...) and ``operation``. ADDRESS_CHANGED: ``registration`` (with the
    new address), ``peer`` (the new address), ``previous_peer`` (the old one) and
    ``operation`` (``update`` or ``deregister``). BOOTSTRAP: ``peer`` (the device),
    ``operation`` (the step) and ``reason`` (its outcome, e.g. ``write /0/1 failed 4.00``).
    ALERT_*: ``alert`` (alertId, ruleId, severity, message, value, state).
    """

    kind: EventKind
    endpoint: str
    domain_id: str
    at: datetime
    registration: Registration | None = None
    paths: tuple[LwM2mPath, ...] = ()
    nodes: Mapping[LwM2mPath, Node] = field(default_factory=dict)
    batches: tuple[TimestampedNodes, ...] = ()
    expired: bool = False
    request: QueuedRequest | None = None
    result: object = None
    error: Lwm2mServerError | None = None
    peer: Peer | None = None
    previous_peer: Peer | None = None
    reason: str = ""
    operation: str = ""
    alert: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Events of devices in ``domain_id`` or below it, optionally of one endpoint only."""

    domain_id: str
    endpoint: str | None = None

    def matches(self, event: DeviceEvent) -> bool:
        if self.endpoint is not None and event.endpoint != self.endpoint:
            return False
        return event.domain_id.startswith(self.domain_id)


class Subscription:
    """An async iterator over the matching events; ``close()`` (or ``with``) ends it."""

    def __init__(self, bus: EventBus, event_filter: EventFilter, capacity: int) -> None:
        self.filter = event_filter
        self.dropped = 0
        """Events lost because the subscriber did not keep up."""
        self._bus = bus
        self._queue: asyncio.Queue[DeviceEvent] = asyncio.Queue(capacity)

    def offer(self, event: DeviceEvent) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    def close(self) -> None:
        self._bus.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> DeviceEvent:
        return await self._queue.get()


class EventBus(ServerListener):
    """Publishes server events to subscriptions, each filtered by domain and endpoint."""

    def __init__(self, domain_of: DomainLookup, *, capacity: int = 1000) -> None:
        self._domain_of = domain_of
        self._capacity = capacity
        self._subscriptions: set[Subscription] = set()
        self._domains: dict[str, str | None] = {}
        self._waiting: dict[str, list[DeviceEvent]] = {}
        self._lookups: set[asyncio.Task[None]] = set()
        self.relay: Callable[[DeviceEvent], None] | None = None
        self.remote_subscribers: Callable[[], bool] = lambda: False
        self.on_subscribers_changed: Callable[[bool], None] | None = None
        self.sink: Callable[[DeviceEvent], None] | None = None
        """Gets every tagged event while ``sink_listens()`` (the event handlers' outbox)."""
        self.sink_listens: Callable[[], bool] = lambda: False

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subscriptions)

    @property
    def subscriber_count(self) -> int:
        """Live subscriptions on this node (SSE streams, the events feed)."""
        return len(self._subscriptions)

    def subscribe(self, event_filter: EventFilter) -> Subscription:
        subscription = Subscription(self, event_filter, self._capacity)
        first = not self._subscriptions
        self._subscriptions.add(subscription)
        if first and self.on_subscribers_changed is not None:
            self.on_subscribers_changed(True)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        had = bool(self._subscriptions)
        self._subscriptions.discard(subscription)
        if not self._subscriptions:
            self._domains.clear()
            if had and self.on_subscribers_changed is not None:
                self.on_subscribers_changed(False)

    def deliver_remote(self, event: DeviceEvent) -> None:
        """An event another node relayed (already tagged with its domain)."""
        for subscription in list(self._subscriptions):
            if subscription.filter.matches(event):
                subscription.offer(event)

    # --- ServerListener ------------------------------------------------------------------

    def on_registered(self, registration: Registration, replaced: Registration | None) -> None:
        self._domains.pop(registration.endpoint, None)
        self._publish(EventKind.REGISTRATION, registration.endpoint, registration=registration)

    def on_updated(self, registration: Registration, previous: Registration) -> None:
        self._domains.pop(registration.endpoint, None)
        self._publish(EventKind.UPDATED, registration.endpoint, registration=registration)

    def on_deregistered(self, registration: Registration, *, expired: bool) -> None:
        self._publish(
            EventKind.DEREGISTRATION,
            registration.endpoint,
            registration=registration,
            expired=expired,
        )
        if registration.endpoint not in self._waiting:
            self._domains.pop(registration.endpoint, None)

    def on_registration_refused(
        self, endpoint: str, peer: Peer, reason: str, operation: str
    ) -> None:
        self._publish(
            EventKind.REGISTRATION_REFUSED,
            endpoint,
            peer=peer,
            reason=reason,
            operation=operation,
        )

    def on_address_changed(
        self, registration: Registration, previous: Peer, operation: str
    ) -> None:
        self._publish(
            EventKind.ADDRESS_CHANGED,
            registration.endpoint,
            registration=registration,
            peer=registration.peer,
            previous_peer=previous,
            operation=operation,
        )

    def on_notification(
        self, registration: Registration, paths: tuple[LwM2mPath, ...], nodes: dict[LwM2mPath, Node]
    ) -> None:
        self._publish(
            EventKind.NOTIFICATION,
            registration.endpoint,
            registration=registration,
            paths=paths,
            nodes=nodes,
        )

    def on_send(self, registration: Registration, batches: list[TimestampedNodes]) -> None:
        self._publish(
            EventKind.SEND, registration.endpoint, registration=registration, batches=tuple(batches)
        )

    def on_awake(self, registration: Registration) -> None:
        self._publish(EventKind.AWAKE, registration.endpoint, registration=registration)

    def on_sleeping(self, registration: Registration) -> None:
        self._publish(EventKind.SLEEPING, registration.endpoint, registration=registration)

    def on_queued_request_done(
        self, request: QueuedRequest, result: object, error: Lwm2mServerError | None
    ) -> None:
        self._publish(
            EventKind.REQUEST_RESPONSE,
            request.endpoint,
            request=request,
            result=result,
            error=error,
        )

    def publish_bootstrap(
        self, endpoint: str, domain_id: str, *, peer: Peer, operation: str, reason: str
    ) -> None:
        """A bootstrap step of a device of ``domain_id`` (known already: a device being
        bootstrapped may have no management record to look it up from)."""
        if self._listened():
            event = DeviceEvent(
                EventKind.BOOTSTRAP,
                endpoint,
                "",
                datetime.now(UTC),
                peer=peer,
                operation=operation,
                reason=reason,
            )
            self._deliver(event, domain_id)

    def publish_known(self, kind: EventKind, endpoint: str, domain_id: str, **details: Any) -> None:
        """An event of a device whose domain the caller knows already (alerts)."""
        if self._listened():
            self._deliver(DeviceEvent(kind, endpoint, "", datetime.now(UTC), **details), domain_id)

    # --- fan-out -------------------------------------------------------------------------

    def _listened(self) -> bool:
        return (
            bool(self._subscriptions)
            or (self.relay is not None and self.remote_subscribers())
            or (self.sink is not None and self.sink_listens())
        )

    def _publish(self, kind: EventKind, endpoint: str, **details: Any) -> None:
        if not self._listened():
            return
        event = DeviceEvent(kind, endpoint, "", datetime.now(UTC), **details)
        waiting = self._waiting.get(endpoint)
        if waiting is not None:
            waiting.append(event)
        elif endpoint in self._domains:
            self._deliver(event, self._domains[endpoint])
        else:
            self._waiting[endpoint] = [event]
            task = asyncio.get_running_loop().create_task(self._resolve(endpoint))
            self._lookups.add(task)
            task.add_done_callback(self._lookups.discard)

    async def _resolve(self, endpoint: str) -> None:
        try:
            domain_id = await self._domain_of(endpoint)
        except Exception:  # the store failing must not break event delivery for good
            _log.exception("event_domain_lookup_failed", endpoint=endpoint)
            self._waiting.pop(endpoint, None)
            return
        events = self._waiting.pop(endpoint, [])
        if self._listened():
            self._domains[endpoint] = domain_id
        for event in events:
            self._deliver(event, domain_id)
        if events and events[-1].kind is EventKind.DEREGISTRATION:
            self._domains.pop(endpoint, None)

    def _deliver(self, event: DeviceEvent, domain_id: str | None) -> None:
        if domain_id is None:
            return
        tagged = replace(event, domain_id=domain_id)
        for subscription in list(self._subscriptions):
            if subscription.filter.matches(tagged):
                subscription.offer(tagged)
        if self.relay is not None and self.remote_subscribers():
            self.relay(tagged)
        if self.sink is not None and self.sink_listens():
            self.sink(tagged)
