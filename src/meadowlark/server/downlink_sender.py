"""The downlink sender: LwM2M operations from the server to a device (Core §5.4, §5.5).

Every operation to a device passes through ``DownlinkSender.perform``: it looks up the
registration, builds the ``Operation`` (plain data: kind, ``DownlinkRequest``, paths; see
``Operation.to_json``), then sends it now with ``send_now`` when the device is awake, or
queues it for a sleeping queue-mode device. A node that does not hold the device's
transport address can hand the built ``Operation`` to the node that does at that point.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import structlog

from meadowlark import metrics
from meadowlark.lwm2m.codec.attributes import NotificationAttributes, to_query
from meadowlark.lwm2m.codec.errors import DecodeError
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.codec.link_format import ParamValue, attributes_by_path, decode_links
from meadowlark.lwm2m.node import LwM2mObject, Node, ObjectInstance
from meadowlark.lwm2m.path import ROOT, InvalidPathError, LwM2mPath
from meadowlark.server import content
from meadowlark.server.context import ServerContext
from meadowlark.server.errors import (
    DeviceErrorResponse,
    DeviceNotRegisteredError,
    DeviceUnreachableError,
    InvalidRequestError,
    InvalidResponseError,
    Lwm2mServerError,
    RequestTimeoutError,
)
from meadowlark.server.observation_service import ObservationService, response_format
from meadowlark.server.operations import Operation, OperationKind
from meadowlark.server.queue_mode_sender import QueueModeSender
from meadowlark.server.registration import Registration
from meadowlark.server.transport import (
    DownlinkRequest,
    DownlinkResponse,
    LwM2mEndpoint,
    Method,
    TransportError,
    TransportTimeout,
)

_log = structlog.get_logger("meadowlark.lwm2m")

_OBSERVE_KINDS = frozenset({OperationKind.OBSERVE, OperationKind.OBSERVE_COMPOSITE})
_COMPOSITE_KINDS = frozenset({OperationKind.READ_COMPOSITE, OperationKind.OBSERVE_COMPOSITE})

OperationBuilder = Callable[[Registration], Operation]
"""Builds an operation for a device's registration (its root path, formats, models)."""


class RemoteDownlink(Protocol):
    """Another node's way to the device (scaled-out deployments; see ``cluster/``)."""

    async def holds(self, registration: Registration) -> bool:
        """Whether this node holds ``registration`` (its socket reaches the device)."""

    async def perform(
        self,
        registration: Registration,
        operation: Operation,
        timeout: float,  # noqa: ASYNC109 - API deadline, carried to the other node
        wait: bool,
        requested_format: int | None,
    ) -> object:
        """Have the node holding ``registration`` perform ``operation``; its result."""

    async def ping(self, registration: Registration, timeout: float) -> float:  # noqa: ASYNC109
        """Have the node holding ``registration`` ping the device; the round trip."""


