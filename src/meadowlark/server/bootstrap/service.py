"""The LwM2M Bootstrap interface, server side (OMA-TS-LightweightM2M-Core 1.1/1.2 §6.1,
Transport §6.1).

A device asks with Bootstrap-Request (``POST /bs?ep=NAME[&pct=FORMAT]``). If it has a
configuration, it gets 2.04 Changed and then, from a task, the sequence:

1. Bootstrap-Discover ``/`` (link format): which Security and Server instances exist,
   which Security instance is the bootstrap account (it has no ``ssid``), the device's
   LwM2M version. A device that refuses it is still bootstrapped, with default ids.
2. Bootstrap-Delete ``/0`` and ``/1``: every account but the bootstrap one goes.
3. Bootstrap-Write of the management account: its Security instance, then its Server
   instance, in the format the device asked for (``pct``; TLV by default).
4. Bootstrap-Read of the written Server instance (devices of LwM2M 1.1 or newer), to
   check what the device kept.
5. The credentials are committed (``BootstrapConfigurations.provisioned``), then
   Bootstrap-Finish (``POST /bs``); 2.04 ends the bootstrap.

Credentials are committed before Finish: a device registers as soon as Finish succeeds,
and must find its new credentials already there.

Every step is reported to the ``BootstrapListener``, with the device's response code
when it refused. Bootstrap-Pack-Request (1.2, ``GET /bspack?ep=NAME``) answers the same
account as one SenML CBOR pack instead. Nothing here knows the transport: the service
gets ``Peer`` objects and sends through the ``LwM2mEndpoint`` attached for the peer's
``transport`` (``attach(endpoint, "udp")``; a DTLS port attaches its own), so one service
serves the plain and the secure bootstrap ports, and the bootstrap account's security
mode is checked against the peer's authenticated identity (``core.bootstrap``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import structlog

from meadowlark import metrics
from meadowlark.lwm2m.codec import registry, senml_cbor
from meadowlark.lwm2m.codec.errors import CodecError, DecodeError
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.codec.link_format import decode_links
from meadowlark.lwm2m.model.lookup import ModelLookup
from meadowlark.lwm2m.model.registry import builtin_registry
from meadowlark.lwm2m.node import ObjectInstance, SingleResource
from meadowlark.lwm2m.path import InvalidPathError, LwM2mPath
from meadowlark.server.bootstrap.accounts import (
    SECURITY_OBJECT,
    SERVER_OBJECT,
    AccountPlacement,
    ServerAccount,
    ServerResource,
    pack_nodes,
    place_account,
)
from meadowlark.server.registration import MAX_ENDPOINT_NAME_LENGTH, RegistrationRateLimiter
from meadowlark.server.transport import (
    BAD_REQUEST,
    CHANGED,
    CONTENT,
    DELETED,
    SERVICE_UNAVAILABLE,
    UNSUPPORTED_CONTENT_FORMAT,
    DownlinkRequest,
    DownlinkResponse,
    LwM2mEndpoint,
    Method,
    Peer,
    ResponseCode,
    TransportError,
    UplinkResult,
)

_log = structlog.get_logger("meadowlark.bootstrap")

WRITE_FORMATS = frozenset(
    {
        ContentFormat.TLV,
        ContentFormat.OLD_TLV,
        ContentFormat.SENML_JSON,
        ContentFormat.SENML_CBOR,
        ContentFormat.LWM2M_CBOR,
    }
)
"""Formats a device may ask for with ``pct``: those that carry a whole object instance."""


@dataclass(frozen=True, slots=True)
class BootstrapPlan:
    """What one device is given: its management server account."""

    endpoint: str
    account: ServerAccount


class Refusal(StrEnum):
    """Why a Bootstrap-Request or Pack-Request is answered 4.00 (or 4.03)."""

    UNKNOWN_ENDPOINT = "unknown_endpoint"
    NO_CONFIGURATION = "no_configuration"
    UNSECURED_TRANSPORT = "unsecured_transport"
    """The device's bootstrap credentials need an authenticated (DTLS) session."""
    IDENTITY_MISMATCH = "identity_mismatch"
    DOMAIN_MISMATCH = "domain_mismatch"
    """The endpoint's management record is in a domain the bootstrap account cannot see."""


