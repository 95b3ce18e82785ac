"""Observations (Core §5.5, RFC 7641): the ones established per device, their
notifications, and which to set up again when a device whose lifetime ran out returns.

The downlink sender sends the Observe request (``prepare`` gives it the callbacks, and
``established`` records the transport's handle); this service owns what follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from meadowlark import metrics
from meadowlark.lwm2m.model.registry import VersionedModels
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server import content
from meadowlark.server.context import ServerContext
from meadowlark.server.errors import InvalidResponseError
from meadowlark.server.operations import Operation, OperationKind
from meadowlark.server.registration import Registration
from meadowlark.server.transport import (
    DownlinkRequest,
    DownlinkResponse,
    ObservationHandle,
    TransportError,
)

_log = structlog.get_logger("meadowlark.lwm2m")

ObservationKey = tuple[LwM2mPath, ...]


@dataclass
class Observation:
    """One observation of a path (or composite set of paths) of a device."""

    registration: Registration
    operation: Operation
    requested_format: int | None
    on_notify: Callable[[DownlinkResponse], None] = field(repr=False)
    on_end: Callable[[], None] = field(repr=False)
    handle: ObservationHandle | None = None
    _models: tuple[object, VersionedModels] | None = field(default=None, repr=False)
    """(registry, view at the device's object versions), kept between notifications."""

    def models(self, context: ServerContext) -> VersionedModels:
        """The device's models, rebuilt only when its registry (e.g. a tenant's custom
        objects changed) or its registration (an Update) did."""
        registry = context.model_resolver(self.registration)
        cached = self._models
        if cached is None or cached[0] is not registry:
            cached = self._models = (
                registry,
                registry.with_versions(self.registration.object_versions),
            )
        return cached[1]

    @property
    def key(self) -> ObservationKey:
        return self.operation.paths

    @property
    def active(self) -> bool:
        return self.handle is not None and self.handle.active


class ObservationService:
    """The observations of every device, and the notifications they bring."""

    def __init__(self, context: ServerContext, heard_from: Callable[[Registration], None]) -> None:
        self._context = context
        self._heard_from = heard_from
        self._observations: dict[str, dict[ObservationKey, Observation]] = {}
        # Observations to set up again when a device whose lifetime ran out registers.
        self._reobserve_on_return: dict[str, list[Observation]] = {}

    async def stop(self) -> None:
        """Drop every observation without a message to the devices."""
        for observations in self._observations.values():
            for observation in observations.values():
                if observation.active:
                    assert observation.handle is not None
                    await observation.handle.cancel(active=False)
        self._observations.clear()

    def observed_paths(self, endpoint: str) -> list[ObservationKey]:
        return [
            key
            for key, observation in self._observations.get(endpoint, {}).items()
            if observation.active
        ]

    async def prepare(
        self, registration: Registration, operation: Operation, requested_format: int | None
    ) -> Observation:
        """A new observation of ``operation.paths``, replacing (cancelling) an existing
        one; ``established`` records it once the device accepted."""
        endpoint = registration.endpoint
        key = operation.paths
        previous = self._observations.get(endpoint, {}).pop(key, None)
        if previous is not None and previous.active:
            assert previous.handle is not None
            await previous.handle.cancel(active=False)

        def on_notify(response: DownlinkResponse) -> None:
            self._on_notification(endpoint, key, observation, response)

        def on_end() -> None:
            current = self._observations.get(endpoint, {})
            if current.get(key) is observation:
                del current[key]
                _log.debug("observation_ended", endpoint=endpoint, paths=[str(p) for p in key])

        observation = Observation(registration, operation, requested_format, on_notify, on_end)
        return observation

    def established(self, observation: Observation, handle: ObservationHandle) -> None:
        """The device answered the Observe request; keep the observation if it is active."""
        endpoint = observation.registration.endpoint
        if handle.active:
            observation.handle = handle
            self._observations.setdefault(endpoint, {})[observation.key] = observation
        _log.debug(
            "observation_started",
            endpoint=endpoint,
            paths=[str(p) for p in observation.key],
            established=handle.active,
        )

    async def cancel(self, endpoint: str, key: ObservationKey, *, active: bool) -> bool:
        """Stop observing ``key``; False if it was not observed (see ``LwM2mServer``)."""
        waiting = self._reobserve_on_return.get(endpoint, [])
        waiting[:] = [kept for kept in waiting if kept.operation.paths != key]
        observation = self._observations.get(endpoint, {}).pop(key, None)
        if observation is None:
            return False
        if observation.active:
            assert observation.handle is not None
            try:
                await observation.handle.cancel(active=active)
            except TransportError as exc:
                _log.info("observation_cancel_failed", endpoint=endpoint, error=str(exc))
        _log.debug("observation_cancelled", endpoint=endpoint, paths=[str(p) for p in key])
        return True

    def registration_updated(self, registration: Registration) -> None:
        """Notifications after an Update are read with the updated registration."""
        for observation in self._observations.get(registration.endpoint, {}).values():
            observation.registration = registration
            observation._models = None

    def device_registered(self, endpoint: str) -> list[Observation]:
        """A (new) registration: the device lost its observations; return those to redo."""
        kept = self._reobserve_on_return.pop(endpoint, [])
        return kept + self._forget(endpoint, keep_reobserve=True)

    def device_deregistered(self, endpoint: str, *, expired: bool) -> None:
        """The registration ended; when it ``expired``, the observations to redo are kept
        for the device's return."""
        kept = self._forget(endpoint, keep_reobserve=expired)
        if kept:
            self._reobserve_on_return[endpoint] = kept
        else:
            self._reobserve_on_return.pop(endpoint, None)

    def _forget(self, endpoint: str, *, keep_reobserve: bool) -> list[Observation]:
        """Drop the endpoint's observations (the device lost them); return the ones to redo."""
        observations = self._observations.pop(endpoint, {})
        for observation in observations.values():
            if observation.active:
                assert observation.handle is not None
                self._context.spawn(observation.handle.cancel(active=False))
        if not keep_reobserve:
            return []
        return [
            observation for observation in observations.values() if observation.operation.reobserve
        ]

    def _on_notification(
        self,
        endpoint: str,
        key: ObservationKey,
        observation: Observation,
        response: DownlinkResponse,
    ) -> None:
        registration = observation.registration
        self._heard_from(registration)
        if not response.code.is_success:
            metrics.UPLINKS.inc("notify", response.code)
            return
        operation = observation.operation
        models = observation.models(self._context)
        fmt = response_format(response, operation.request)
        try:
            if operation.kind is OperationKind.OBSERVE_COMPOSITE:
                nodes = content.decode_composite(fmt, response.payload, key, models)
            else:
                nodes = {key[0]: content.decode_node(fmt, response.payload, key[0], models)}
        except InvalidResponseError as exc:
            _log.info("notification_undecodable", endpoint=endpoint, error=exc.message)
            metrics.UPLINKS.inc("notify", "undecodable")
            return
        metrics.UPLINKS.inc("notify", response.code)
        self._context.cache(registration, nodes)
        self._context.emit(lambda listener: listener.on_notification(registration, key, nodes))


def response_format(response: DownlinkResponse, request: DownlinkRequest) -> int:
    """The content format of an answer: its own, else the one the request asked for."""
    if response.content_format is not None:
        return response.content_format
    if request.accept is not None:
        return request.accept
    raise InvalidResponseError("device answered without a content format")
