"""A simulated LwM2M client: registration lifecycle and answers to server requests.

Behaves like a well-behaved LwM2M 1.0/1.1/1.2 client over CoAP/UDP, NoSec, or over
DTLS with a PSK or an X.509 certificate for a ``coaps://`` server (``simulator.dtls``):

- Register ``POST /rd?ep=..&lt=..&lwm2m=..&b=U[&Q]`` with the object list, periodic
  Update before the lifetime ends, De-register ``DELETE /rd/{location}``; a 4.12 answer
  to a newer ``lwm2m`` version is retried with ``fallback_lwm2m_version``.
- Device Management: Read (Accept honoured), Discover, Write (PUT replace, POST partial
  update), Write-Attributes, Execute, Create, Delete; 1.1+: Read-Composite,
  Write-Composite, Observe-Composite (FETCH / iPATCH with SenML) and Send (``/dp``).
- Observe with pmin/pmax/gt/lt/st (see ``notify``), notifications CON or NON, cancelled
  by GET with Observe=1, by RST, or by an unacknowledged confirmable notification.
- Queue mode: after each uplink the device listens for ``queue_window`` seconds, then
  drops every request until its next uplink (Update, Send, or a notification).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import ssl
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import httpx
from aiocoap import Message
from aiocoap.numbers.codes import Code

from meadowlark.lwm2m.codec import lwm2m_cbor, registry, senml_cbor, senml_json
from meadowlark.lwm2m.codec.attributes import InvalidAttributeError, from_query
from meadowlark.lwm2m.codec.errors import CodecError
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.codec.link_format import encode_links
from meadowlark.lwm2m.node import (
    LwM2mObject,
    Node,
    ObjectInstance,
    ResourceType,
    SingleResource,
)
from meadowlark.lwm2m.path import InvalidPathError, LwM2mPath
from meadowlark.simulator import notify
from meadowlark.simulator.coap import Address, CoapEndpoint, CoapError, CoapErrorResponse
from meadowlark.simulator.coap_tcp import StreamCoapEndpoint, is_stream_uri
from meadowlark.simulator.firmware import CONNECTION_LOST, FirmwareBehaviour, ImageReceiver
from meadowlark.simulator.objects import (
    CURRENT_TIME,
    DeviceObjects,
    Effect,
    FirmwareResult,
    OperationError,
    models,
)

if TYPE_CHECKING:
    from meadowlark.simulator.dtls import DtlsCredentials

log = logging.getLogger(__name__)

DEFAULT_PORT = 5683
_DEFAULT_PORTS = {"coap": DEFAULT_PORT, "coaps": 5684, "coap+tcp": DEFAULT_PORT, "coaps+tcp": 5684}
MODERN_FORMATS = (
    ContentFormat.SENML_CBOR,
    ContentFormat.SENML_JSON,
    ContentFormat.LWM2M_CBOR,
    ContentFormat.TLV,
    ContentFormat.OMA_JSON,
)
"""Multi-value formats of a 1.1+ device by default, preferred first."""
LEGACY_FORMATS = (ContentFormat.TLV, ContentFormat.OMA_JSON)
"""Multi-value formats of a 1.0 device by default, preferred first."""
COMPOSITE_CODECS: Mapping[int, Any] = {
    ContentFormat.SENML_JSON: senml_json,
    ContentFormat.SENML_CBOR: senml_cbor,
    ContentFormat.LWM2M_CBOR: lwm2m_cbor,
}
_SINGLE_VALUE_FORMATS = (ContentFormat.TEXT, ContentFormat.OPAQUE)
_OBSERVE_SEQUENCE_MODULO = 1 << 24


class RegistrationError(Exception):
    """The server refused (or never answered) a Register, Update or De-register."""

    def __init__(self, message: str, code: Code | None = None) -> None:
        super().__init__(message)
        self.code = code


class DeviceState(Enum):
    STOPPED = "stopped"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"


@dataclass(slots=True)
class DeviceStats:
    """Counters; a fleet shares one instance among all its devices."""

    registrations: int = 0
    registration_failures: int = 0
    updates: int = 0
    deregistrations: int = 0
    requests_answered: int = 0
    notifications_sent: int = 0
    sends: int = 0


@dataclass(frozen=True, slots=True)
class DeviceTiming:
    """Timing knobs (seconds); one instance may be shared by many devices."""

    ack_timeout: float = 2.0
    max_retransmit: int = 4
    queue_window: float = 93.0
    """How long a queue-mode device listens after an uplink (Core: MAX_TRANSMIT_WAIT)."""
    reboot_delay: float = 1.0
    firmware_delay: float = 1.0
    update_margin: float = 0.1
    """Updates go out when this share of the lifetime (at most 60 s) is left."""
    request_timeout: float = 93.0
    handshake_timeout: float = 30.0
    """A DTLS handshake, retransmissions included (``coaps://`` servers only)."""


@dataclass(slots=True)
class Observation:
    """One observation of the server: a path (or several for Observe-Composite)."""

    token: bytes
    paths: tuple[LwM2mPath, ...]
    composite: bool
    content_format: int
    remote: Address
    last_sent_at: float
    last_value: object
    sequence: int = 0
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class SimulatedDevice:
    """One simulated LwM2M client with its own UDP socket."""

    __slots__ = (
        "endpoint_name",
        "server_uri",
        "lwm2m_version",
        "fallback_lwm2m_version",
        "binding",
        "lifetime",
        "queue_mode",
        "content_formats",
        "confirmable_notifications",
        "objects",
        "stats",
        "timing",
        "security",
        "state",
        "location",
        "_local_host",
        "_tls",
        "_tls_server_name",
        "_server",
        "_endpoint",
        "_observations",
        "_tasks",
        "_timers",
        "_update_timer",
        "_sleep_timer",
        "_objects_changed",
    )

    def __init__(
        self,
        endpoint_name: str,
        server_uri: str,
        lwm2m_version: str = "1.1",
        binding: str = "U",
        lifetime: int = 86400,
        queue_mode: bool = False,
        content_formats: Sequence[int] | None = None,
        objects: DeviceObjects | None = None,
        *,
        fallback_lwm2m_version: str | None = None,
        confirmable_notifications: bool = False,
        stats: DeviceStats | None = None,
        timing: DeviceTiming | None = None,
        local_host: str | None = None,
        firmware: FirmwareBehaviour | None = None,
        tls: ssl.SSLContext | None = None,
        tls_server_name: str | None = None,
        security: DtlsCredentials | None = None,
    ) -> None:
        if lwm2m_version not in ("1.0", "1.1", "1.2"):
            raise ValueError(f"unsupported LwM2M version {lwm2m_version!r}")
        self.endpoint_name = endpoint_name
        self.server_uri = server_uri
        self.lwm2m_version = lwm2m_version
        self.fallback_lwm2m_version = fallback_lwm2m_version
        self.binding = binding
        self.lifetime = lifetime
        self.queue_mode = queue_mode
        if content_formats is None:
            content_formats = LEGACY_FORMATS if lwm2m_version == "1.0" else MODERN_FORMATS
        unsupported = [fmt for fmt in content_formats if not registry.supports(fmt)]
        if unsupported or not content_formats:
            raise ValueError(f"content formats must be known, non-empty: {unsupported}")
        self.content_formats = tuple(ContentFormat(fmt) for fmt in content_formats)
        """Formats beyond plain text and opaque; the first is the preferred one."""
        self.confirmable_notifications = confirmable_notifications
        self.objects = objects or DeviceObjects(
            endpoint_name,
            server_uri,
            lifetime=lifetime,
            binding=binding,
            lwm2m_version=lwm2m_version,
            firmware=firmware or FirmwareBehaviour(),
        )
        self.objects.lwm2m_version = lwm2m_version
        self.stats = stats or DeviceStats()
        self.timing = timing or DeviceTiming()
        self.security = security
        """DTLS credentials, needed for (and only used with) a ``coaps://`` server."""
        self.state = DeviceState.STOPPED
        self.location: tuple[str, ...] | None = None
        """The registration location path from the server, e.g. ``("rd", "5a3f")``."""
        self._local_host = local_host
        self._tls = tls
        """For ``coaps+tcp://`` servers: whom to trust, which client certificate to show."""
        self._tls_server_name = tls_server_name
        self._server: Address | None = None
        self._endpoint: CoapEndpoint | StreamCoapEndpoint | None = None
        self._observations: dict[bytes, Observation] | None = None
        self._tasks: set[asyncio.Task[Any]] | None = None
        self._timers: set[asyncio.TimerHandle] | None = None
        self._update_timer: asyncio.TimerHandle | None = None
        self._sleep_timer: asyncio.TimerHandle | None = None
        self._objects_changed = False

    # --- public API --------------------------------------------------------------------

    @property
    def local_address(self) -> Address | None:
        return None if self._endpoint is None else self._endpoint.local_address

    @property
    def sleeping(self) -> bool:
        return self._endpoint is not None and not self._endpoint.accepting

    @property
    def observations(self) -> list[Observation]:
        return list((self._observations or {}).values())

    async def start(self) -> None:
        """Open the socket (first time; with a DTLS handshake for ``coaps://``) and
        Register; ``RegistrationError`` on refusal or a failed handshake."""
        if self._endpoint is None or not self._endpoint.is_open:
            self._server = await resolve_server(self.server_uri)
            host = self._local_host or local_host_for(self._server[0])
            if is_stream_uri(self.server_uri):
                await self._connect(host)
            elif urlsplit(self.server_uri).scheme == "coaps":
                self._endpoint = await self._open_secure((host, 0))
            else:
                self._endpoint = await CoapEndpoint.open(
                    self._handle,
                    (host, 0),
                    ack_timeout=self.timing.ack_timeout,
                    max_retransmit=self.timing.max_retransmit,
                )
        await self._register()

    async def _open_secure(self, local_address: tuple[str, int]) -> CoapEndpoint:
        from meadowlark.simulator.dtls import DtlsCoapEndpoint, DtlsError

        if self.security is None:
            raise ValueError(f"{self.server_uri} needs DTLS credentials (a PSK or a certificate)")
        assert self._server is not None
        try:
            return await DtlsCoapEndpoint.connect(
                self._handle,
                local_address,
                server=self._server,
                credentials=self.security,
                server_hostname=_certificate_name(urlsplit(self.server_uri).hostname),
                handshake_timeout=self.timing.handshake_timeout,
                ack_timeout=self.timing.ack_timeout,
                max_retransmit=self.timing.max_retransmit,
            )
        except DtlsError as error:
            self._registration_failed()
            raise RegistrationError(f"register: {error}") from error

    async def _connect(self, local_host: str) -> None:
        """Open the TCP (``coap+tcp``) or TLS (``coaps+tcp``) connection to the server."""
        assert self._server is not None
        secure = self.server_uri.startswith("coaps+tcp://")
        tls = (self._tls or ssl.create_default_context()) if secure else None
        try:
            self._endpoint = await StreamCoapEndpoint.connect(
                self._handle,
                self._server,
                local_host=local_host,
                tls=tls,
                server_hostname=self._tls_server_name,
                timeout=self.timing.request_timeout,
            )
        except CoapError as error:
            self._registration_failed()
            raise RegistrationError(f"connect: {error}") from error

    async def update(self, *, with_objects: bool | None = None) -> None:
        """Registration Update; the object list goes along when it changed (or if asked)."""
        if self.location is None:
            raise RegistrationError("not registered")
        include = self._objects_changed if with_objects is None else with_objects
        query = []
        if self.objects.lifetime != self.lifetime:
            self.lifetime = self.objects.lifetime
            query.append(f"lt={self.lifetime}")
        if self.objects.binding != self.binding:
            self.binding = self.objects.binding
            query.append(f"b={self.binding}")
        request = Message(code=Code.POST, uri_path=self.location)
        if query:
            request.opt.uri_query = tuple(query)
        if include:
            request.payload = self._registration_payload()
            request.opt.content_format = ContentFormat.LINK_FORMAT
        response = await self._uplink(request)
        if response.code == Code.NOT_FOUND:
            self.location = None
            await self._register()
            return
        if response.code != Code.CHANGED:
            raise RegistrationError(f"update refused with {response.code}", response.code)
        self._objects_changed = False
        self.stats.updates += 1
        self._schedule_update()

    async def stop(self, *, deregister: bool = True) -> None:
        """De-register (unless told not to or unregistered), then release everything."""
        self._cancel_background()
        if deregister and self.location is not None and self._endpoint is not None:
            try:
                response = await self._uplink(Message(code=Code.DELETE, uri_path=self.location))
                if response.code == Code.DELETED:
                    self.stats.deregistrations += 1
            except CoapError:
                log.debug("%s: de-register got no answer", self.endpoint_name)
        self.location = None
        self.state = DeviceState.STOPPED
        self._cancel_background()
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None

    async def send(
        self, paths: Iterable[LwM2mPath | str], content_format: int | None = None
    ) -> Code:
        """Send (Core 1.1 §6.4.1): ``POST /dp`` with the current values of ``paths``."""
        if self.lwm2m_version == "1.0":
            raise RegistrationError("Send needs LwM2M 1.1 or newer")
        fmt = content_format if content_format is not None else self._composite_format(None)
        targets = [LwM2mPath.parse(p) if isinstance(p, str) else p for p in paths]
        nodes = {path: self.objects.read(path) for path in targets}
        request = Message(
            code=Code.POST,
            uri_path=("dp",),
            payload=COMPOSITE_CODECS[fmt].encode_composite(nodes, models()),
            content_format=fmt,
        )
        response = await self._uplink(request)
        self.stats.sends += 1
        return response.code

    def set_temperature(self, value: float) -> None:
        """A new sensor reading on /3303/0/5700; observers hear of it per their attributes."""
        self.objects.set_temperature(value)
        self.values_changed()

    def touch(self, temperature_step: float) -> None:
        """The fleet's value-change driver: drift the sensor and advance /3/0/13."""
        self.objects.refresh_clock()
        self.objects.set_temperature(round(self.objects.temperature + temperature_step, 2))
        self.values_changed()

    def values_changed(self) -> None:
        """Re-evaluate every observation now (values may have changed)."""
        if not self._observations:
            return
        for observation in list(self._observations.values()):
            self._evaluate(observation)

    # --- registration ------------------------------------------------------------------

    def _registration_payload(self) -> bytes:
        preferred = None if self.lwm2m_version == "1.0" else self.content_formats[0]
        return encode_links(self.objects.registration_links(preferred))

    def _registration_query(self) -> tuple[str, ...]:
        query = [f"ep={self.endpoint_name}", f"lt={self.lifetime}", f"lwm2m={self.lwm2m_version}"]
        if self.lwm2m_version == "1.0":
            query.append(f"b={self.binding}{'Q' if self.queue_mode else ''}")
        else:
            query.append(f"b={self.binding}")
            if self.queue_mode:
                query.append("Q")
        return tuple(query)

    async def _register(self) -> None:
        self.state = DeviceState.REGISTERING
        try:
            while True:
                request = Message(
                    code=Code.POST,
                    uri_path=("rd",),
                    uri_query=self._registration_query(),
                    payload=self._registration_payload(),
                    content_format=ContentFormat.LINK_FORMAT,
                )
                response = await self._uplink(request)
                fallback = self.fallback_lwm2m_version
                if response.code == Code.PRECONDITION_FAILED and fallback not in (
                    None,
                    self.lwm2m_version,
                ):
                    log.info("%s: server refused lwm2m=%s", self.endpoint_name, self.lwm2m_version)
                    self.lwm2m_version = self.objects.lwm2m_version = fallback
                    continue
                break
        except CoapError as error:
            self._registration_failed()
            raise RegistrationError(f"register: {error}") from error
        if response.code != Code.CREATED or not response.opt.location_path:
            self._registration_failed()
            raise RegistrationError(f"register refused with {response.code}", response.code)
        self.location = tuple(response.opt.location_path)
        self.state = DeviceState.REGISTERED
        self._objects_changed = False
        self.stats.registrations += 1
        self._schedule_update()

    def _registration_failed(self) -> None:
        self.state = DeviceState.FAILED
        self.stats.registration_failures += 1

    def _schedule_update(self) -> None:
        if self._update_timer is not None:
            self._update_timer.cancel()
        margin = min(60.0, self.lifetime * self.timing.update_margin)
        delay = max(1.0, self.lifetime - margin)
        loop = asyncio.get_running_loop()
        self._update_timer = loop.call_later(delay, self._spawn_update)

    def _spawn_update(self) -> None:
        self._spawn(self._background_update())

    async def _background_update(self) -> None:
        try:
            await self.update()
        except (RegistrationError, CoapError) as error:
            log.warning("%s: update failed: %s", self.endpoint_name, error)
            self._registration_failed()

    async def _uplink(self, request: Message) -> Message:
        """A request to the server; wakes a queue-mode device for another window."""
        assert self._endpoint is not None and self._server is not None
        self._wake()
        try:
            return await self._endpoint.request(
                request, self._server, response_timeout=self.timing.request_timeout
            )
        finally:
            self._wake()

    # --- queue mode --------------------------------------------------------------------

    def _wake(self) -> None:
        if not self.queue_mode or self._endpoint is None:
            return
        self._endpoint.accepting = True
        if self._sleep_timer is not None:
            self._sleep_timer.cancel()
        loop = asyncio.get_running_loop()
        self._sleep_timer = loop.call_later(self.timing.queue_window, self._fall_asleep)

    def _fall_asleep(self) -> None:
        self._sleep_timer = None
        if self._endpoint is None:
            return
        if not self._endpoint.idle:
            self._wake()
            return
        self._endpoint.accepting = False

    # --- request handling ----------------------------------------------------------------

    def _handle(self, request: Message) -> Message | None:
        self.stats.requests_answered += 1
        try:
            path = _request_path(request)
            response = self._dispatch(request, path)
        except OperationError as error:
            response = Message(code=error.code, payload=str(error).encode()[:128])
        except CodecError as error:
            response = Message(code=Code.BAD_REQUEST, payload=str(error).encode()[:128])
        return response

    def _dispatch(self, request: Message, path: LwM2mPath) -> Message:
        code = request.code
        modern = self.lwm2m_version != "1.0"
        if code == Code.GET:
            if request.opt.accept == ContentFormat.LINK_FORMAT:
                links = self.objects.discover(path)
                return Message(
                    code=Code.CONTENT,
                    payload=encode_links(links),
                    content_format=ContentFormat.LINK_FORMAT,
                )
            return self._read(request, path)
        if code == Code.PUT:
            if not request.payload and request.opt.content_format is None:
                return self._write_attributes(request, path)
            return self._write(request, path, replace=True)
        if code == Code.POST:
            return self._post(request, path)
        if code == Code.DELETE:
            self.objects.delete(path)
            self._objects_changed = True
            self._after_change()
            return Message(code=Code.DELETED)
        if code == Code.FETCH and modern:
            return self._read_composite(request)
        if code == Code.iPATCH and modern:
            return self._write_composite(request)
        raise OperationError(Code.METHOD_NOT_ALLOWED, f"{code} is not supported")

    def _read(self, request: Message, path: LwM2mPath) -> Message:
        observe = request.opt.observe
        if observe == 1:
            self._cancel_observation(request.token)
        node = self.objects.read(path)
        fmt = self._response_format(request.opt.accept, path, node)
        response = Message(code=Code.CONTENT, payload=self._encode(fmt, node, path))
        response.opt.content_format = fmt
        if observe == 0:
            observation = self._observe(request, (path,), False, fmt, _observed_value(node))
            response.opt.observe = observation.sequence
        return response

    def _read_composite(self, request: Message) -> Message:
        request_format = request.opt.content_format
        if request_format not in COMPOSITE_CODECS or request_format not in self.content_formats:
            raise OperationError(Code.UNSUPPORTED_CONTENT_FORMAT, "composite paths need SenML")
        paths = tuple(COMPOSITE_CODECS[request_format].decode_paths(request.payload))
        fmt = self._composite_format(request.opt.accept, request_format)
        observe = request.opt.observe
        if observe == 1:
            self._cancel_observation(request.token)
        nodes = self._composite_nodes(paths)
        response = Message(
            code=Code.CONTENT,
            payload=COMPOSITE_CODECS[fmt].encode_composite(nodes, models()),
            content_format=fmt,
        )
        if observe == 0:
            observation = self._observe(request, paths, True, fmt, nodes)
            response.opt.observe = observation.sequence
        return response

    def _composite_nodes(self, paths: Sequence[LwM2mPath]) -> dict[LwM2mPath, Node]:
        """Readable nodes of ``paths``; paths that do not exist are left out."""
        nodes: dict[LwM2mPath, Node] = {}
        for path in paths:
            try:
                nodes[path] = self.objects.read(path)
            except OperationError as error:
                if error.code != Code.NOT_FOUND:
                    raise
        if not nodes:
            raise OperationError(Code.NOT_FOUND, "none of the paths exists")
        return nodes

    def _write(self, request: Message, path: LwM2mPath, *, replace: bool) -> Message:
        node = self._decode(request, path)
        effect = self.objects.write(path, node, replace=replace)
        self._apply(effect)
        self._after_change()
        return Message(code=Code.CHANGED)

    def _write_composite(self, request: Message) -> Message:
        fmt = request.opt.content_format
        if fmt not in COMPOSITE_CODECS or fmt not in self.content_formats:
            raise OperationError(Code.UNSUPPORTED_CONTENT_FORMAT, f"format {fmt} for composite")
        nodes = COMPOSITE_CODECS[fmt].decode_composite(request.payload, models())
        self._apply(self.objects.write_composite(nodes))
        self._after_change()
        return Message(code=Code.CHANGED)

    def _write_attributes(self, request: Message, path: LwM2mPath) -> Message:
        try:
            attributes = from_query(request.opt.uri_query, path)
        except InvalidAttributeError as error:
            raise OperationError(Code.BAD_REQUEST, str(error)) from error
        self.objects.write_attributes(path, attributes)
        self._after_change()
        return Message(code=Code.CHANGED)

    def _post(self, request: Message, path: LwM2mPath) -> Message:
        if path.is_object:
            return self._create(request, path)
        if path.is_object_instance:
            return self._write(request, path, replace=False)
        if path.is_resource and _is_executable(path):
            self._apply(self.objects.execute(path, request.payload))
            self._after_change()
            return Message(code=Code.CHANGED)
        if path.is_resource and request.opt.content_format is not None:
            return self._write(request, path, replace=False)
        raise OperationError(Code.METHOD_NOT_ALLOWED, f"POST on {path or '/'}")

    def _create(self, request: Message, path: LwM2mPath) -> Message:
        decoded = self._decode(request, path)
        assert path.object_id is not None
        instances: list[ObjectInstance] = []
        if isinstance(decoded, LwM2mObject):
            instances = list(decoded.instances.values())
        if len(instances) != 1:
            raise OperationError(Code.BAD_REQUEST, "Create needs exactly one object instance")
        created = self.objects.create(path.object_id, instances[0])
        self._objects_changed = True
        self._after_change()
        response = Message(code=Code.CREATED)
        response.opt.location_path = (str(path.object_id), str(created))
        return response

    # --- formats -----------------------------------------------------------------------

    def _decode(self, request: Message, path: LwM2mPath) -> Node:
        fmt = request.opt.content_format
        if fmt is None:
            raise OperationError(Code.BAD_REQUEST, "a payload needs a Content-Format")
        if fmt not in _SINGLE_VALUE_FORMATS and fmt not in self.content_formats:
            raise OperationError(Code.UNSUPPORTED_CONTENT_FORMAT, f"format {fmt} unsupported")
        return registry.decode(fmt, request.payload, path, models())

    def _response_format(self, accept: int | None, path: LwM2mPath, node: Node) -> int:
        single = isinstance(node, SingleResource) or path.is_resource_instance
        if accept is None:
            if not single:
                return self.content_formats[0]
            opaque = getattr(node, "type", None) is ResourceType.OPAQUE
            return ContentFormat.OPAQUE if opaque else ContentFormat.TEXT
        if accept not in _SINGLE_VALUE_FORMATS and accept not in self.content_formats:
            raise OperationError(Code.NOT_ACCEPTABLE, f"format {accept} unsupported")
        if accept in _SINGLE_VALUE_FORMATS and not single:
            raise OperationError(Code.NOT_ACCEPTABLE, f"format {accept} needs a single value")
        return accept

    def _composite_format(self, accept: int | None, fallback: int | None = None) -> int:
        if accept is not None:
            if accept not in COMPOSITE_CODECS or accept not in self.content_formats:
                raise OperationError(Code.NOT_ACCEPTABLE, f"format {accept} for composite")
            return accept
        if fallback is not None:
            return fallback
        for fmt in self.content_formats:
            if fmt in COMPOSITE_CODECS:
                return fmt
        raise OperationError(Code.NOT_ACCEPTABLE, "no composite-capable format configured")

    @staticmethod
    def _encode(fmt: int, node: Node, path: LwM2mPath) -> bytes:
        try:
            return registry.encode(fmt, node, path, models())
        except CodecError as error:
            raise OperationError(Code.NOT_ACCEPTABLE, str(error)) from error

    # --- effects -----------------------------------------------------------------------

    def _apply(self, effect: Effect) -> None:
        delays = self.timing
        match effect:
            case Effect.REGISTRATION_UPDATE:
                self._call_later(0, lambda: self._spawn(self._background_update()))
            case Effect.REBOOT:
                self._call_later(0, lambda: self._spawn(self._reboot()))
            case Effect.FIRMWARE_DOWNLOAD:
                self._spawn(self._download_firmware(self.objects.package_uri))
            case Effect.FIRMWARE_UPDATE:
                self._call_later(delays.firmware_delay, self._install_firmware)

    def _install_firmware(self) -> None:
        if self.objects.firmware.reboot_after_update:
            # Like a real device: the new firmware runs after a reboot, and the server
            # learns the Update Result once the device has registered again.
            self._spawn(self._reboot(while_down=self.objects.finish_firmware_update))
            return
        self.objects.finish_firmware_update()
        self.values_changed()

    async def _download_firmware(self, uri: str) -> None:
        """Pull the package from ``uri`` (coap:// block-wise, http(s)://), checking it
        chunk by chunk; the State and Update Result changes reach observers."""
        receiver = ImageReceiver()
        try:
            parts = urlsplit(uri)
            if parts.scheme == "coap":
                server = await resolve_server(f"coap://{parts.netloc}")
                assert self._endpoint is not None
                segments = tuple(unquote(s) for s in parts.path.split("/") if s)
                expected = await self._endpoint.fetch(
                    server,
                    segments,
                    receiver.feed,
                    response_timeout=self.timing.request_timeout,
                )
            else:
                expected = await _http_download(uri, receiver, self.timing.request_timeout)
        except (CoapError, httpx.HTTPError, OSError, ValueError) as error:
            log.info("%s: firmware download from %s failed: %s", self.endpoint_name, uri, error)
            not_found = isinstance(error, _NotFound) or (
                isinstance(error, CoapErrorResponse) and error.code == Code.NOT_FOUND
            )
            failure = FirmwareResult.INVALID_URI.value if not_found else CONNECTION_LOST
            self.objects.firmware_download_failed(failure)
        else:
            self.objects.firmware_downloaded(receiver, expected)
        self.values_changed()

    async def _reboot(self, while_down: Callable[[], None] | None = None) -> None:
        """A reboot loses observations and the registration; the device registers anew.

        ``while_down`` runs before registering (e.g. installing new firmware).
        """
        self._drop_observations()
        if self._update_timer is not None:
            self._update_timer.cancel()
        self.location = None
        self.state = DeviceState.REGISTERING
        await asyncio.sleep(self.timing.reboot_delay)
        if while_down is not None:
            while_down()
        try:
            await self._register()
        except RegistrationError as error:
            log.warning("%s: register after reboot failed: %s", self.endpoint_name, error)

    def _after_change(self) -> None:
        self.values_changed()

    # --- observations --------------------------------------------------------------------

    def _observe(
        self,
        request: Message,
        paths: tuple[LwM2mPath, ...],
        composite: bool,
        fmt: int,
        value: object,
    ) -> Observation:
        self._cancel_observation(request.token)
        now = asyncio.get_running_loop().time()
        observation = Observation(request.token, paths, composite, fmt, request.remote, now, value)
        if self._observations is None:
            self._observations = {}
        self._observations[request.token] = observation
        self._plan(observation, now, change_pending=False)
        return observation

    def _attributes_of(self, observation: Observation) -> notify.EffectiveAttributes:
        default_pmin, default_pmax = self.objects.default_periods()
        chain = self.objects.attribute_chain(observation.paths[0])
        return notify.resolve_attributes(chain, default_pmin, default_pmax)

    def _current_value(self, observation: Observation) -> object:
        if observation.composite:
            return self._composite_nodes(observation.paths)
        return _observed_value(self.objects.read(observation.paths[0]))

    def _evaluate(self, observation: Observation) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        try:
            value = self._current_value(observation)
        except OperationError as error:
            self._end_observation(observation, error.code)
            return
        attributes = self._attributes_of(observation)
        due = notify.notification_due(
            attributes,
            last_sent_at=observation.last_sent_at,
            last_value=observation.last_value,
            value=value,
            now=now,
        )
        if due:
            self._notify(observation, value, now)
            self._plan(observation, now, change_pending=False)
        else:
            notable = notify.change_is_notable(attributes, observation.last_value, value)
            self._plan(observation, now, change_pending=notable)

    def _plan(self, observation: Observation, now: float, *, change_pending: bool) -> None:
        if observation.timer is not None:
            observation.timer.cancel()
            observation.timer = None
        attributes = self._attributes_of(observation)
        when = notify.next_check_at(
            attributes, last_sent_at=observation.last_sent_at, change_pending=change_pending
        )
        if self.objects.live_clock and any(
            CURRENT_TIME.starts_with(path) for path in observation.paths
        ):
            wall = self.objects.clock()
            next_second = now + (math.floor(wall) + 1 - wall)
            when = next_second if when is None else min(when, next_second)
        if when is not None:
            loop = asyncio.get_running_loop()
            observation.timer = loop.call_at(max(when, now), self._evaluate, observation)

    def _notify(self, observation: Observation, value: object, now: float) -> None:
        assert self._endpoint is not None
        observation.sequence = (observation.sequence + 1) % _OBSERVE_SEQUENCE_MODULO
        observation.last_sent_at = now
        observation.last_value = value
        if observation.composite:
            assert isinstance(value, dict)
            codec = COMPOSITE_CODECS[observation.content_format]
            payload = codec.encode_composite(value, models())
        else:
            path = observation.paths[0]
            payload = self._encode(observation.content_format, self.objects.read(path), path)
        message = Message(code=Code.CONTENT, payload=payload)
        message.opt.content_format = observation.content_format
        message.opt.observe = observation.sequence
        message.token = observation.token
        token = observation.token

        def delivered(ok: bool) -> None:
            if not ok:
                self._cancel_observation(token)

        self._wake()
        self._endpoint.send_notification(
            message,
            observation.remote,
            confirmable=self.confirmable_notifications,
            on_delivery=delivered,
        )
        self.stats.notifications_sent += 1

    def _end_observation(self, observation: Observation, code: Code) -> None:
        """The observed target is gone: an error notification ends the observation."""
        self._cancel_observation(observation.token)
        if self._endpoint is None:
            return
        message = Message(code=code)
        message.token = observation.token
        self._endpoint.send_notification(
            message, observation.remote, confirmable=self.confirmable_notifications
        )

    def _cancel_observation(self, token: bytes) -> None:
        if not self._observations:
            return
        observation = self._observations.pop(token, None)
        if observation is not None and observation.timer is not None:
            observation.timer.cancel()

    def _drop_observations(self) -> None:
        for token in list(self._observations or ()):
            self._cancel_observation(token)

    # --- background work ---------------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if self._tasks is None:
            self._tasks = set()
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _call_later(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timers is None:
            self._timers = set()
        timers = self._timers
        handle: asyncio.TimerHandle

        def run() -> None:
            timers.discard(handle)
            callback()

        handle = asyncio.get_running_loop().call_later(delay, run)
        timers.add(handle)

    def _cancel_background(self) -> None:
        self._drop_observations()
        for timer in (self._update_timer, self._sleep_timer, *(self._timers or ())):
            if timer is not None:
                timer.cancel()
        self._update_timer = self._sleep_timer = None
        self._timers = None
        current = asyncio.current_task()
        for task in list(self._tasks or ()):
            if task is not current:
                task.cancel()


def _request_path(request: Message) -> LwM2mPath:
    segments = [segment for segment in request.opt.uri_path if segment != ""]
    try:
        if any(not segment.isdigit() for segment in segments):
            raise InvalidPathError("not numeric")
        return LwM2mPath.of(*(int(segment) for segment in segments))
    except InvalidPathError as error:
        raise OperationError(Code.NOT_FOUND, f"no such path {'/'.join(segments)}") from error


def _is_executable(path: LwM2mPath) -> bool:
    resource = models().get_resource(path.object_id, path.resource_id)  # type: ignore[arg-type]
    return resource is not None and resource.operations.executable


def _observed_value(node: Node) -> object:
    """What observation compares: the plain value of a single resource, else the node."""
    if isinstance(node, SingleResource):
        return node.value
    return node


class _NotFound(ValueError):
    """The package URI names nothing (4.04, 404): Update Result 7, invalid URI."""


async def _http_download(uri: str, receiver: ImageReceiver, io_timeout: float) -> int | None:
    """Stream an HTTP(S) download into ``receiver``; returns the announced length."""
    async with (
        httpx.AsyncClient(timeout=io_timeout) as http,
        http.stream("GET", uri) as response,
    ):
        if response.status_code == 404:
            raise _NotFound(f"{uri} answered 404")
        response.raise_for_status()
        length = response.headers.get("content-length")
        async for chunk in response.aiter_bytes():
            receiver.feed(chunk)
    return int(length) if length is not None and length.isdigit() else None


_server_addresses: dict[str, Address] = {}


async def resolve_server(server_uri: str) -> Address:
    """The socket address of ``coap[s]://host[:port]`` (or ``coap+tcp://``, ``coaps+tcp://``);
    names are resolved once per process."""
    cached = _server_addresses.get(server_uri)
    if cached is not None:
        return cached
    parts = urlsplit(server_uri)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"server URI must look like coap[s]://host:port, got {server_uri!r}")
    port = parts.port or _DEFAULT_PORTS[parts.scheme]
    try:
        address: Address = (str(ipaddress.ip_address(parts.hostname)), port)
    except ValueError:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(parts.hostname, port, type=2)  # SOCK_DGRAM
        address = infos[0][4][:2]
    _server_addresses[server_uri] = address
    return address


def _certificate_name(host: str | None) -> str | None:
    """The name the server's certificate must carry: the URI's host name, or none for an
    IP literal (the certificate is then checked against the CA only)."""
    if host is None:
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


def local_host_for(server_host: str) -> str:
    address = ipaddress.ip_address(server_host)
    if address.version == 6:
        return "::1" if address.is_loopback else "::"
    return "127.0.0.1" if address.is_loopback else "0.0.0.0"  # noqa: S104 - a client socket