class BootstrapConfigurations(Protocol):
    """Where plans come from and where provisioned credentials go (``core.bootstrap``)."""

    async def plan(self, endpoint: str, peer: Peer) -> BootstrapPlan | Refusal:
        """The plan for ``endpoint`` asking from ``peer`` (fresh credentials each time),
        or why it gets none."""

    async def provisioned(self, plan: BootstrapPlan) -> None:
        """The device accepted ``plan``'s account: make its credentials the ones the
        management server expects from it."""


class Step(StrEnum):
    REQUEST = "request"
    PACK_REQUEST = "pack_request"
    DISCOVER = "discover"
    DELETE = "delete"
    WRITE = "write"
    READ = "read"
    FINISH = "finish"


@dataclass(frozen=True, slots=True)
class BootstrapEvent:
    """One step of a bootstrap. ``success`` False with ``code`` set: the device (or we,
    for REQUEST) answered with that error code; with ``code`` None: no answer."""

    endpoint: str
    step: Step
    success: bool
    peer: Peer
    path: str = ""
    code: ResponseCode | None = None
    detail: str = ""
    final: bool = False
    """The bootstrap ended with this step (finished, refused or failed)."""


class BootstrapListener(Protocol):
    def on_bootstrap_event(self, event: BootstrapEvent) -> None: ...


@dataclass(frozen=True, slots=True)
class PackResult:
    code: ResponseCode
    payload: bytes = b""
    content_format: int | None = None
    diagnostic: str = ""


@dataclass(frozen=True, slots=True)
class BootstrapOptions:
    request_timeout: float = 10.0
    """Seconds to wait for each of the device's answers."""
    max_sessions: int = 1000
    """Bootstrap sessions running at once; beyond it requests get 5.03."""
    answer_first_delay: float = 0.05
    """Seconds the session waits after Bootstrap-Request, so the device has the 2.04
    before the first server request."""
    max_requests_per_address_per_minute: int | None = None
    """Bootstrap- and Pack-Requests per source host and minute; beyond it 5.03 and
    nothing else (no store access, no event: a flood of forged requests costs nothing)."""


class _Failed(Exception):
    """A step failed; the event has been reported."""


