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
from collections.abc import Callable, Sequence

from meadowlark import metrics
from meadowlark.lwm2m.model.registry import ModelRegistry, VersionedModels, builtin_registry
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
        # Requests to devices are the downlink sender's own methods (documented there).
        self.ping = self.downlink.ping
        self.read = self.downlink.read
        self.discover = self.downlink.discover
        self.write = self.downlink.write
        self.write_attributes = self.downlink.write_attributes
        self.execute = self.downlink.execute
        self.create = self.downlink.create
        self.delete = self.downlink.delete
        self.read_composite = self.downlink.read_composite
        self.write_composite = self.downlink.write_composite
        self.observe = self.downlink.observe
        self.observe_composite = self.downlink.observe_composite

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
        result = await self.registration_service.on_register(peer, query, payload, content_format)
        code = result.code
        metrics.UPLINKS.inc("register", code)
        metrics.REGISTRATIONS.inc(metrics.registration_result(*code))
        return result

    async def on_update(
        self,
        peer: Peer,
        location: str,
        query: Sequence[str],
        payload: bytes,
        content_format: int | None,
    ) -> UplinkResult:
        result = await self.registration_service.on_update(
            peer, location, query, payload, content_format
        )
        metrics.UPLINKS.inc("update", result.code)
        return result

    async def on_deregister(self, peer: Peer, location: str) -> UplinkResult:
        result = await self.registration_service.on_deregister(peer, location)
        metrics.UPLINKS.inc("deregister", result.code)
        return result

    async def on_send(self, peer: Peer, payload: bytes, content_format: int | None) -> UplinkResult:
        result = await self.registration_service.on_send(peer, payload, content_format)
        metrics.UPLINKS.inc("send", result.code)
        return result

    def on_peer_closed(self, peer: Peer) -> None:
        self.queue_mode.peer_closed(peer)

    # --- downlink operations (DownlinkSender) ------------------------------------------

    async def cancel_observation(
        self, endpoint: str, paths: LwM2mPath | Sequence[LwM2mPath], *, active: bool = True
    ) -> bool:
        """Stop observing ``paths`` (one path, or a composite set); False if not observed.

        ``active`` sends the cancellation now; otherwise the device learns it from the
        RST answering its next notification.
        """
        key = (paths,) if isinstance(paths, LwM2mPath) else tuple(paths)
        return await self.observations.cancel(endpoint, key, active=active)
