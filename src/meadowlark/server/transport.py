"""The boundary between LwM2M server logic and a CoAP transport.

``server/`` sees requests and responses as these plain dataclasses; the transport
adapter (``coap/``) converts them to and from wire messages. A replacement transport
only has to implement ``LwM2mEndpoint`` and call an ``UplinkHandler``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple, Protocol, TypedDict, Unpack

from meadowlark.lwm2m.path import LwM2mPath


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """Whom a secure transport (DTLS) authenticated the peer as, during its handshake.

    ``mode`` is the kind of credential the session was authenticated with: ``psk``,
    ``rpk`` or ``cert``. ``name`` is what identifies the device under it: the PSK
    identity, the certificate subject's common name, or the raw public key (as the
    transport renders it). Only a transport that verified the credential sets this.
    """

    mode: str
    name: str
    alternative_names: tuple[str, ...] = ()
    """``cert``: the certificate's subject alternative names (DNS names, URIs, e-mail
    addresses), which a device record may name instead of the common name."""


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a device talks from: the source address of its last uplink.

    ``handle`` is the transport's own address object (opaque here); a transport uses it
    to answer from the same socket and local address the device reached (NAT).
    ``identity`` is set by a transport that authenticated the peer (a DTLS session);
    plain UDP leaves it ``None``: such a request proves nothing about who sent it, and
    its source address can be forged.
    """

    host: str
    port: int
    transport: str = "udp"
    handle: object = field(default=None, compare=False, hash=False, repr=False)
    identity: PeerIdentity | None = None

    @property
    def secure(self) -> bool:
        """Whether the transport authenticated the peer (see ``identity``)."""
        return self.identity is not None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Method(Enum):
    GET = "GET"
    PUT = "PUT"
    POST = "POST"
    DELETE = "DELETE"
    FETCH = "FETCH"
    IPATCH = "iPATCH"


class ResponseCode(NamedTuple):
    """A CoAP response code as (class, detail): ``ResponseCode(2, 5)`` is 2.05 Content."""

    code_class: int
    detail: int

    @property
    def is_success(self) -> bool:
        return self.code_class == 2

    @property
    def http_status(self) -> int:
        """The HTTP status with the same meaning (RFC 8075 §7): 4.04 -> 404, 2.05 -> 200."""
        if self.is_success:
            return 201 if self == CREATED else 204 if self in (DELETED, CHANGED) else 200
        return self.code_class * 100 + self.detail

    def __str__(self) -> str:
        return f"{self.code_class}.{self.detail:02d}"


CREATED = ResponseCode(2, 1)
DELETED = ResponseCode(2, 2)
CHANGED = ResponseCode(2, 4)
CONTENT = ResponseCode(2, 5)
BAD_REQUEST = ResponseCode(4, 0)
FORBIDDEN = ResponseCode(4, 3)
NOT_FOUND = ResponseCode(4, 4)
METHOD_NOT_ALLOWED = ResponseCode(4, 5)
PRECONDITION_FAILED = ResponseCode(4, 12)
REQUEST_ENTITY_TOO_LARGE = ResponseCode(4, 13)
UNSUPPORTED_CONTENT_FORMAT = ResponseCode(4, 15)
INTERNAL_SERVER_ERROR = ResponseCode(5, 0)
SERVICE_UNAVAILABLE = ResponseCode(5, 3)


class RequestOptions(TypedDict, total=False):
    """The ``DownlinkRequest`` fields ``for_path`` passes through."""

    query: tuple[str, ...]
    payload: bytes
    content_format: int | None
    accept: int | None
    observe: int | None
    confirmable: bool


@dataclass(frozen=True, slots=True)
class DownlinkRequest:
    """A request from the server to a device.

    ``uri_path`` is absolute from the device's CoAP root, alternate root path included
    (see ``for_path``). ``observe`` is 0 to register an observation, 1 to cancel one.
    """

    method: Method
    uri_path: tuple[str, ...] = ()
    query: tuple[str, ...] = ()
    payload: bytes = b""
    content_format: int | None = None
    accept: int | None = None
    observe: int | None = None
    confirmable: bool = True

    @classmethod
    def for_path(
        cls,
        method: Method,
        path: LwM2mPath,
        root_path: str = "/",
        **options: Unpack[RequestOptions],
    ) -> DownlinkRequest:
        """A request to ``path`` under the device's root path (``/`` or e.g. ``/lwm2m``)."""
        root = tuple(segment for segment in root_path.split("/") if segment)
        segments = root + tuple(str(part) for part in path.ids)
        return cls(method, segments, **options)


@dataclass(frozen=True, slots=True)
class DownlinkResponse:
    code: ResponseCode
    payload: bytes = b""
    content_format: int | None = None
    observe: int | None = None
    location_path: tuple[str, ...] = ()