class BootstrapService:
    """Serves ``/bs`` and ``/bspack`` for the transport that calls it."""

    def __init__(
        self,
        configurations: BootstrapConfigurations,
        listener: BootstrapListener,
        options: BootstrapOptions | None = None,
        models: ModelLookup | None = None,
    ) -> None:
        self._configurations = configurations
        self._listener = listener
        self.options = options or BootstrapOptions()
        self._models = models or builtin_registry()
        self._endpoints: dict[str, LwM2mEndpoint] = {}
        self._sessions: dict[str, asyncio.Task[None]] = {}
        per_address = self.options.max_requests_per_address_per_minute
        self._limiter = RegistrationRateLimiter(per_address) if per_address else None

    def attach(self, endpoint: LwM2mEndpoint, transport: str = "udp") -> None:
        """Send to peers of ``transport`` (their ``Peer.transport``) through ``endpoint``:
        one service serves the plain and the secure bootstrap ports alike."""
        self._endpoints[transport] = endpoint

    async def stop(self) -> None:
        sessions = list(self._sessions.values())
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)

    # --- uplinks ---------------------------------------------------------------------

    async def on_bootstrap_request(self, peer: Peer, query: Sequence[str]) -> UplinkResult:
        """Bootstrap-Request: 2.04 and the session starts, or 4.00/4.15 and an event."""
        result = await self._bootstrap_request(peer, query)
        metrics.UPLINKS.inc("bootstrap_request", result.code)
        return result

    async def _bootstrap_request(self, peer: Peer, query: Sequence[str]) -> UplinkResult:
        if (wait := self._throttled(peer)) is not None:
            return UplinkResult(SERVICE_UNAVAILABLE, max_age=wait)
        parsed = _parse_query(query)
        if isinstance(parsed, str):
            return UplinkResult(BAD_REQUEST, diagnostic=parsed)
        endpoint, pct = parsed
        fmt = ContentFormat.TLV if pct is None else pct
        if fmt not in WRITE_FORMATS:
            self._report(
                BootstrapEvent(
                    endpoint,
                    Step.REQUEST,
                    False,
                    peer,
                    code=UNSUPPORTED_CONTENT_FORMAT,
                    detail=f"pct={fmt}",
                    final=True,
                )
            )
            return UplinkResult(UNSUPPORTED_CONTENT_FORMAT, diagnostic="unsupported pct")
        if peer.transport not in self._endpoints or (
            endpoint not in self._sessions and len(self._sessions) >= self.options.max_sessions
        ):
            return UplinkResult(SERVICE_UNAVAILABLE, max_age=30)
        plan = await self._configurations.plan(endpoint, peer)
        if isinstance(plan, Refusal):
            self._report(
                BootstrapEvent(
                    endpoint,
                    Step.REQUEST,
                    False,
                    peer,
                    code=BAD_REQUEST,
                    detail=plan.value,
                    final=True,
                )
            )
            return UplinkResult(BAD_REQUEST, diagnostic=_refusal_text(plan))
        previous = self._sessions.pop(endpoint, None)
        if previous is not None:
            previous.cancel()
        self._report(BootstrapEvent(endpoint, Step.REQUEST, True, peer, code=CHANGED))
        task = asyncio.get_running_loop().create_task(
            self._run(peer, plan, fmt), name=f"bootstrap {endpoint}"
        )
        self._sessions[endpoint] = task
        task.add_done_callback(lambda done: self._forget(endpoint, done))
        return UplinkResult(CHANGED)

    async def on_pack_request(
        self, peer: Peer, query: Sequence[str], accept: int | None
    ) -> PackResult:
        """Bootstrap-Pack-Request: the whole configuration as one SenML CBOR pack."""
        result = await self._pack_request(peer, query, accept)
        metrics.UPLINKS.inc("bootstrap_pack_request", result.code)
        return result

    async def _pack_request(
        self, peer: Peer, query: Sequence[str], accept: int | None
    ) -> PackResult:
        if self._throttled(peer) is not None:
            return PackResult(SERVICE_UNAVAILABLE, diagnostic="too many requests")
        parsed = _parse_query(query, allow_pct=False)
        if isinstance(parsed, str):
            return PackResult(BAD_REQUEST, diagnostic=parsed)
        endpoint, _ = parsed
        if accept is not None and accept != ContentFormat.SENML_CBOR:
            self._report(
                BootstrapEvent(
                    endpoint,
                    Step.PACK_REQUEST,
                    False,
                    peer,
                    code=UNSUPPORTED_CONTENT_FORMAT,
                    final=True,
                )
            )
            return PackResult(UNSUPPORTED_CONTENT_FORMAT, diagnostic="the pack is SenML CBOR")
        plan = await self._configurations.plan(endpoint, peer)
        if isinstance(plan, Refusal):
            self._report(
                BootstrapEvent(
                    endpoint,
                    Step.PACK_REQUEST,
                    False,
                    peer,
                    code=BAD_REQUEST,
                    detail=plan.value,
                    final=True,
                )
            )
            return PackResult(BAD_REQUEST, diagnostic=_refusal_text(plan))
        # A packed device has only its bootstrap account at Security instance 0.
        placement = place_account({0}, set())
        payload = senml_cbor.encode_composite(pack_nodes(plan.account, placement), self._models)
        await self._configurations.provisioned(plan)
        self._report(
            BootstrapEvent(endpoint, Step.PACK_REQUEST, True, peer, code=CONTENT, final=True)
        )
        return PackResult(CONTENT, payload, ContentFormat.SENML_CBOR)

    def _throttled(self, peer: Peer) -> int | None:
        return None if self._limiter is None else self._limiter.retry_after(peer.host)

    def _forget(self, endpoint: str, task: asyncio.Task[None]) -> None:
        if self._sessions.get(endpoint) is task:
            del self._sessions[endpoint]

    # --- the session -----------------------------------------------------------------

    async def _run(self, peer: Peer, plan: BootstrapPlan, fmt: int) -> None:
        try:
            await asyncio.sleep(self.options.answer_first_delay)
            session = _Session(self, peer, plan, fmt)
            await session.run()
        except _Failed:
            return
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not leave the failure unreported
            _log.exception("bootstrap_session_failed", endpoint=plan.endpoint)
            self._report(
                BootstrapEvent(
                    plan.endpoint, Step.FINISH, False, peer, detail="internal error", final=True
                )
            )

    def _report(self, event: BootstrapEvent) -> None:
        try:
            self._listener.on_bootstrap_event(event)
        except Exception:  # a listener's bug must not end the bootstrap
            _log.exception("bootstrap_listener_failed", endpoint=event.endpoint)


