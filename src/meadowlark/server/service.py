"""The LwM2M server: registrations, downlink operations, observations, queue mode, Send.

``LwM2mServer`` is the ``UplinkHandler`` a transport calls for device requests and the
programmatic API (REST, tests) for requests to devices. It reaches devices only through
an ``LwM2mEndpoint``; set it with ``attach`` once the transport exists.

It is a facade over four parts, one file each (the seams of Eclipse Leshan):
``RegistrationService`` (Register, Update, De-register, Send, lifetime expiry),
``ObservationService`` (observations and notifications), ``DownlinkSender`` (read,
write, execute... through its single entry point ``perform``) and ``QueueModeSender``
(awake/sleeping devices, queued requests).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from meadowlark.lwm2m.codec.attributes import NotificationAttributes
from meadowlark.lwm2m.codec.link_format import ParamValue
from meadowlark.lwm2m.model.registry import ModelRegistry, VersionedModels, builtin_registry
from meadowlark.lwm2m.node import Node, ObjectInstance
from meadowlark.lwm2m.path import ROOT, LwM2mPath
from meadowlark.server.context import ServerContext, ServerListener, ServerOptions
from meadowlark.server.downlink_sender import DownlinkSender
from meadowlark.server.observation_service import ObservationService
from meadowlark.server.ports import (
    AdmissionPolicy,
    DeviceRegistry,
    InMemoryDeviceRegistry,
    InMemoryRequestQueue,
    InMemoryValueCache,
    RequestQueue,
    ValueCache,
)
from meadowlark.server.queue_mode_sender import QueueModeSender
from meadowlark.server.registration import (
    InMemoryRegistrationStore,
    Registration,
    RegistrationStore,
)
from meadowlark.server.registration_service import RegistrationService
from meadowlark.server.transport import LwM2mEndpoint, Peer, TrafficCounter, UplinkResult
from meadowlark.server.values import CachedValue

__all__ = ["LwM2mServer", "ServerListener", "ServerOptions"]


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
        default_models = models or builtin_registry()
        self._context = ServerContext(
            options=options or ServerOptions(),
            models=default_models,
            model_resolver=model_resolver or (lambda _registration: default_models),
            registrations=registrations or InMemoryRegistrationStore(),
            devices=devices or InMemoryDeviceRegistry(),
            values=values or InMemoryValueCache(),
            queue=queue or InMemoryRequestQueue(),
        )
        self.traffic = TrafficCounter()
        """What the transport exchanged with each address (it counts, others drain)."""
        self.queue_mode = QueueModeSender(
            self._context, lambda *call: self.downlink.send_now(*call), clock
        )
        self.observations = ObservationService(self._context, self.queue_mode.heard_from)
        self.downlink = DownlinkSender(self._context, self.queue_mode, self.observations)
        self.registration_service = RegistrationService(
            self._context, self.queue_mode, self.observations, self.downlink, clock
        )

    # --- shared state ------------------------------------------------------------------

    @property
    def options(self) -> ServerOptions:
        return self._context.options

    @property
    def models(self) -> ModelRegistry:
        return self._context.models

    @property
    def registrations(self) -> RegistrationStore:
        return self._context.registrations

    @property
    def devices(self) -> DeviceRegistry:
        return self._context.devices

    @property
    def values(self) -> ValueCache:
        return self._context.values

    @property
    def queue(self) -> RequestQueue:
        return self._context.queue

    @property
    def admission_policy(self) -> AdmissionPolicy | None:
        """Further admission rules (set by the runtime; e.g. SIM states)."""
        return self._context.admission_policy

    @admission_policy.setter
    def admission_policy(self, policy: AdmissionPolicy | None) -> None:
        self._context.admission_policy = policy

    # --- lifecycle ---------------------------------------------------------------------

    def attach(self, endpoint: LwM2mEndpoint) -> None:
        """Use ``endpoint`` to reach devices (the transport is built after the server)."""
        self.downlink.attach(endpoint)

    def add_listener(self, listener: ServerListener) -> None:
        self._context.listeners.append(listener)

    def remove_listener(self, listener: ServerListener) -> None:
        self._context.listeners.remove(listener)

    async def start(self) -> None:
        self.registration_service.start()
        self.queue_mode.start()

    async def stop(self) -> None:
        """Stop timers and background work; observations are dropped without messages."""
        await self.registration_service.stop()
        await self.queue_mode.stop()
        await self._context.cancel_tasks()
        await self.observations.stop()

    async def forget(self, endpoint: str) -> bool:
        """Drop the registration of a deleted or barred device; False if not registered.

        Nothing is sent: the device learns it from 4.04 on its next Update.
        """
        return await self.registration_service.forget(endpoint)

    # --- queries -----------------------------------------------------------------------

    async def get_registration(self, endpoint: str) -> Registration | None:
        return await self._context.registrations.get_by_endpoint(endpoint)

    async def all_registrations(self) -> list[Registration]:
        return await self._context.registrations.all()

    def is_awake(self, registration: Registration) -> bool:
        """Whether requests go out now (always, unless the device is in queue mode)."""
        return self.queue_mode.is_awake(registration)

    def observed_paths(self, endpoint: str) -> list[tuple[LwM2mPath, ...]]:
        return self.observations.observed_paths(endpoint)

    async def cached_values(
        self, endpoint: str, prefix: LwM2mPath = ROOT
    ) -> dict[LwM2mPath, CachedValue]:
        return await self._context.values.get(endpoint, prefix)

    def models_for(self, registration: Registration) -> VersionedModels:
        return self._context.models_for(registration)

    # --- uplink: Register, Update, De-register, Send (UplinkHandler) ---------------------

    async def on_register(
        self, peer: Peer, query: Sequence[str], payload: bytes, content_format: int | None
    ) -> UplinkResult:
        return await self.registration_service.on_register(peer, query, payload, content_format)

    async def on_update(
        self,
        peer: Peer,
        location: str,
        query: Sequence[str],
        payload: bytes,
        content_format: int | None,
    ) -> UplinkResult:
        return await self.registration_service.on_update(
            peer, location, query, payload, content_format
        )

    async def on_deregister(self, peer: Peer, location: str) -> UplinkResult:
        return await self.registration_service.on_deregister(peer, location)

    async def on_send(self, peer: Peer, payload: bytes, content_format: int | None) -> UplinkResult:
        return await self.registration_service.on_send(peer, payload, content_format)

    # --- downlink operations (DownlinkSender) ------------------------------------------

    async def ping(self, endpoint: str, timeout: float | None = None) -> float:  # noqa: ASYNC109
        """CoAP ping the registered device; the round-trip time in seconds."""
        return await self.downlink.ping(endpoint, timeout)

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
        return await self.downlink.read(endpoint, path, format=format, timeout=timeout, wait=wait)

    async def discover(
        self,
        endpoint: str,
        path: LwM2mPath,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool = True,
    ) -> dict[LwM2mPath, dict[str, ParamValue]]:
        """Discover (Core §5.4.2): the paths under ``path`` with their attributes."""
        return await self.downlink.discover(endpoint, path, timeout=timeout, wait=wait)

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
        await self.downlink.write(
            endpoint, path, node, replace=replace, format=format, timeout=timeout, wait=wait
        )

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
        await self.downlink.write_attributes(endpoint, path, attributes, timeout=timeout, wait=wait)

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
        await self.downlink.execute(endpoint, path, arguments, timeout=timeout, wait=wait)

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
        return await self.downlink.create(
            endpoint, path, instances, format=format, timeout=timeout, wait=wait
        )

    async def delete(
        self,
        endpoint: str,
        path: LwM2mPath,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool = True,
    ) -> None:
        """Delete (Core §5.4.7) an object instance."""
        await self.downlink.delete(endpoint, path, timeout=timeout, wait=wait)

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
        return await self.downlink.read_composite(
            endpoint, paths, format=format, timeout=timeout, wait=wait
        )

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
        await self.downlink.write_composite(
            endpoint, nodes, format=format, timeout=timeout, wait=wait
        )

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
        return await self.downlink.observe(
            endpoint, path, format=format, reobserve=reobserve, timeout=timeout, wait=wait
        )

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
        return await self.downlink.observe_composite(
            endpoint, paths, format=format, reobserve=reobserve, timeout=timeout, wait=wait
        )

    async def cancel_observation(
        self, endpoint: str, paths: LwM2mPath | Sequence[LwM2mPath], *, active: bool = True
    ) -> bool:
        """Stop observing ``paths`` (one path, or a composite set); False if not observed.

        ``active`` sends the cancellation now; otherwise the device learns it from the
        RST answering its next notification.
        """
        key = (paths,) if isinstance(paths, LwM2mPath) else tuple(paths)
        return await self.observations.cancel(endpoint, key, active=active)
