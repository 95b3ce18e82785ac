"""Downlink requests for a device that another node holds: built here for its
registration (as its device's row records it), sent by the node that holds it (only its
socket reaches the device through NATs), answered back with the result.

This is the ``RemoteDownlink`` the downlink sender asks whether this node holds a
registration, and hands the operation to when it does not; it also serves the other
nodes' requests.
"""

from __future__ import annotations

from typing import Any

from meadowlark.cluster.node import CallFailed, ClusterNode
from meadowlark.cluster.registrations import SharedRegistrationStore
from meadowlark.cluster.wire import error_from_wire, error_to_wire, result_from_wire, result_to_wire
from meadowlark.server.errors import (
    DeviceNotRegisteredError,
    DeviceUnreachableError,
    Lwm2mServerError,
)
from meadowlark.server.operations import Operation
from meadowlark.server.registration import Registration
from meadowlark.server.service import LwM2mServer

METHOD = "downlink"
PING = "ping"


class ClusterDownlink:
    CALL_MARGIN = 2.0
    """Seconds the caller waits beyond the request's own deadline (the hop there and back)."""

    def __init__(
        self, node: ClusterNode, registrations: SharedRegistrationStore, server: LwM2mServer
    ) -> None:
        self._node = node
        self._registrations = registrations
        self._server = server
        node.serve(METHOD, self._serve)
        node.serve(PING, self._serve_ping)

    async def holds(self, registration: Registration) -> bool:
        return await self._registrations.holds(registration)

    async def perform(
        self,
        registration: Registration,
        operation: Operation,
        timeout: float,  # noqa: ASYNC109 - the API deadline, carried to the owner
        wait: bool,
        requested_format: int | None,
    ) -> object:
        params = {
            "endpoint": registration.endpoint,
            "operation": operation.to_json(),
            "timeout": timeout,
            "wait": wait,
            "format": requested_format,
        }
        reply = await self._call(registration.endpoint, METHOD, params, timeout)
        return result_from_wire(reply.get("result"))

    async def ping(self, registration: Registration, timeout: float) -> float:  # noqa: ASYNC109
        reply = await self._call(
            registration.endpoint, PING, {"endpoint": registration.endpoint}, timeout
        )
        return float(reply["seconds"])

    async def _call(
        self,
        endpoint: str,
        method: str,
        params: dict[str, Any],
        timeout: float,  # noqa: ASYNC109 - the API deadline, carried to the owner
    ) -> dict[str, Any]:
        """Call ``method`` on the node holding ``endpoint``; its errors raised here."""
        try:
            return await self._ask(endpoint, method, params, timeout, fresh=False)
        except DeviceNotRegisteredError:
            # The node it was recently held by no longer holds it (it moved): look again.
            return await self._ask(endpoint, method, params, timeout, fresh=True)

    async def _ask(
        self,
        endpoint: str,
        method: str,
        params: dict[str, Any],
        timeout: float,  # noqa: ASYNC109 - the API deadline, carried to the owner
        *,
        fresh: bool,
    ) -> dict[str, Any]:
        located = await self._registrations.locate(endpoint, fresh=fresh)
        if located is None or located[0] == self._node.node_id:
            raise DeviceNotRegisteredError(endpoint)
        try:
            return await self._node.call(
                located[0], method, {**params, "timeout": timeout}, timeout + self.CALL_MARGIN
            )
        except CallFailed as exc:
            if exc.reason == "lwm2m_error":
                raise error_from_wire(endpoint, exc.detail) from None
            raise DeviceUnreachableError(
                f"cannot reach {endpoint!r}: the node holding it did not answer ({exc.reason})"
            ) from None

    async def _serve_ping(self, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = str(params["endpoint"])
        try:
            registration = await self._server.registrations.get_by_endpoint(endpoint)
            if registration is None or not await self._registrations.holds(registration):
                raise DeviceNotRegisteredError(endpoint)
            return {"seconds": await self._server.downlink.ping(endpoint, float(params["timeout"]))}
        except Lwm2mServerError as exc:
            raise CallFailed("lwm2m_error", error_to_wire(exc)) from None

    async def _serve(self, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = str(params["endpoint"])
        try:
            registration = await self._server.registrations.get_by_endpoint(endpoint)
            if registration is None or not await self._registrations.holds(registration):
                raise DeviceNotRegisteredError(endpoint)
            result = await self._server.downlink.perform_held(
                registration,
                Operation.from_json(params["operation"]),
                float(params["timeout"]),
                bool(params["wait"]),
                params.get("format"),
            )
        except Lwm2mServerError as exc:
            raise CallFailed("lwm2m_error", error_to_wire(exc)) from None
        return {"result": result_to_wire(result)}