class _Session:
    """One run of the sequence against one device."""

    def __init__(self, service: BootstrapService, peer: Peer, plan: BootstrapPlan, fmt: int):
        self._service = service
        self._peer = peer
        self._plan = plan
        self._fmt = fmt
        self._lwm2m_version: str | None = None

    async def run(self) -> None:
        taken_security = await self._discover()
        await self._request(Step.DELETE, DownlinkRequest(Method.DELETE, ("0",)), DELETED)
        await self._request(Step.DELETE, DownlinkRequest(Method.DELETE, ("1",)), DELETED)
        placement = place_account(taken_security, set())
        account = self._plan.account
        for path, instance in (
            (
                LwM2mPath(SECURITY_OBJECT, placement.security_instance),
                account.security_instance(placement.security_instance),
            ),
            (
                LwM2mPath(SERVER_OBJECT, placement.server_instance),
                account.server_instance(placement.server_instance),
            ),
        ):
            payload = registry.encode(self._fmt, instance, path, self._service._models)
            write = DownlinkRequest.for_path(
                Method.PUT, path, payload=payload, content_format=self._fmt
            )
            await self._request(Step.WRITE, write, CHANGED)
        if self._lwm2m_version not in (None, "1.0"):
            await self._verify(placement)
        try:
            await self._service._configurations.provisioned(self._plan)
        except Exception:  # the store refused: no Finish, the device will ask again
            _log.exception("bootstrap_provisioning_failed", endpoint=self._plan.endpoint)
            self._event(Step.FINISH, False, "/bs", None, "credentials not stored", final=True)
            raise _Failed from None
        await self._request(Step.FINISH, DownlinkRequest(Method.POST, ("bs",)), CHANGED, final=True)

    async def _discover(self) -> set[int]:
        """Security instance ids that survive Bootstrap-Delete (the bootstrap account's);
        ``{0}`` when the device does not answer Discover."""
        request = DownlinkRequest(Method.GET, (), accept=ContentFormat.LINK_FORMAT)
        response = await self._send(Step.DISCOVER, request)
        if response is None or response.code != CONTENT:
            self._event(Step.DISCOVER, False, "/", response, "continuing with default ids")
            return {0}
        try:
            links = decode_links(response.payload)
        except DecodeError as error:
            self._event(Step.DISCOVER, False, "/", response, f"unreadable links: {error}")
            return {0}
        bootstrap_instances: set[int] = set()
        for link in links:
            if link.uri == "/" and isinstance(link.params.get("lwm2m"), str):
                self._lwm2m_version = str(link.params["lwm2m"])
                continue
            try:
                path = LwM2mPath.parse(link.uri)
            except InvalidPathError:
                continue
            if path.object_id == SECURITY_OBJECT and path.is_object_instance:
                if "ssid" not in link.params:
                    _, instance_id = path.ids
                    bootstrap_instances.add(instance_id)
        self._event(Step.DISCOVER, True, "/", response, f"lwm2m={self._lwm2m_version or '?'}")
        return bootstrap_instances or {0}

    async def _verify(self, placement: AccountPlacement) -> None:
        """Bootstrap-Read of the Server instance just written: does it hold our ssid?"""
        path = LwM2mPath(SERVER_OBJECT, placement.server_instance)
        request = DownlinkRequest.for_path(Method.GET, path, accept=self._fmt)
        response = await self._send(Step.READ, request)
        if response is None or response.code != CONTENT:
            self._event(Step.READ, False, str(path), response, "not verified")
            return
        try:
            fmt = response.content_format if response.content_format is not None else self._fmt
            node = registry.decode(fmt, response.payload, path, self._service._models)
        except CodecError as error:
            self._event(Step.READ, False, str(path), response, f"unreadable: {error}")
            return
        ssid = None
        if isinstance(node, ObjectInstance):
            resource = node.resources.get(ServerResource.SHORT_SERVER_ID)
            ssid = resource.value if isinstance(resource, SingleResource) else None
        matches = ssid == self._plan.account.short_server_id
        detail = "verified" if matches else f"short server id reads {ssid!r}"
        self._event(Step.READ, matches, str(path), response, detail)

    async def _request(
        self, step: Step, request: DownlinkRequest, expected: ResponseCode, *, final: bool = False
    ) -> None:
        path = "/" + "/".join(request.uri_path)
        response = await self._send(step, request)
        if response is None:
            self._event(step, False, path, None, "no answer", final=True)
            raise _Failed
        if response.code != expected:
            self._event(step, False, path, response, _diagnostic(response), final=True)
            raise _Failed
        self._event(step, True, path, response, final=final)

    async def _send(self, step: Step, request: DownlinkRequest) -> DownlinkResponse | None:
        endpoint = self._service._endpoints[self._peer.transport]  # checked at the request
        try:
            return await endpoint.send(self._peer, request, self._service.options.request_timeout)
        except TransportError as error:
            _log.info(
                "bootstrap_no_answer",
                endpoint=self._plan.endpoint,
                step=step.value,
                error=str(error),
            )
            return None

    def _event(
        self,
        step: Step,
        success: bool,
        path: str,
        response: DownlinkResponse | None,
        detail: str = "",
        *,
        final: bool = False,
    ) -> None:
        code = None if response is None else response.code
        self._service._report(
            BootstrapEvent(
                self._plan.endpoint, step, success, self._peer, path, code, detail, final
            )
        )