class TransportError(Exception):
    """The request could not be delivered or got no usable answer (e.g. ICMP unreachable)."""


class TransportTimeout(TransportError):
    """No response within the time allowed."""


NotificationCallback = Callable[[DownlinkResponse], None]
ObservationEndCallback = Callable[[], None]


class ObservationHandle(Protocol):
    """A transport-level observation started by ``LwM2mEndpoint.observe``."""

    @property
    def initial_response(self) -> DownlinkResponse:
        """The first response; when not a success or without Observe, nothing is observed."""

    @property
    def active(self) -> bool:
        """True while notifications can arrive."""

    async def cancel(self, *, active: bool) -> None:
        """Stop observing: ``active`` sends GET with Observe=1 and the observation's
        token (RFC 7641 §3.6); otherwise the next notification is answered with RST
        (RFC 7641 §3.6, "passive" cancellation)."""


class TrafficCounter:
    """Bytes and datagrams exchanged per peer address, added by the transport as they
    pass and drained in batches by whoever keeps usage (no I/O per datagram)."""

    def __init__(self) -> None:
        self._by_address: dict[tuple[str, int], list[int]] = {}

    def add(self, address: tuple[str, int], *, received: int = 0, sent: int = 0) -> None:
        """Count one datagram of ``received`` or ``sent`` bytes."""
        counts = self._by_address.get(address)
        if counts is None:
            counts = self._by_address[address] = [0, 0, 0, 0]
        if received:
            counts[0] += received
            counts[2] += 1
        if sent:
            counts[1] += sent
            counts[3] += 1

    def drain(self) -> dict[tuple[str, int], tuple[int, int, int, int]]:
        """Address -> (bytes in, bytes out, datagrams in, datagrams out) since last drain."""
        drained, self._by_address = self._by_address, {}
        return {address: (c[0], c[1], c[2], c[3]) for address, c in drained.items()}


class LwM2mEndpoint(Protocol):
    """What ``server/`` needs from a transport to reach devices."""

    async def ping(
        self,
        peer: Peer,
        timeout: float,  # noqa: ASYNC109 - API deadline, mapped to 504
    ) -> None:
        """A CoAP ping (empty CON, answered by RST); ``TransportTimeout`` if unanswered."""

    async def send(
        self,
        peer: Peer,
        request: DownlinkRequest,
        timeout: float,  # noqa: ASYNC109 - API deadline, mapped to 504
    ) -> DownlinkResponse: ...

    async def observe(
        self,
        peer: Peer,
        request: DownlinkRequest,
        on_notify: NotificationCallback,
        on_end: ObservationEndCallback,
        timeout: float,  # noqa: ASYNC109 - API deadline, mapped to 504
    ) -> ObservationHandle: ...


@dataclass(frozen=True, slots=True)
class UplinkResult:
    """The answer to a device's request: code, Location-Path, Max-Age, diagnostic text."""

    code: ResponseCode
    location_path: tuple[str, ...] = ()
    max_age: int | None = None
    diagnostic: str = ""


class UplinkHandler(Protocol):
    """What the transport calls for device-initiated requests (Transport 1.1 §6.4, §6.5).

    ``peer`` tells where a request came from and, in ``peer.identity``, whether and as
    whom the transport authenticated it; the server decides what that allows.
    """

    async def on_register(
        self, peer: Peer, query: Sequence[str], payload: bytes, content_format: int | None
    ) -> UplinkResult: ...

    async def on_update(
        self,
        peer: Peer,
        location: str,
        query: Sequence[str],
        payload: bytes,
        content_format: int | None,
    ) -> UplinkResult: ...

    async def on_deregister(self, peer: Peer, location: str) -> UplinkResult: ...

    async def on_send(
        self, peer: Peer, payload: bytes, content_format: int | None
    ) -> UplinkResult: ...

    def on_peer_closed(self, peer: Peer) -> None:
        """The connection ``peer`` came on closed (stream transports: TCP, TLS). A device
        reached through it is unreachable until it connects again: a queue-mode one
        counts as asleep (its requests are queued), not awake for the rest of its window."""


@dataclass(frozen=True, slots=True)
class DownloadBlock:
    """One slice of a file offered to devices (a firmware image, RFC 7959 Block2).

    ``etag`` (at most 8 bytes, RFC 7252 §5.10.6) changes whenever the content does.
    """

    data: bytes
    total_size: int
    etag: bytes


class DownloadSource(Protocol):
    """Files devices fetch over CoAP by an unguessable, expiring name (``/fw/{token}``)."""

    async def read_block(self, token: str, offset: int, size: int) -> DownloadBlock | None:
        """Up to ``size`` bytes from ``offset``; ``None`` when the token names nothing
        (unknown, expired, forged, or its file is gone)."""