class DownlinkSender:
    """Read, write, execute, observe... a registered device through an ``LwM2mEndpoint``."""

    def __init__(
        self,
        context: ServerContext,
        queue_mode: QueueModeSender,
        observations: ObservationService,
    ) -> None:
        self._context = context
        self._queue_mode = queue_mode
        self._observations = observations
        self._endpoint: LwM2mEndpoint | None = None
        self.remote: RemoteDownlink | None = None
        """Set in a scaled-out deployment: the way to devices another node holds."""

    def attach(self, endpoint: LwM2mEndpoint) -> None:
        """Use ``endpoint`` to reach devices (the transport is built after the server)."""
        self._endpoint = endpoint

    async def ping(self, endpoint: str, timeout: float | None = None) -> float:  # noqa: ASYNC109
        """CoAP ping the registered device; the round-trip time in seconds."""
        registration = await self._context.registrations.get_by_endpoint(endpoint)
        if registration is None:
            raise DeviceNotRegisteredError(endpoint)
        limit = self._context.options.request_timeout if timeout is None else timeout
        if self.remote is not None and not await self.remote.holds(registration):
            return await self.remote.ping(registration, limit)
        started = time.perf_counter()
        try:
            await self._transport().ping(registration.peer, limit)
        except TransportTimeout:
            metrics.DOWNLINKS.inc("ping", "timeout")
            raise RequestTimeoutError(f"no answer from {endpoint!r} within {limit:g} s") from None
        except TransportError as exc:
            metrics.DOWNLINKS.inc("ping", "unreachable")
            raise DeviceUnreachableError(f"cannot reach {endpoint!r}: {exc}") from None
        self._queue_mode.heard_from(registration)
        elapsed = time.perf_counter() - started
        metrics.DOWNLINKS.inc("ping", "pong")
        metrics.DOWNLINK_SECONDS.observe(elapsed, "ping")
        return elapsed

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
            fmt = content.choose_format(
                registration, path, self._context.models_for(registration), format
            )
            request = DownlinkRequest.for_path(Method.GET, path, registration.root_path, accept=fmt)
            return Operation(OperationKind.READ, request, (path,))

        result = await self.perform(endpoint, build, timeout, wait)
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

        result = await self.perform(endpoint, build, timeout, wait)
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
            models = self._context.models_for(registration)
            fmt = content.choose_format(registration, path, models, format)
            request = DownlinkRequest.for_path(
                Method.PUT if replace else Method.POST,
                path,
                registration.root_path,
                payload=content.encode_node(fmt, node, path, models),
                content_format=fmt,
            )
            return Operation(OperationKind.WRITE, request, (path,))

        await self.perform(endpoint, build, timeout, wait)

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

        await self.perform(endpoint, build, timeout, wait)

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

        await self.perform(endpoint, build, timeout, wait)

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
            models = self._context.models_for(registration)
            fmt = content.choose_format(registration, path, models, format)
            request = DownlinkRequest.for_path(
                Method.POST,
                path,
                registration.root_path,
                payload=content.encode_node(fmt, node, path, models),
                content_format=fmt,
            )
            return Operation(OperationKind.CREATE, request, (path,))

        result = await self.perform(endpoint, build, timeout, wait)
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

        await self.perform(endpoint, build, timeout, wait)

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
        result = await self.perform(endpoint, build, timeout, wait)
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
            payload = content.encode_composite(fmt, nodes, self._context.models_for(registration))
            request = DownlinkRequest.for_path(
                Method.IPATCH, ROOT, registration.root_path, payload=payload, content_format=fmt
            )
            return Operation(OperationKind.WRITE_COMPOSITE, request, tuple(nodes))

        await self.perform(endpoint, build, timeout, wait)

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
            fmt = content.choose_format(
                registration, path, self._context.models_for(registration), format
            )
            request = DownlinkRequest.for_path(
                Method.GET, path, registration.root_path, accept=fmt, observe=0
            )
            return Operation(OperationKind.OBSERVE, request, (path,), reobserve)

        result = await self.perform(endpoint, build, timeout, wait, format)
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
        result = await self.perform(endpoint, build, timeout, wait, format)
        assert isinstance(result, dict)
        return result

    # --- the entry point ---------------------------------------------------------------

    async def perform(
        self,
        endpoint: str,
        build: OperationBuilder,
        timeout: float | None,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool,
        requested_format: int | None = None,
    ) -> object:
        """Every downlink operation to ``endpoint`` passes here: build it for the
        device's registration, send it now or queue it for a sleeping device (waiting
        up to ``timeout`` for its delivery if ``wait``); or, when another node holds the
        registration, hand it to that node (``remote``)."""
        registration = await self._context.registrations.get_by_endpoint(endpoint)
        if registration is None:
            raise DeviceNotRegisteredError(endpoint)
        operation = build(registration)
        limit = self._context.options.request_timeout if timeout is None else timeout
        if self.remote is not None and not await self.remote.holds(registration):
            return await self.remote.perform(registration, operation, limit, wait, requested_format)
        return await self.perform_held(registration, operation, limit, wait, requested_format)

    async def perform_held(
        self,
        registration: Registration,
        operation: Operation,
        timeout: float,  # noqa: ASYNC109 - API deadline, mapped to 504
        wait: bool,
        requested_format: int | None = None,
    ) -> object:
        """``perform`` for a registration this node holds (another node's request too)."""
        if self._queue_mode.is_awake(registration):
            result, _ = await self.send_now(registration, operation, timeout, requested_format)
            return result
        return await self._queue_mode.enqueue(registration, operation, timeout if wait else 0.0)

    async def send_now(
        self,
        registration: Registration,
        operation: Operation,
        timeout: float,  # noqa: ASYNC109 - API deadline, mapped to 504
        requested_format: int | None = None,
    ) -> tuple[object, DownlinkResponse]:
        """Send ``operation`` to the device now; its interpreted result and raw answer."""
        kind = operation.kind.value
        started = time.perf_counter()
        try:
            if operation.kind in _OBSERVE_KINDS:
                outcome = await self._observe(registration, operation, timeout, requested_format)
            else:
                response = await self._send(registration, operation.request, timeout)
                outcome = self._interpret(registration, operation, response), response
        except Lwm2mServerError as exc:
            metrics.DOWNLINKS.inc(kind, _result_label(exc))
            raise
        metrics.DOWNLINKS.inc(kind, outcome[1].code)
        metrics.DOWNLINK_SECONDS.observe(time.perf_counter() - started, kind)
        return outcome

    # --- sending -------------------------------------------------------------------------

    def _composite_builder(
        self,
        kind: OperationKind,
        paths: Sequence[LwM2mPath],
        requested: int | None,
        reobserve: bool,
    ) -> OperationBuilder:
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

    async def _send(
        self,
        registration: Registration,
        request: DownlinkRequest,
        timeout: float,  # noqa: ASYNC109 - API deadline, mapped to 504
    ) -> DownlinkResponse:
        try:
            response = await self._transport().send(registration.peer, request, timeout)
        except TransportTimeout:
            raise RequestTimeoutError(
                f"no answer from {registration.endpoint!r} within {timeout:g} s"
            ) from None
        except TransportError as exc:
            raise DeviceUnreachableError(f"cannot reach {registration.endpoint!r}: {exc}") from None
        self._queue_mode.heard_from(registration)
        return response

    async def _observe(
        self,
        registration: Registration,
        operation: Operation,
        timeout: float,  # noqa: ASYNC109 - API deadline, mapped to 504
        requested_format: int | None,
    ) -> tuple[object, DownlinkResponse]:
        endpoint_name = registration.endpoint
        observation = await self._observations.prepare(registration, operation, requested_format)
        try:
            handle = await self._transport().observe(
                registration.peer,
                operation.request,
                observation.on_notify,
                observation.on_end,
                timeout,
            )
        except TransportTimeout:
            raise RequestTimeoutError(
                f"no answer from {endpoint_name!r} within {timeout:g} s"
            ) from None
        except TransportError as exc:
            raise DeviceUnreachableError(f"cannot reach {endpoint_name!r}: {exc}") from None
        self._queue_mode.heard_from(registration)
        response = handle.initial_response
        try:
            result = self._interpret(registration, operation, response)
        except Lwm2mServerError:
            if handle.active:
                await handle.cancel(active=False)
            raise
        self._observations.established(observation, handle)
        return result, response

    def _transport(self) -> LwM2mEndpoint:
        if self._endpoint is None:
            raise DeviceUnreachableError("no transport attached to the LwM2M server")
        return self._endpoint

    def _interpret(
        self, registration: Registration, operation: Operation, response: DownlinkResponse
    ) -> object:
        if not response.code.is_success:
            raise DeviceErrorResponse(response.code, _diagnostic(response.payload))
        models = self._context.models_for(registration)
        kind = operation.kind
        if kind in (OperationKind.READ, OperationKind.OBSERVE):
            fmt = response_format(response, operation.request)
            node = content.decode_node(fmt, response.payload, operation.path, models)
            self._context.cache(registration, {operation.path: node})
            return node
        if kind in _COMPOSITE_KINDS:
            fmt = response_format(response, operation.request)
            nodes = content.decode_composite(fmt, response.payload, operation.paths, models)
            self._context.cache(registration, nodes)
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
        if kind in (OperationKind.WRITE, OperationKind.WRITE_COMPOSITE):
            paths = operation.paths
            self._context.emit(lambda listener: listener.on_written(registration, paths))
        return None


def _result_label(error: Lwm2mServerError) -> object:
    """The ``result`` label of a failed downlink: the device's error code, or why no
    usable answer came."""
    if isinstance(error, DeviceErrorResponse):
        return error.code
    if isinstance(error, RequestTimeoutError):
        return "timeout"
    if isinstance(error, DeviceUnreachableError):
        return "unreachable"
    return "invalid_response"


def _diagnostic(payload: bytes) -> str:
    return payload[:200].decode("utf-8", errors="replace") if payload else ""


def _created_path(location: tuple[str, ...], root_path: str) -> LwM2mPath | None:
    root = tuple(segment for segment in root_path.split("/") if segment)
    segments = location[len(root) :] if location[: len(root)] == root else location
    try:
        return LwM2mPath.parse("/".join(segments)) if segments else None
    except InvalidPathError:
        return None