def _parse_query(query: Sequence[str], *, allow_pct: bool = True) -> tuple[str, int | None] | str:
    """``ep`` (required, once) and ``pct`` (optional, once); an error text otherwise.
    Other parameters are ignored (later versions may add some)."""
    endpoint: str | None = None
    pct: int | None = None
    for item in query:
        name, sep, value = item.partition("=")
        if name == "ep" and sep:
            if endpoint is not None:
                return "ep given twice"
            endpoint = value
        elif name == "pct" and sep and allow_pct:
            if pct is not None or not value.isdigit() or len(value) > 5:
                return "pct must be one content format number"
            pct = int(value)
        elif name == "pct" and sep:
            return "a Bootstrap-Pack-Request takes no pct"
    if not endpoint:
        return "ep is required"
    if len(endpoint) > MAX_ENDPOINT_NAME_LENGTH or not endpoint.isprintable():
        return "invalid endpoint name"
    return endpoint, pct


def _refusal_text(refusal: Refusal) -> str:
    if refusal in (Refusal.UNSECURED_TRANSPORT, Refusal.IDENTITY_MISMATCH):
        return "bootstrap refused"  # says nothing about the device's credentials
    return "no bootstrap configuration for this endpoint"


def _diagnostic(response: DownlinkResponse) -> str:
    text = response.payload[:128].decode("utf-8", "replace")
    return "".join(ch for ch in text if ch.isprintable())
