"""The LwM2M server: registrations, downlink operations, observations, queue mode, Send.

``LwM2mServer`` is the ``UplinkHandler`` a transport calls for device requests and the
programmatic API (REST, tests) for requests to devices. It reaches devices only through
an ``LwM2mEndpoint``; set it with ``attach`` once the transport exists.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from meadowlark.lwm2m.codec.attributes import NotificationAttributes, to_query
from meadowlark.lwm2m.codec.errors import CodecError, DecodeError
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.codec.link_format import ParamValue, attributes_by_path, decode_links
from meadowlark.lwm2m.codec.timestamped import TimestampedNodes
from meadowlark.lwm2m.model.registry import ModelRegistry, VersionedModels, builtin_registry
from meadowlark.lwm2m.node import LwM2mObject, Node, ObjectInstance
from meadowlark.lwm2m.path import ROOT, InvalidPathError, LwM2mPath
from meadowlark.server import content
from meadowlark.server.errors import (
    DeviceErrorResponse,
    DeviceNotRegisteredError,
    DeviceUnreachableError,
    InvalidRequestError,
    InvalidResponseError,
    Lwm2mServerError,
    QueuedRequestExpiredError,
    RequestQueuedError,
    RequestTimeoutError,
)
from meadowlark.server.operations import (
    Operation,
    OperationKind,
    QueuedRequest,
    QueuedRequestState,
)
from meadowlark.server.ports import (
    Admission,
    AdmissionPolicy,
    DeviceRegistry,
    InMemoryDeviceRegistry,
    InMemoryRequestQueue,
    InMemoryValueCache,
    RequestQueue,
    ValueCache,
)
from meadowlark.server.registration import (
    InMemoryRegistrationStore,
    Registration,
    RegistrationRateLimiter,
    RegistrationRejected,
    RegistrationStore,
    new_registration_id,
    parse_register,
    parse_update,
)
from meadowlark.server.scheduling import DeadlineScheduler
from meadowlark.server.security import same_principal
from meadowlark.server.transport import (
    BAD_REQUEST,
    CHANGED,
    CREATED,
    DELETED,
    FORBIDDEN,
    NOT_FOUND,
    SERVICE_UNAVAILABLE,
    UNSUPPORTED_CONTENT_FORMAT,
    DownlinkRequest,
    DownlinkResponse,
    LwM2mEndpoint,
    Method,
    ObservationHandle,
    Peer,
    TrafficCounter,
    TransportError,
    TransportTimeout,
    UplinkResult,
)
from meadowlark.server.values import CachedValue, flatten_all

_log = structlog.get_logger("meadowlark.lwm2m")

_OBSERVE_KINDS = frozenset({OperationKind.OBSERVE, OperationKind.OBSERVE_COMPOSITE})
_COMPOSITE_KINDS = frozenset({OperationKind.READ_COMPOSITE, OperationKind.OBSERVE_COMPOSITE})


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Tunables of ``LwM2mServer`` (``config.Lwm2mSettings`` maps onto these)."""

    request_timeout: float = 10.0
    supported_versions: tuple[str, ...] = ("1.0", "1.1", "1.2")
    lifetime_grace: float = 30.0
    awake_window: float = 93.0
    max_registrations_per_address_per_minute: int = 120
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

    def on_awake(self, registration: Registration) -> None:
        """A queue-mode device became reachable."""

    def on_sleeping(self, registration: Registration) -> None:
        """A queue-mode device's awake window ended."""

    def on_queued_request_done(
        self, request: QueuedRequest, result: object, error: Lwm2mServerError | None
    ) -> None:
        """A queued request was delivered (``error`` None), failed or expired."""


@dataclass
class _Observation:
    registration: Registration
    operation: Operation
    requested_format: int | None
    handle: ObservationHandle | None = None


@dataclass
class _Waiters:
    futures: dict[str, asyncio.Future[object]] = field(default_factory=dict)

    def resolve(self, request_id: str, result: object, error: Exception | None) -> None:
        future = self.futures.get(request_id)
        if future is None or future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LwM2mServer:
    """LwM2M server logic over an ``LwM2mEndpoint`` transport and repository Protocols."""

    def __init__(
        self,
        options: ServerOptions | None = None,
        *,
        models: ModelRegistry | None = None,
        model_resolver: Callable[[Registration], ModelRegistry] | None = None,
        registrations: RegistrationStore | None = None,
        devices: DeviceRegistry | None = None,
        values: ValueCache | None = None,
        queue: RequestQueue | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options or ServerOptions()
        self.models = models or builtin_registry()
        # Picks the models of a device (e.g. its tenant's custom objects); default ``models``.
        self._model_resolver = model_resolver or (lambda _registration: self.models)
        self.registrations = registrations or InMemoryRegistrationStore()
        self.devices = devices or InMemoryDeviceRegistry()
        self.values = values or InMemoryValueCache()
        self.queue = queue or InMemoryRequestQueue()
        self.admission_policy: AdmissionPolicy | None = None
        """Further admission rules (set by the runtime; e.g. SIM states)."""
        self.traffic = TrafficCounter()
        """What the transport exchanged with each address (it counts, others drain)."""
        self._endpoint: LwM2mEndpoint | None = None
        self._listeners: list[ServerListener] = []
        self._limiter = RegistrationRateLimiter(
            self.options.max_registrations_per_address_per_minute, clock
        )
        self._expiry: DeadlineScheduler[str] = DeadlineScheduler(self._on_lifetime_over, clock)
        self._presence: DeadlineScheduler[str] = DeadlineScheduler(self._on_awake_over, clock)
        self._awake: set[str] = set()
        self._observations: dict[str, dict[tuple[LwM2mPath, ...], _Observation]] = {}
        # Observations to set up again when a device whose lifetime ran out registers.
        self._reobserve_on_return: dict[str, list[_Observation]] = {}
        self._draining: set[str] = set()
        self._waiters = _Waiters()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def attach(self, endpoint: LwM2mEndpoint) -> None:
        """Use ``endpoint`` to reach devices (the transport is built after the server)."""
        self._endpoint = endpoint

    def add_listener(self, listener: ServerListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: ServerListener) -> None:
        self._listeners.remove(listener)

    async def start(self) -> None:
        self._expiry.start()
        self._presence.start()
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_queue(), name="lwm2m-queue-sweeper"
            )

    async def stop(self) -> None:
        """Stop timers and background work; observations are dropped without messages."""
        await self._expiry.stop()
        await self._presence.stop()
        tasks = list(self._tasks)
        if self._sweeper is not None:
            tasks.append(self._sweeper)
            self._sweeper = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for observations in self._observations.values():
            for observation in observations.values():
                if observation.handle is not None and observation.handle.active:
                    await observation.handle.cancel(active=False)
        self._observations.clear()

    async def forget(self, endpoint: str) -> bool:
        """Drop the registration of a deleted or barred device; False if not registered.

        Nothing is sent: the device learns it from 4.04 on its next Update.
        """
        registration = await self.registrations.get_by_endpoint(endpoint)
        if registration is None:
            return False
        await self.registrations.remove(registration.registration_id)
        await self._deregistered(registration, expired=False)
        return True

    # --- queries -----------------------------------------------------------------------

    async def get_registration(self, endpoint: str) -> Registration | None:
        return await self.registrations.get_by_endpoint(endpoint)

    async def all_registrations(self) -> list[Registration]:
        return await self.registrations.all()

    def is_awake(self, registration: Registration) -> bool:
        """Whether requests go out now (always, unless the device is in queue mode)."""
        return not registration.queue_mode or registration.endpoint in self._awake

    def observed_paths(self, endpoint: str) -> list[tuple[LwM2mPath, ...]]:
        return [
            key
            for key, observation in self._observations.get(endpoint, {}).items()
            if observation.handle is not None and observation.handle.active
        ]

    async def cached_values(
        self, endpoint: str, prefix: LwM2mPath = ROOT
    ) -> dict[LwM2mPath, CachedValue]:
        return await self.values.get(endpoint, prefix)

    def models_for(self, registration: Registration) -> VersionedModels:
        registry = self._model_resolver(registration)
        return registry.with_versions(registration.object_versions)

    # --- uplink: Register, Update, De-register, Send -------------------------------------

    async def on_register(
        self, peer: Peer, query: Sequence[str], payload: bytes, content_format: int | None
    ) -> UplinkResult:
        retry_after = self._limiter.retry_after(peer.host)
        if retry_after is not None:
            _log.warning("registration_throttled", peer=str(peer), retry_after=retry_after)
            return UplinkResult(SERVICE_UNAVAILABLE, max_age=retry_after)
        try:
            params = parse_register(query, payload, content_format, self.options.supported_versions)
        except RegistrationRejected as exc:
            _log.info(
                "registration_rejected", peer=str(peer), code=str(exc.code), reason=exc.message
            )
            return UplinkResult(exc.code, diagnostic=exc.message)
        now = _utcnow()
        registration = Registration(
            registration_id=new_registration_id(),
            endpoint=params.endpoint,
            lwm2m_version=params.lwm2m_version,
            binding=params.binding,
            lifetime=params.lifetime,
            queue_mode=params.queue_mode,
            sms_number=params.sms_number,
            objects=params.objects,
            peer=peer,
            registered_at=now,
            last_update=now,
        )
        refused = self._policy_refusal(registration, "register")
        if refused is not None:
            return refused
        # The registry checks the device's security mode against peer.identity (the
        # transport's authentication) along with its other admission rules.
        admission = await self.devices.admit_registration(registration)
        if admission is not Admission.ALLOWED:
            return self._refuse(params.endpoint, peer, admission, "register")
        replaced = await self.registrations.add(registration)
        if replaced is not None:
            self._expiry.cancel(replaced.registration_id)
        self._schedule_expiry(registration)
        _log.info(
            "device_registered",
            endpoint=registration.endpoint,
            registration_id=registration.registration_id,
            lwm2m=registration.lwm2m_version,
            binding=registration.binding,
            lifetime=registration.lifetime,
            queue_mode=registration.queue_mode,
            peer=str(peer),
            replaced=replaced is not None,
        )
        self._emit(lambda listener: listener.on_registered(registration, replaced))
        reobserve = self._reobserve_on_return.pop(registration.endpoint, [])
        reobserve += self._forget_observations(registration.endpoint, keep_reobserve=True)
        self._after_uplink(registration)
        if not registration.queue_mode:
            # Requests queued while the device was away or in queue mode go out now.
            self._drain_if_queued(registration.endpoint)
        if reobserve:
            self._spawn(self._reobserve(registration, reobserve))
        return UplinkResult(CREATED, location_path=registration.location_path)

    async def on_update(
        self,
        peer: Peer,
        location: str,
        query: Sequence[str],
        payload: bytes,
        content_format: int | None,
    ) -> UplinkResult:
        previous = await self.registrations.get(location)
        if previous is None:
            return UplinkResult(NOT_FOUND, diagnostic="unknown registration")
        if not same_principal(previous.peer, peer):
            return self._refuse(previous.endpoint, peer, Admission.IDENTITY_MISMATCH, "update")
        try:
            params = parse_update(query, payload, content_format, previous.lwm2m_version)
        except RegistrationRejected as exc:
            return UplinkResult(exc.code, diagnostic=exc.message)
        registration = params.applied_to(previous, peer, _utcnow())
        refused = self._policy_refusal(registration, "update")
        if refused is not None:  # e.g. its SIM was suspended: the registration ends
            if await self.registrations.remove(previous.registration_id) is not None:
                await self._deregistered(previous, expired=False)
            return refused
        await self.registrations.replace(registration)
        self._schedule_expiry(registration)
        for observation in self._observations.get(registration.endpoint, {}).values():
            observation.registration = registration
        await self.devices.record_update(registration)
        _log.debug("device_updated", endpoint=registration.endpoint, peer=str(peer))
        if peer.address != previous.peer.address:
            self._address_changed(registration, previous.peer, "update")
        self._emit(lambda listener: listener.on_updated(registration, previous))
        self._after_uplink(registration)
        return UplinkResult(CHANGED)

    async def on_deregister(self, peer: Peer, location: str) -> UplinkResult:
        found = await self.registrations.get(location)
        if found is None:
            return UplinkResult(NOT_FOUND, diagnostic="unknown registration")
        if not same_principal(found.peer, peer):
            return self._refuse(found.endpoint, peer, Admission.IDENTITY_MISMATCH, "deregister")
        registration = await self.registrations.remove(location)
        if registration is None:  # gone meanwhile (expired, replaced)
            return UplinkResult(NOT_FOUND, diagnostic="unknown registration")
        registered_peer = registration.peer
        if peer.address != registered_peer.address:
            # Accepted all the same (the location is the NoSec device's only proof), but
            # the events name the address the De-register came from.
            registration = replace(registration, peer=peer)
            self._address_changed(registration, registered_peer, "deregister")
        await self._deregistered(registration, expired=False, registered_peer=registered_peer)
        return UplinkResult(DELETED)

    async def on_send(self, peer: Peer, payload: bytes, content_format: int | None) -> UplinkResult:
        registration = await self.registrations.get_by_peer(peer.host, peer.port)
        if registration is None:
            return UplinkResult(NOT_FOUND, diagnostic="no registration from this address")
        if not same_principal(registration.peer, peer):
            return self._refuse(registration.endpoint, peer, Admission.IDENTITY_MISMATCH, "send")
        if content_format not in content.TIMESTAMPED_CODECS:
            return UplinkResult(UNSUPPORTED_CONTENT_FORMAT, diagnostic="use SenML or LwM2M CBOR")
        now = _utcnow()
        try:
            batches = content.decode_timestamped(
                content_format, payload, self.models_for(registration), now
            )
        except CodecError as exc:
            return UplinkResult(BAD_REQUEST, diagnostic=str(exc))
        oldest_first = sorted(batches, key=lambda batch: batch.timestamp or now)
        for batch in oldest_first:
            self.values.put(registration.endpoint, flatten_all(batch.nodes, batch.timestamp or now))
            self._emit(
                lambda listener, nodes=batch.nodes: listener.on_values_cached(registration, nodes)
            )
        _log.debug("device_sent_data", endpoint=registration.endpoint, batches=len(batches))
        self._emit(lambda listener: listener.on_send(registration, batches))
        self._after_uplink(registration)
        return UplinkResult(CHANGED)

    # --- downlink operations -----------------------------------------------------------

    async def ping(self, endpoint: str, timeout: float | None = None) -> float:  # noqa: ASYNC109
        """CoAP ping the registered device; the round-trip time in seconds."""
        registration = await self.registrations.get_by_endpoint(endpoint)
        if registration is None:
            raise DeviceNotRegisteredError(endpoint)
        limit = self.options.request_timeout if timeout is None else timeout
        started = time.perf_counter()
        try:
            await self._require_endpoint().ping(registration.peer, limit)
        except TransportTimeout:
            raise RequestTimeoutError(f"no answer from {endpoint!r} within {limit:g} s") from None
        except TransportError as exc:
            raise DeviceUnreachableError(f"cannot reach {endpoint!r}: {exc}") from None
        self._heard_from(registration)
        return time.perf_counter() - started

    async def read(
        self,
        endpoint: str,
        path: LwM2mPath,
        *,
        format: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool = True,
    ) -> Node:
        """Read ``path`` (Core §5.4.1); the value cache is updated with the answer."""

        def build(registration: Registration) -> Operation:
            fmt = content.choose_format(registration, path, self.models_for(registration), format)
            request = DownlinkRequest.for_path(Method.GET, path, registration.root_path, accept=fmt)
            return Operation(OperationKind.READ, request, (path,))

        result = await self._perform(endpoint, build, timeout, wait)
        assert isinstance(result, Node)
        return result

    async def discover(
        self,
        endpoint: str,
        path: LwM2mPath,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool = True,
    ) -> dict[LwM2mPath, dict[str, ParamValue]]:
        """Discover (Core §5.4.2): the paths under ``path`` with their attributes."""

        def build(registration: Registration) -> Operation:
            request = DownlinkRequest.for_path(
                Method.GET, path, registration.root_path, accept=ContentFormat.LINK_FORMAT
            )
            return Operation(OperationKind.DISCOVER, request, (path,))

        result = await self._perform(endpoint, build, timeout, wait)
        assert isinstance(result, dict)
        return result

    async def write(
        self,
        endpoint: str,
        path: LwM2mPath,
        node: Node,
        *,
        replace: bool = True,
        format: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool = True,
    ) -> None:
        """Write (Core §5.4.3): PUT replaces; ``replace=False`` is a partial update (POST)."""
        if path.depth < 2:
            raise InvalidRequestError("write needs an object instance or resource path")

        def build(registration: Registration) -> Operation:
            models = self.models_for(registration)
            fmt = content.choose_format(registration, path, models, format)
            request = DownlinkRequest.for_path(
                Method.PUT if replace else Method.POST,
                path,
                registration.root_path,
                payload=content.encode_node(fmt, node, path, models),
                content_format=fmt,
            )
            return Operation(OperationKind.WRITE, request, (path,))

        await self._perform(endpoint, build, timeout, wait)

    async def write_attributes(
        self,
        endpoint: str,
        path: LwM2mPath,
        attributes: NotificationAttributes,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool = True,
    ) -> None:
        """Write-Attributes (Core §5.4.4): attributes go as URI query options."""
        if attributes.is_empty():
            raise InvalidRequestError("no attributes to write")

        def build(registration: Registration) -> Operation:
            request = DownlinkRequest.for_path(
                Method.PUT, path, registration.root_path, query=tuple(to_query(attributes))
            )
            return Operation(OperationKind.WRITE_ATTRIBUTES, request, (path,))

        await self._perform(endpoint, build, timeout, wait)

    async def execute(
        self,
        endpoint: str,
        path: LwM2mPath,
        arguments: str | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool = True,
    ) -> None:
        """Execute (Core §5.4.5) a resource, with optional text arguments (``0='a',1``)."""
        if not path.is_resource:
            raise InvalidRequestError("execute needs a resource path")

        def build(registration: Registration) -> Operation:
            request = DownlinkRequest.for_path(
                Method.POST,
                path,
                registration.root_path,
                payload=(arguments or "").encode("utf-8"),
                content_format=ContentFormat.TEXT if arguments else None,
            )
            return Operation(OperationKind.EXECUTE, request, (path,))

        await self._perform(endpoint, build, timeout, wait)

    async def create(
        self,
        endpoint: str,
        path: LwM2mPath,
        instances: ObjectInstance | Sequence[ObjectInstance],
        *,
        format: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool = True,
    ) -> LwM2mPath | None:
        """Create (Core §5.4.6) one or more instances of the object at ``path``.

        Returns the new instance's path when the device reports it (Location-Path).
        """
        if not path.is_object or path.object_id is None:
            raise InvalidRequestError("create needs an object path")
        given = [instances] if isinstance(instances, ObjectInstance) else list(instances)
        if not given:
            raise InvalidRequestError("create needs at least one object instance")
        object_id = path.object_id
        node: Node = LwM2mObject(object_id, {instance.id: instance for instance in given})

        def build(registration: Registration) -> Operation:
            models = self.models_for(registration)
            fmt = content.choose_format(registration, path, models, format)
            request = DownlinkRequest.for_path(
                Method.POST,
                path,
                registration.root_path,
                payload=content.encode_node(fmt, node, path, models),
                content_format=fmt,
            )
            return Operation(OperationKind.CREATE, request, (path,))

        result = await self._perform(endpoint, build, timeout, wait)
        return result if isinstance(result, LwM2mPath) else None

    async def delete(
        self,
        endpoint: str,
        path: LwM2mPath,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool = True,
    ) -> None:
        """Delete (Core §5.4.7) an object instance."""
        if not path.is_object_instance:
            raise InvalidRequestError("delete needs an object instance path")

        def build(registration: Registration) -> Operation:
            request = DownlinkRequest.for_path(Method.DELETE, path, registration.root_path)
            return Operation(OperationKind.DELETE, request, (path,))

        await self._perform(endpoint, build, timeout, wait)

    async def read_composite(
        self,
        endpoint: str,
        paths: Sequence[LwM2mPath],
        *,
        format: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool = True,
    ) -> dict[LwM2mPath, Node]:
        """Read-Composite (Core 1.1 §5.4.8): FETCH with the list of paths."""
        build = self._composite_builder(OperationKind.READ_COMPOSITE, paths, format, False)
        result = await self._perform(endpoint, build, timeout, wait)
        assert isinstance(result, dict)
        return result

    async def write_composite(
        self,
        endpoint: str,
        nodes: Mapping[LwM2mPath, Node],
        *,
        format: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool = True,
    ) -> None:
        """Write-Composite (Core 1.1 §5.4.9): iPATCH on the root with several values."""
        if not nodes:
            raise InvalidRequestError("write-composite needs at least one value")

        def build(registration: Registration) -> Operation:
            fmt = content.choose_composite_format(registration, format)
            payload = content.encode_composite(fmt, nodes, self.models_for(registration))
            request = DownlinkRequest.for_path(
                Method.IPATCH, ROOT, registration.root_path, payload=payload, content_format=fmt
            )
            return Operation(OperationKind.WRITE_COMPOSITE, request, tuple(nodes))

        await self._perform(endpoint, build, timeout, wait)

    async def observe(
        self,
        endpoint: str,
        path: LwM2mPath,
        *,
        format: int | None = None,
        reobserve: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool = True,
    ) -> Node:
        """Observe (Core §5.5.1); returns the current value, notifications go to listeners.

        With ``reobserve`` the observation is set up again after the device re-registers.
        """

        def build(registration: Registration) -> Operation:
            fmt = content.choose_format(registration, path, self.models_for(registration), format)
            request = DownlinkRequest.for_path(
                Method.GET, path, registration.root_path, accept=fmt, observe=0
            )
            return Operation(OperationKind.OBSERVE, request, (path,), reobserve)

        result = await self._perform(endpoint, build, timeout, wait, format)
        assert isinstance(result, Node)
        return result

    async def observe_composite(
        self,
        endpoint: str,
        paths: Sequence[LwM2mPath],
        *,
        format: int | None = None,
        reobserve: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool = True,
    ) -> dict[LwM2mPath, Node]:
        """Observe-Composite (Core 1.1 §5.5.3): FETCH with Observe=0 and a path list."""
        build = self._composite_builder(OperationKind.OBSERVE_COMPOSITE, paths, format, reobserve)
        result = await self._perform(endpoint, build, timeout, wait, format)
        assert isinstance(result, dict)
        return result

    async def cancel_observation(
        self, endpoint: str, paths: LwM2mPath | Sequence[LwM2mPath], *, active: bool = True
    ) -> bool:
        """Stop observing ``paths`` (one path, or a composite set); False if not observed.

        ``active`` sends the cancellation now; otherwise the device learns it from the
        RST answering its next notification.
        """
        key = (paths,) if isinstance(paths, LwM2mPath) else tuple(paths)
        waiting = self._reobserve_on_return.get(endpoint, [])
        waiting[:] = [kept for kept in waiting if kept.operation.paths != key]
        observation = self._observations.get(endpoint, {}).pop(key, None)
        if observation is None:
            return False
        if observation.handle is not None and observation.handle.active:
            try:
                await observation.handle.cancel(active=active)
            except TransportError as exc:
                _log.info("observation_cancel_failed", endpoint=endpoint, error=str(exc))
        _log.debug("observation_cancelled", endpoint=endpoint, paths=[str(p) for p in key])
        return True

    # --- performing requests -----------------------------------------------------------

    def _composite_builder(
        self,
        kind: OperationKind,
        paths: Sequence[LwM2mPath],
        requested: int | None,
        reobserve: bool,
    ) -> Callable[[Registration], Operation]:
        if not paths:
            raise InvalidRequestError("a composite request needs at least one path")

        def build(registration: Registration) -> Operation:
            fmt = content.choose_composite_format(registration, requested)
            body_format = content.path_list_format(fmt)
            request = DownlinkRequest.for_path(
                Method.FETCH,
                ROOT,
                registration.root_path,
                payload=content.encode_paths(body_format, paths),
                content_format=body_format,
                accept=fmt,
                observe=0 if kind is OperationKind.OBSERVE_COMPOSITE else None,
            )
            return Operation(kind, request, tuple(paths), reobserve)

        return build

    async def _perform(
        self,
        endpoint: str,
        build: Callable[[Registration], Operation],
        timeout: float | None,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool,
        requested_format: int | None = None,
    ) -> object:
        registration = await self.registrations.get_by_endpoint(endpoint)
        if registration is None:
            raise DeviceNotRegisteredError(endpoint)
        operation = build(registration)
        limit = self.options.request_timeout if timeout is None else timeout
        if self.is_awake(registration):
            result, _ = await self._execute(registration, operation, limit, requested_format)
            return result
        return await self._enqueue(registration, operation, limit if wait else 0.0)

    async def _execute(
        self,
        registration: Registration,
        operation: Operation,
        timeout: float,  # noqa: ASYNC109 - API deadline, mapped to 504
        requested_format: int | None = None,
    ) -> tuple[object, DownlinkResponse]:
        if operation.kind in _OBSERVE_KINDS:
            return await self._start_observation(registration, operation, timeout, requested_format)
        response = await self._send(registration, operation.request, timeout)
        return self._interpret(registration, operation, response), response

    async def _send(
        self,
        registration: Registration,
        request: DownlinkRequest,
        timeout: float,  # noqa: ASYNC109 - API deadline, mapped to 504
    ) -> DownlinkResponse:
        endpoint = self._require_endpoint()
        try:
            response = await endpoint.send(registration.peer, request, timeout)
        except TransportTimeout:
            raise RequestTimeoutError(
                f"no answer from {registration.endpoint!r} within {timeout:g} s"
            ) from None
        except TransportError as exc:
            raise DeviceUnreachableError(f"cannot reach {registration.endpoint!r}: {exc}") from None
        self._heard_from(registration)
        return response

    def _require_endpoint(self) -> LwM2mEndpoint:
        if self._endpoint is None:
            raise DeviceUnreachableError("no transport attached to the LwM2M server")
        return self._endpoint

    def _interpret(
        self, registration: Registration, operation: Operation, response: DownlinkResponse
    ) -> object:
        if not response.code.is_success:
            raise DeviceErrorResponse(response.code, _diagnostic(response.payload))
        models = self.models_for(registration)
        kind = operation.kind
        if kind in (OperationKind.READ, OperationKind.OBSERVE):
            fmt = _response_format(response, operation.request)
            node = content.decode_node(fmt, response.payload, operation.path, models)
            self._cache(registration, {operation.path: node})
            return node
        if kind in _COMPOSITE_KINDS:
            fmt = _response_format(response, operation.request)
            nodes = content.decode_composite(fmt, response.payload, operation.paths, models)
            self._cache(registration, nodes)
            return nodes
        if kind is OperationKind.DISCOVER:
            try:
                links = decode_links(response.payload)
                return attributes_by_path(links, registration.root_path)
            except DecodeError as exc:
                raise InvalidResponseError(
                    f"device sent an invalid discover answer: {exc}"
                ) from None
        if kind is OperationKind.CREATE:
            return _created_path(response.location_path, registration.root_path)
        return None

    def _cache(self, registration: Registration, nodes: Mapping[LwM2mPath, Node]) -> None:
        self.values.put(registration.endpoint, flatten_all(nodes, _utcnow()))
        self._emit(lambda listener: listener.on_values_cached(registration, nodes))

    # --- queue mode ----------------------------------------------------------------------

    async def _enqueue(
        self, registration: Registration, operation: Operation, wait_seconds: float
    ) -> object:
        now = _utcnow()
        request = QueuedRequest(
            id=uuid.uuid4().hex,
            endpoint=registration.endpoint,
            operation=operation,
            created_at=now,
            expires_at=now + timedelta(seconds=self.options.queued_request_ttl),
        )
        await self.queue.enqueue(request)
        _log.info(
            "request_queued",
            endpoint=registration.endpoint,
            request_id=request.id,
            kind=operation.kind.value,
        )
        if wait_seconds <= 0:
            raise RequestQueuedError(registration.endpoint, request.id)
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._waiters.futures[request.id] = future
        try:
            return await asyncio.wait_for(asyncio.shield(future), wait_seconds)
        except TimeoutError:
            raise RequestQueuedError(registration.endpoint, request.id) from None
        finally:
            del self._waiters.futures[request.id]

    def _drain_if_queued(self, endpoint: str) -> None:
        """Drain the device's queue unless the queue knows (without I/O) it is empty."""
        if self.queue.may_have_pending(endpoint):
            self._spawn(self._drain_queue(endpoint))

    async def _drain_queue(self, endpoint: str) -> None:
        """Send the queued requests of a device that just talked to us, oldest first."""
        if endpoint in self._draining:
            return
        self._draining.add(endpoint)
        try:
            for request in await self.queue.pending(endpoint, _utcnow()):
                registration = await self.registrations.get_by_endpoint(endpoint)
                if registration is None or not self.is_awake(registration):
                    return
                if not await self._deliver(registration, request):
                    return
        finally:
            self._draining.discard(endpoint)

    async def _deliver(self, registration: Registration, request: QueuedRequest) -> bool:
        """Send one queued request; False when the device did not answer (keep it queued)."""
        operation = request.operation
        try:
            result, response = await self._execute(
                registration, operation, self.options.request_timeout
            )
        except (RequestTimeoutError, DeviceUnreachableError) as exc:
            _log.info("queued_request_undelivered", request_id=request.id, error=exc.message)
            return False
        except DeviceErrorResponse as exc:
            await self._finish(
                request, QueuedRequestState.FAILED, None, exc, {"code": str(exc.code)}
            )
            return True
        except Lwm2mServerError as exc:
            await self._finish(
                request, QueuedRequestState.FAILED, None, exc, {"error": exc.message}
            )
            return True
        outcome = {
            "code": str(response.code),
            "content_format": response.content_format,
            "payload_hex": response.payload.hex(),
        }
        await self._finish(request, QueuedRequestState.DONE, result, None, outcome)
        return True

    async def _finish(
        self,
        request: QueuedRequest,
        state: QueuedRequestState,
        result: object,
        error: Lwm2mServerError | None,
        outcome: dict[str, Any],
    ) -> None:
        await self.queue.finish(request.id, state, outcome)
        finished = replace(request, state=state, result=outcome)
        _log.info("queued_request_finished", request_id=request.id, state=state.value)
        self._waiters.resolve(request.id, result, error)
        self._emit(lambda listener: listener.on_queued_request_done(finished, result, error))

    async def _sweep_queue(self) -> None:
        while True:
            await asyncio.sleep(self.options.queue_sweep_interval)
            try:
                for request in await self.queue.expire(_utcnow()):
                    error = QueuedRequestExpiredError(f"queued request {request.id} expired")
                    self._waiters.resolve(request.id, None, error)
                    self._emit(
                        lambda listener, request=request, error=error: (
                            listener.on_queued_request_done(request, None, error)
                        )
                    )
            except Exception:  # a failing store must not end the sweeper for good
                _log.exception("queue_sweep_failed")

    # --- presence and lifetime ---------------------------------------------------------

    def _after_uplink(self, registration: Registration) -> None:
        self._heard_from(registration)
        if registration.queue_mode:
            self._drain_if_queued(registration.endpoint)

    def _heard_from(self, registration: Registration) -> None:
        self.devices.record_contact(registration.endpoint, _utcnow())
        if not registration.queue_mode:
            return
        self._presence.schedule_in(registration.endpoint, self.options.awake_window)
        if registration.endpoint not in self._awake:
            self._awake.add(registration.endpoint)
            _log.debug("device_awake", endpoint=registration.endpoint)
            self._emit(lambda listener: listener.on_awake(registration))

    def _on_awake_over(self, endpoint: str) -> None:
        if endpoint not in self._awake:
            return
        self._awake.discard(endpoint)
        self._spawn(self._report_sleeping(endpoint))

    async def _report_sleeping(self, endpoint: str) -> None:
        registration = await self.registrations.get_by_endpoint(endpoint)
        if registration is not None:
            _log.debug("device_sleeping", endpoint=endpoint)
            self._emit(lambda listener: listener.on_sleeping(registration))

    def _schedule_expiry(self, registration: Registration) -> None:
        self._expiry.schedule_in(
            registration.registration_id, registration.lifetime + self.options.lifetime_grace
        )

    def _on_lifetime_over(self, registration_id: str) -> None:
        self._spawn(self._expire(registration_id))

    async def _expire(self, registration_id: str) -> None:
        registration = await self.registrations.remove(registration_id)
        if registration is not None:
            await self._deregistered(registration, expired=True)

    def _refuse(
        self, endpoint: str, peer: Peer, admission: Admission, operation: str
    ) -> UplinkResult:
        """Answer 4.03 and report why (log line, ``on_registration_refused``)."""
        log = _log.warning if admission.is_security_refusal else _log.info
        log(
            "registration_forbidden",
            endpoint=endpoint,
            peer=str(peer),
            secure=peer.secure,
            operation=operation,
            reason=admission.value,
        )
        self._emit(
            lambda listener: listener.on_registration_refused(
                endpoint, peer, admission.value, operation
            )
        )
        return UplinkResult(FORBIDDEN, diagnostic=admission.diagnostic)

    def _policy_refusal(self, registration: Registration, operation: str) -> UplinkResult | None:
        """4.03 (reported like a registry refusal) if the admission policy refuses."""
        if self.admission_policy is None:
            return None
        refusal = self.admission_policy.refusal(registration, operation)
        if refusal is None:
            return None
        endpoint, peer = registration.endpoint, registration.peer
        _log.info(
            "registration_forbidden",
            endpoint=endpoint,
            peer=str(peer),
            operation=operation,
            reason=refusal.reason,
        )
        self._emit(
            lambda listener: listener.on_registration_refused(
                endpoint, peer, refusal.reason, operation
            )
        )
        return UplinkResult(FORBIDDEN, diagnostic=refusal.diagnostic)

    def _address_changed(self, registration: Registration, previous: Peer, operation: str) -> None:
        _log.info(
            "registration_address_changed",
            endpoint=registration.endpoint,
            registration_id=registration.registration_id,
            operation=operation,
            previous_peer=str(previous),
            peer=str(registration.peer),
        )
        self._emit(lambda listener: listener.on_address_changed(registration, previous, operation))

    async def _deregistered(
        self,
        registration: Registration,
        *,
        expired: bool,
        registered_peer: Peer | None = None,
    ) -> None:
        """``registered_peer``: the registration's address when a De-register came from
        another one (``registration.peer``)."""
        self._expiry.cancel(registration.registration_id)
        self._presence.cancel(registration.endpoint)
        self._awake.discard(registration.endpoint)
        kept = self._forget_observations(registration.endpoint, keep_reobserve=expired)
        if kept:
            self._reobserve_on_return[registration.endpoint] = kept
        else:
            self._reobserve_on_return.pop(registration.endpoint, None)
        await self.devices.record_deregistration(registration, _utcnow())
        _log.info(
            "device_deregistered",
            endpoint=registration.endpoint,
            registration_id=registration.registration_id,
            expired=expired,
            peer=str(registration.peer),
            registered_peer=str(registered_peer or registration.peer),
        )
        self._emit(lambda listener: listener.on_deregistered(registration, expired=expired))

    # --- observations ------------------------------------------------------------------

    async def _start_observation(
        self,
        registration: Registration,
        operation: Operation,
        timeout: float,  # noqa: ASYNC109 - API deadline, mapped to 504
        requested_format: int | None,
    ) -> tuple[object, DownlinkResponse]:
        endpoint_name = registration.endpoint
        key = operation.paths
        previous = self._observations.get(endpoint_name, {}).pop(key, None)
        if previous is not None and previous.handle is not None and previous.handle.active:
            await previous.handle.cancel(active=False)
        observation = _Observation(registration, operation, requested_format)

        def on_notify(response: DownlinkResponse) -> None:
            self._on_notification(endpoint_name, key, observation, response)

        def on_end() -> None:
            current = self._observations.get(endpoint_name, {})
            if current.get(key) is observation:
                del current[key]
                _log.debug("observation_ended", endpoint=endpoint_name, paths=[str(p) for p in key])

        try:
            handle = await self._require_endpoint().observe(
                registration.peer, operation.request, on_notify, on_end, timeout
            )
        except TransportTimeout:
            raise RequestTimeoutError(
                f"no answer from {endpoint_name!r} within {timeout:g} s"
            ) from None
        except TransportError as exc:
            raise DeviceUnreachableError(f"cannot reach {endpoint_name!r}: {exc}") from None
        self._heard_from(registration)
        response = handle.initial_response
        try:
            result = self._interpret(registration, operation, response)
        except Lwm2mServerError:
            if handle.active:
                await handle.cancel(active=False)
            raise
        if handle.active:
            observation.handle = handle
            self._observations.setdefault(endpoint_name, {})[key] = observation
        _log.debug(
            "observation_started",
            endpoint=endpoint_name,
            paths=[str(p) for p in key],
            established=handle.active,
        )
        return result, response

    def _on_notification(
        self,
        endpoint: str,
        key: tuple[LwM2mPath, ...],
        observation: _Observation,
        response: DownlinkResponse,
    ) -> None:
        registration = observation.registration
        self._heard_from(registration)
        if not response.code.is_success:
            return
        operation = observation.operation
        models = self.models_for(registration)
        fmt = _response_format(response, operation.request)
        try:
            if operation.kind is OperationKind.OBSERVE_COMPOSITE:
                nodes = content.decode_composite(fmt, response.payload, key, models)
            else:
                nodes = {key[0]: content.decode_node(fmt, response.payload, key[0], models)}
        except InvalidResponseError as exc:
            _log.info("notification_undecodable", endpoint=endpoint, error=exc.message)
            return
        self._cache(registration, nodes)
        self._emit(lambda listener: listener.on_notification(registration, key, nodes))

    def _forget_observations(self, endpoint: str, *, keep_reobserve: bool) -> list[_Observation]:
        """Drop the endpoint's observations (the device lost them); return the ones to redo."""
        observations = self._observations.pop(endpoint, {})
        for observation in observations.values():
            if observation.handle is not None and observation.handle.active:
                self._spawn(observation.handle.cancel(active=False))
        if not keep_reobserve:
            return []
        return [
            observation for observation in observations.values() if observation.operation.reobserve
        ]

    async def _reobserve(
        self, registration: Registration, observations: list[_Observation]
    ) -> None:
        for observation in observations:
            paths = observation.operation.paths
            fmt = observation.requested_format
            try:
                if observation.operation.kind is OperationKind.OBSERVE_COMPOSITE:
                    await self.observe_composite(registration.endpoint, paths, format=fmt)
                else:
                    await self.observe(registration.endpoint, paths[0], format=fmt)
            except Lwm2mServerError as exc:
                _log.info(
                    "reobserve_failed",
                    endpoint=registration.endpoint,
                    paths=[str(path) for path in paths],
                    error=exc.message,
                )

    # --- plumbing ----------------------------------------------------------------------

    def _emit(self, call: Callable[[ServerListener], None]) -> None:
        for listener in list(self._listeners):
            try:
                call(listener)
            except Exception:  # a broken listener must not break the protocol exchange
                _log.exception("listener_failed", listener=type(listener).__name__)

    def _spawn(self, work: Coroutine[Any, Any, Any] | Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("background_task_failed", error=repr(task.exception()))


def _response_format(response: DownlinkResponse, request: DownlinkRequest) -> int:
    if response.content_format is not None:
        return response.content_format
    if request.accept is not None:
        return request.accept
    raise InvalidResponseError("device answered without a content format")


def _diagnostic(payload: bytes) -> str:
    return payload[:200].decode("utf-8", errors="replace") if payload else ""


def _created_path(location: tuple[str, ...], root_path: str) -> LwM2mPath | None:
    root = tuple(segment for segment in root_path.split("/") if segment)
    segments = location[len(root) :] if location[: len(root)] == root else location
    try:
        return LwM2mPath.parse("/".join(segments)) if segments else None
    except InvalidPathError:
        return None
