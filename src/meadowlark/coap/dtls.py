"""The server's DTLS 1.2 socket (``coaps://``): sessions per peer address, CoAP inside.

``DtlsServer`` binds one UDP socket and adds a message interface to the aiocoap context
of ``CoapServer``, so the same site (``Lwm2mSite``) answers decrypted requests and the
same ``AiocoapEndpoint`` sends downlinks: a message to a ``DtlsEndpointAddress`` is
encrypted on that peer's session.

The DTLS protocol is python-mbedtls (Mbed TLS 2.28) used sans-IO: each session is a
``TLSWrappedBuffer`` fed with the datagrams of its address. What happens to a datagram:

- not a DTLS record (content type, version), or a record from an address without a
  session that is not a ClientHello: dropped, nothing is created;
- a ClientHello from an address over its handshake budget (``SessionTable.allow_handshake``):
  dropped before any cryptography;
- a ClientHello without a valid cookie: answered with a HelloVerifyRequest from a
  throwaway buffer (RFC 6347 §4.2.1: no state until the address is proven);
- a ClientHello with a valid cookie: a session starts (replacing an older one from the
  same address: the device lost its session and re-handshakes);
- anything else goes to the address's session. A handshake that fails is reported to
  ``on_handshake_failure`` with the identity it claimed and why (never the key).

Once established, a session authenticated the device as a ``PeerIdentity``: the PSK
identity (``psk``) or the client certificate's subject common name and alternative
names (``cert``); it rides on every message's remote into ``Peer.identity``
(``coap.convert.peer_of``).

Handshake cryptography (ECDHE, ECDSA signatures and certificate checks: 12-18 ms of CPU
for an X.509 handshake) runs in slices: ``HandshakeScheduler`` takes one
``do_handshake`` step at a time, round robin over the sessions with work, and gives the
event loop back once a slice (``handshake_slice``) is spent, so the REST API and the
records of established sessions (cheap: they stay inline) wait for one step, not for
every pending handshake. Threads would not help: python-mbedtls holds the GIL during
``mbedtls_ssl_handshake_step``, so a worker thread stalls the loop just the same.

Known limits of the library (python-mbedtls 2.10): no raw public keys (RFC 7250), no
Connection ID (RFC 9146), no server-side session cache or tickets (no resumption): a
device whose address changes, or whose session was dropped, does a full handshake.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypedDict, TypeVar, cast

import structlog
from aiocoap import Context, Message, error, interfaces
from aiocoap.messagemanager import MessageManager
from aiocoap.tokenmanager import TokenManager
from aiocoap.util import hostportjoin
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from mbedtls import pk, tls
from mbedtls import x509 as mbedtls_x509
from mbedtls.exceptions import TLSError

from meadowlark.coap import wire
from meadowlark.coap.peer_certificates import certificate_identity
from meadowlark.coap.udp import LeanRegistrations, bind_udp_socket
from meadowlark.server.transport import Peer, PeerIdentity, TrafficCounter, UplinkHandler

_log = structlog.get_logger("meadowlark.lwm2m")

Address = tuple[str, int]

_RECORD_HEADER = 13
"""DTLS record header: type, version (2), epoch (2), sequence number (6), length (2)."""
_HANDSHAKE = 22
_CLIENT_HELLO = 1
_CONTENT_TYPES = frozenset({20, 21, 22, 23})
_DTLS_MAJOR = 0xFE
_READ_SIZE = 65536
_SWEEP_INTERVAL = 1.0
HELLO_MEMORY = 120.0
"""Seconds the random of a session's ClientHello is remembered against replays: longer
than a cookie is valid (Mbed TLS: 60 s), so a replay is either refused as such or fails
the cookie check."""
_DATAGRAM_SIZE = 1280
"""Largest datagram a flight is packed into (the IPv6 minimum MTU) unless one record is
larger (a long certificate chain: then IP fragments it)."""
_MAX_HANDSHAKE_STEPS = 64
"""A full handshake has about 20 steps; more from one datagram means something is off."""
# python-mbedtls's stub declares the HandshakeStep members as ``int`` attributes; looked up
# by name they keep their enum type.
_HELLO_STATES = frozenset(
    {
        tls.HandshakeStep["HELLO_REQUEST"],
        tls.HandshakeStep["CLIENT_HELLO"],
        tls.HandshakeStep["SERVER_HELLO"],
        tls.HandshakeStep["SERVER_HELLO_VERIFY_REQUEST_SENT"],
    }
)
"""The steps that parse a ClientHello and answer it with a HelloVerifyRequest (bad
cookie) or a ServerHello (good cookie): cheap, no public-key cryptography."""
_HANDSHAKE_OVER = tls.HandshakeStep["HANDSHAKE_OVER"]
_MAX_THROTTLED_HOSTS = 65536


def is_record(data: bytes) -> bool:
    """Whether ``data`` starts like a DTLS record (cheap check before any session work)."""
    return len(data) >= _RECORD_HEADER and data[0] in _CONTENT_TYPES and data[1] == _DTLS_MAJOR


def client_random(data: bytes) -> bytes:
    """The 32-byte random of a ClientHello datagram (after the record header, the
    handshake header and client_version); it tells a retransmission from a new hello."""
    start = _RECORD_HEADER + 12 + 2
    return data[start : start + 32]


def is_client_hello(data: bytes) -> bool:
    """Whether ``data`` starts with an epoch-0 handshake record holding a ClientHello."""
    return (
        len(data) > _RECORD_HEADER
        and data[0] == _HANDSHAKE
        and data[1] == _DTLS_MAJOR
        and data[3] == 0
        and data[4] == 0
        and data[_RECORD_HEADER] == _CLIENT_HELLO
    )


def pack_records(data: bytes, limit: int) -> list[bytes]:
    """``data`` (whole DTLS records back to back, as the library writes a flight) cut
    into datagrams of at most ``limit`` bytes at record boundaries (RFC 6347 §4.1.1: a
    record never spans datagrams); a record longer than ``limit`` goes alone."""
    datagrams: list[bytes] = []
    start = end = 0
    while end < len(data):
        record_end = end + _RECORD_HEADER + int.from_bytes(data[end + 11 : end + 13], "big")
        if record_end - start > limit and end > start:
            datagrams.append(data[start:end])
            start = end
        end = record_end
    if start < len(data):
        datagrams.append(data[start:])
    return datagrams


# --- the session table -------------------------------------------------------------------


S = TypeVar("S")


class SessionLimits(TypedDict):
    """The bounds a ``SessionTable`` is built with."""

    max_sessions: int
    idle_timeout: float
    handshake_timeout: float
    handshakes_per_second: float


class SessionTable(Generic[S]):
    """Sessions by peer address, with a cap, timeouts and a per-host handshake budget.

    Pure bookkeeping (``clock`` is injectable): the transport decides what a session is.
    A session is *handshaking* from its verified ClientHello until ``established`` is
    called; only established sessions are evicted to make room (least recently used
    first), handshaking ones end by ``handshake_timeout``.
    """

    def __init__(
        self,
        *,
        max_sessions: int,
        idle_timeout: float,
        handshake_timeout: float,
        handshakes_per_second: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.handshakes_per_second = handshakes_per_second
        self._clock = clock
        self._sessions: OrderedDict[Address, tuple[S, float]] = OrderedDict()
        """Least recently used first; value: (session, last activity)."""
        self._handshaking: OrderedDict[Address, float] = OrderedDict()
        """Oldest first; value: when the handshake started."""
        self._budgets: dict[str, tuple[float, float]] = {}
        """Host -> (ClientHellos still allowed, when counted)."""
        self._hellos: dict[tuple[Address, bytes], float] = {}
        """(address, ClientHello random) of the sessions started lately -> until when it
        is remembered (oldest first)."""

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[tuple[Address, S]]:
        return iter([(address, entry[0]) for address, entry in self._sessions.items()])

    def get(self, address: Address) -> S | None:
        """The session of ``address``, marked as just used."""
        entry = self._sessions.get(address)
        if entry is None:
            return None
        self._sessions[address] = (entry[0], self._clock())
        self._sessions.move_to_end(address)
        return entry[0]

    def peek(self, address: Address) -> S | None:
        entry = self._sessions.get(address)
        return None if entry is None else entry[0]

    def is_handshaking(self, address: Address) -> bool:
        return address in self._handshaking

    def allow_handshake(self, host: str) -> bool:
        """Spend one ClientHello of ``host``'s budget; False when it is used up.

        A handshake takes two ClientHellos (the second one carries the cookie), so the
        budget refills at twice ``handshakes_per_second`` and holds as many.
        """
        capacity = 2.0 * self.handshakes_per_second
        now = self._clock()
        tokens, counted = self._budgets.get(host, (capacity, now))
        tokens = min(capacity, tokens + (now - counted) * capacity)
        if tokens < 1.0:
            self._budgets[host] = (tokens, now)
            return False
        if len(self._budgets) >= _MAX_THROTTLED_HOSTS and host not in self._budgets:
            self._forget_full_budgets(now)
        self._budgets[host] = (tokens - 1.0, now)
        return True

    def replayed(self, address: Address, random: bytes) -> bool:
        """Whether a session was started lately from ``address`` with this ClientHello
        random: a replayed hello (a real client never reuses one for a new handshake)."""
        return (address, random) in self._hellos

    def add_handshake(self, address: Address, session: S, random: bytes = b"") -> list[S] | None:
        """Start ``session`` for ``address`` (replacing the address's old one).

        Returns the sessions dropped to make room (the replaced one included), or None
        when the table is full of handshakes and ``session`` was not added. ``random``
        (its ClientHello's) is remembered for ``HELLO_MEMORY`` seconds (``replayed``).
        """
        dropped: list[S] = []
        old = self.remove(address)
        if old is not None:
            dropped.append(old)
        while len(self._sessions) >= self.max_sessions:
            victim = next((a for a in self._sessions if a not in self._handshaking), None)
            if victim is None:
                return None
            dropped.append(self._sessions.pop(victim)[0])
        now = self._clock()
        self._sessions[address] = (session, now)
        self._handshaking[address] = now
        if random:
            self._hellos[(address, random)] = now + HELLO_MEMORY
        return dropped

    def established(self, address: Address) -> None:
        """The handshake of ``address`` finished: its session is now evictable."""
        self._handshaking.pop(address, None)

    def remove(self, address: Address) -> S | None:
        self._handshaking.pop(address, None)
        entry = self._sessions.pop(address, None)
        return None if entry is None else entry[0]

    def expire(self) -> list[tuple[Address, S, str]]:
        """Drop idle sessions and overdue handshakes: (address, session, reason) each."""
        now = self._clock()
        expired: list[tuple[Address, S, str]] = []
        while self._handshaking:
            address, started = next(iter(self._handshaking.items()))
            if started + self.handshake_timeout > now:
                break
            session = self.remove(address)
            if session is not None:
                expired.append((address, session, "handshake_timeout"))
        while self._sessions:
            address, (session, last) = next(iter(self._sessions.items()))
            if last + self.idle_timeout > now:
                break
            reason = "handshake_timeout" if address in self._handshaking else "idle"
            self.remove(address)
            expired.append((address, session, reason))
        self._forget_full_budgets(now)
        while self._hellos:
            hello, until = next(iter(self._hellos.items()))
            if until > now:
                break
            del self._hellos[hello]
        return expired

    def _forget_full_budgets(self, now: float) -> None:
        capacity = 2.0 * self.handshakes_per_second
        self._budgets = {
            host: (tokens, counted)
            for host, (tokens, counted) in self._budgets.items()
            if tokens + (now - counted) * capacity < capacity
        }


# --- handshake slices ----------------------------------------------------------------------


class HandshakeScheduler(Generic[S]):
    """Runs handshake work on the event loop in slices, round robin over the sessions.

    ``work(session)`` takes one step and says whether another can follow at once (False:
    the session waits for data, is established or is gone). A slice runs steps until
    ``slice_seconds`` are spent, then the loop gets its turn (I/O, REST requests, the
    records of established sessions) before the next slice: each waits for one step at
    most, not for every pending handshake. A session's steps run in order, one at a
    time. When nothing is pending, new work runs at once (in the datagram's callback):
    a cheap handshake (plain PSK) finishes without waiting for a loop turn. ``clock``
    is injectable for tests.
    """

    def __init__(
        self,
        work: Callable[[S], bool],
        slice_seconds: float,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._work = work
        self.slice_seconds = slice_seconds
        self._clock = clock
        self._queue: deque[S] = deque()
        self._queued: set[S] = set()
        self._next: asyncio.Handle | None = None
        self._running = False
        self.slices = 0
        """Slices run so far (for tests and benchmarks)."""

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, session: S) -> None:
        """``session`` has work (new data or a verified ClientHello): it gets a turn."""
        if session in self._queued:
            return
        self._queued.add(session)
        self._queue.append(session)
        if self._next is None and not self._running:
            self.run_slice()

    def run_slice(self) -> None:
        self._next = None
        self._running = True
        self.slices += 1
        end = self._clock() + self.slice_seconds
        try:
            while self._queue:
                session = self._queue.popleft()
                if self._work(session):
                    self._queue.append(session)
                else:
                    self._queued.discard(session)
                if self._clock() >= end:
                    break
        finally:
            self._running = False
        if self._queue:
            self._schedule()

    def cancel(self) -> None:
        if self._next is not None:
            self._next.cancel()
            self._next = None
        self._queue.clear()
        self._queued.clear()

    def _schedule(self) -> None:
        if self._next is None:
            self._next = asyncio.get_running_loop().call_soon(self.run_slice)


# --- credentials ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtlsCredentials:
    """What the server authenticates devices with, and itself to them.

    ``psk_keys``: identity -> key, consulted during each handshake (a live keyring: a
    changed key counts from the next handshake). ``certificate``/``private_key``: PEM
    files of the server's certificate (offered to X.509 devices). ``ca_bundle``: PEM file
    of the CAs of device certificates; None: no client certificate is accepted.
    """

    psk_keys: Mapping[str, bytes]
    certificate: Path | None = None
    private_key: Path | None = None
    ca_bundle: Path | None = None


@dataclass(frozen=True, slots=True)
class HandshakeFailure:
    """A handshake that did not authenticate: past the cookie (the address answered),
    or a replayed ClientHello.

    ``reason``: ``unknown_identity``, ``wrong_key``, ``certificate_rejected``,
    ``no_client_credential``, ``handshake_timeout``, ``replayed_hello`` or
    ``handshake_failed``; ``error`` is the library's message. Never a key.
    """

    host: str
    port: int
    identity: str | None
    reason: str
    error: str = ""


class _Session:
    """One peer's DTLS state: the library buffer and what the handshake revealed."""

    __slots__ = (
        "address",
        "buffer",
        "hello",
        "remote",
        "psk_identity",
        "psk_known",
        "steps",
        "inbox",
        "reading",
    )

    def __init__(self, address: Address, buffer: tls.TLSWrappedBuffer, hello: bytes) -> None:
        self.address = address
        self.buffer = buffer
        self.hello = hello
        """The random of the ClientHello that started this session."""
        self.remote: DtlsEndpointAddress | None = None
        """Set once established: the remote of every message of this session."""
        self.psk_identity: str | None = None
        self.psk_known = False
        self.steps = 0
        """Handshake steps taken since the last datagram was fed (``_MAX_HANDSHAKE_STEPS``)."""
        self.inbox: deque[bytes] = deque()
        """Datagrams received during the handshake, not yet fed to the library: it gets
        one at a time (Mbed TLS reads a buffer as one datagram and drops the rest of a
        datagram after a record it does not expect, such as a retransmission)."""
        self.reading = False
        """The library waits for the next datagram."""


class _RecordingKeys(Mapping[str, bytes]):
    """The PSK store the library consults, noting which identity the current session
    asked for (the library does not report it)."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        self._keys = keys
        self.session: _Session | None = None

    def __getitem__(self, identity: str) -> bytes:
        session = self.session
        if session is not None:
            session.psk_identity, session.psk_known = identity, False
        key = self._keys[identity]
        if session is not None:
            session.psk_known = True
        return key

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def server_ciphers() -> tuple[str, ...]:
    """The suites offered, in the server's order of preference: plain PSK first (the
    cheapest; LwM2M's mandatory ``TLS_PSK_WITH_AES_128_CCM_8`` among them), then
    ECDHE-PSK, then ECDHE-ECDSA for certificates (LwM2M's ``..._AES_128_CCM_8`` too).

    An Mbed TLS client without a PSK does not offer PSK suites, so a certificate client
    still gets a certificate suite.
    """
    available = tls.ciphers_available()
    order = ("TLS-PSK-WITH-", "TLS-ECDHE-PSK-WITH-", "TLS-ECDHE-ECDSA-WITH-")
    return tuple(name for prefix in order for name in available if name.startswith(prefix))


def _server_context(credentials: DtlsCredentials, keys: _RecordingKeys) -> tls.ServerContext:
    chain: Any = None
    if credentials.certificate is not None and credentials.private_key is not None:
        certificates = [
            mbedtls_x509.CRT.from_DER(certificate.public_bytes(Encoding.DER))
            for certificate in x509.load_pem_x509_certificates(credentials.certificate.read_bytes())
        ]
        key = pk.ECC.from_buffer(credentials.private_key.read_bytes())
        chain = (certificates, key)
    trust = None
    if credentials.ca_bundle is not None:
        trust = tls.TrustStore.from_pem_file(credentials.ca_bundle)
    configuration = tls.DTLSConfiguration(
        ciphers=server_ciphers(),
        pre_shared_key_store=keys,
        certificate_chain=chain,
        trust_store=trust,
        validate_certificates=trust is not None,
        lowest_supported_version=tls.DTLSVersion.DTLSv1_2,
    )
    return tls.ServerContext(configuration)


# --- aiocoap glue --------------------------------------------------------------------------


# aiocoap ships no type information: its classes are Any to mypy.
class DtlsEndpointAddress(interfaces.EndpointAddress):  # type: ignore[misc]
    """The remote of messages on one authenticated session: an address and the identity.

    Equal for the same address and identity, so a device that re-handshakes from the
    same address under the same identity is the same remote to aiocoap (pending
    exchanges, observations). A message to it goes out only on a session of that
    identity at that address: never to whoever holds the address meanwhile.
    """

    scheme = "coaps"
    is_multicast = False
    is_multicast_locally = False
    maximum_block_size_exp = 6
    """Settable per instance (the site lowers it to the server's block size)."""

    def __init__(
        self, interface: DtlsMessageInterface, address: Address, identity: PeerIdentity
    ) -> None:
        self.interface = interface
        self.address = address
        self.identity = identity

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DtlsEndpointAddress)
            and other.interface is self.interface
            and other.address == self.address
            and other.identity == self.identity
        )

    def __hash__(self) -> int:
        return hash((self.address, self.identity))

    def __repr__(self) -> str:
        return f"<DtlsEndpointAddress {self.hostinfo} as {self.identity.mode}:{self.identity.name}>"

    @property
    def host(self) -> str:
        return _printable_host(self.address[0])

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def hostinfo(self) -> str:
        joined: str = hostportjoin(self.host, self.port)
        return joined

    @property
    def hostinfo_local(self) -> str:
        return self.interface.hostinfo_local

    @property
    def uri_base(self) -> str:
        return "coaps://" + self.hostinfo

    @property
    def uri_base_local(self) -> str:
        return "coaps://" + self.hostinfo_local

    @property
    def blockwise_key(self) -> tuple[Address, PeerIdentity]:
        return (self.address, self.identity)

    @property
    def authenticated_claims(self) -> list[PeerIdentity]:
        return [self.identity]

    def send(self, data: bytes) -> None:
        self.interface.send_plaintext(self, data)


# aiocoap ships no type information: its classes are Any to mypy.
class DtlsMessageInterface(
    LeanRegistrations,
    interfaces.MessageInterface,  # type: ignore[misc]
    asyncio.DatagramProtocol,
):
    """aiocoap message interface over the DTLS sessions of one UDP socket; Register,
    Update and De-register skip aiocoap as on plain UDP (``LeanRegistrations``)."""

    def __init__(
        self,
        message_manager: interfaces.MessageManager,
        credentials: DtlsCredentials,
        table: SessionTable[_Session],
        handler: UplinkHandler,
        *,
        max_payload: int = 65536,
        traffic: TrafficCounter | None = None,
        on_handshake_failure: Callable[[HandshakeFailure], None] | None = None,
        handshake_slice: float = 0.001,
    ) -> None:
        self._manager: interfaces.MessageManager | None = message_manager
        self._init_lean()
        self.handler = handler
        self.max_payload = max_payload
        self._keys = _RecordingKeys(credentials.psk_keys)
        self._context = _server_context(credentials, self._keys)
        self.table = table
        self.traffic = traffic
        self.on_handshake_failure = on_handshake_failure
        self.block_size_exp = 6
        self.transport: asyncio.DatagramTransport | None = None
        self.hostinfo_local = ""
        self.dropped = 0
        """Datagrams dropped before reaching a session (garbage, throttled, unknown)."""
        self.failed_handshakes = 0
        self.handshakes: HandshakeScheduler[_Session] = HandshakeScheduler(
            self._handshake_step, handshake_slice
        )
        self._sweeper: asyncio.TimerHandle | None = None

    # --- asyncio -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint's protocol: asyncio hands it the DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.hostinfo_local = hostportjoin(_printable_host(sockname[0]), sockname[1])
        self._schedule_sweep()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        address: Address = (addr[0], addr[1])
        if self.traffic is not None:
            self.traffic.add((_printable_host(address[0]), address[1]), received=len(data))
        try:
            self._receive(data, address)
        except Exception:  # a datagram must never break the socket
            _log.exception("dtls_datagram_failed", peer=str(address))
            self._drop_session(address)

    def error_received(self, exc: Exception) -> None:
        _log.debug("dtls_socket_error", error=str(exc))

    # --- aiocoap MessageInterface --------------------------------------------------------

    def send(self, message: Message) -> None:
        remote = message.remote
        if self._manager is None or not isinstance(remote, DtlsEndpointAddress):
            return
        remote.send(message.encode())

    async def determine_remote(self, message: Message) -> None:
        """Never: a server cannot start a DTLS session; devices reach it first."""
        return None

    async def recognize_remote(self, remote: Any) -> bool:
        return isinstance(remote, DtlsEndpointAddress) and remote.interface is self

    async def shutdown(self) -> None:
        self._manager = None
        self.handshakes.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for address, session in self.table:
            self._close(session)
            self.table.remove(address)
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    # --- sessions ------------------------------------------------------------------------

    def close_sessions(self, identity: str) -> int:
        """End the live sessions authenticated with PSK ``identity`` (its key changed or
        it was removed); returns how many. The device must handshake again."""
        closed = 0
        for address, session in self.table:
            named = session.psk_identity == identity
            if named and (session.remote is None or session.remote.identity.mode == "psk"):
                self.table.remove(address)
                self._close(session)
                closed += 1
        return closed

    def send_plaintext(self, remote: DtlsEndpointAddress, data: bytes) -> None:
        session = self.table.peek(remote.address)
        if session is None or session.remote != remote:
            # The session is gone (or someone else's now): the exchange times out.
            _log.debug("dtls_send_dropped", peer=remote.hostinfo, reason="no session")
            return
        session.buffer.write(data)
        self._flush(session.buffer, session.address)

    # --- receiving -----------------------------------------------------------------------

    def _receive(self, data: bytes, address: Address) -> None:
        if not is_record(data):
            self.dropped += 1
            return
        session = self.table.get(address)
        hello = is_client_hello(data)
        if hello and session is not None and session.remote is not None:
            if session.hello == client_random(data):
                return  # a late retransmission of the ClientHello that made this session
        if session is None or (session.remote is not None and hello):
            # A new ClientHello on an established session: the device lost its session
            # (reboot) and starts over; it replaces the old one once past the cookie.
            if not hello:
                self.dropped += 1  # a record for no session: nothing to decrypt it with
                return
            if not self.table.allow_handshake(address[0]):
                self.dropped += 1
                return
            self._hello(data, address)
            return
        if session.remote is None:
            session.inbox.append(data)
            self.handshakes.add(session)
            return
        session.buffer.receive_from_network(data)
        self._read(session)

    def _hello(self, data: bytes, address: Address) -> None:
        """A ClientHello: a cookie exchange without state, or a session once verified."""
        if self.table.replayed(address, client_random(data)):
            self.dropped += 1
            self._failed(address, None, "replayed_hello", "a ClientHello seen before")
            return
        buffer = self._context.wrap_buffers()
        buffer.setcookieparam(f"{address[0]}:{address[1]}".encode())
        buffer.receive_from_network(data)
        try:  # check the cookie and say ServerHello; the cryptography comes later
            for _ in range(_MAX_HANDSHAKE_STEPS):
                if buffer._handshake_state not in _HELLO_STATES:
                    break
                try:
                    buffer.do_handshake()
                except tls.WantWriteError:
                    self._flush(buffer, address)
        except tls.HelloVerifyRequest:
            self._flush(buffer, address)
            return
        except tls.WantReadError:
            pass
        except TLSError as exc:  # a malformed ClientHello: no session, nothing to say
            _log.debug("dtls_hello_dropped", peer=str(address), error=str(exc))
            self.dropped += 1
            return
        session = _Session(address, buffer, client_random(data))
        dropped = self.table.add_handshake(address, session, session.hello)
        if dropped is None:
            _log.warning("dtls_sessions_full", peer=str(address))
            self.dropped += 1
            return
        for old in dropped:
            self._close(old)
        self._flush(buffer, address)
        self.handshakes.add(session)

    def _handshake_step(self, session: _Session) -> bool:
        """One ``do_handshake`` (``mbedtls_ssl_handshake_step``) of ``session``, for the
        scheduler: True when another step can follow at once. WantWriteError means a
        flight is ready: it is sent and the handshake goes on."""
        if session.remote is not None or self.table.peek(session.address) is not session:
            return False  # established, or replaced, dropped or expired meanwhile
        try:
            return self._step(session)
        except Exception:  # a step must never break the socket
            _log.exception("dtls_handshake_step_failed", peer=str(session.address))
            self._drop_session(session.address)
            return False

    def _step(self, session: _Session) -> bool:
        buffer, address = session.buffer, session.address
        if session.reading:
            if not session.inbox:
                return False
            buffer.receive_from_network(session.inbox.popleft())
            session.reading, session.steps = False, 0
        session.steps += 1
        if session.steps > _MAX_HANDSHAKE_STEPS:
            self.table.remove(address)
            self._failed(address, session.psk_identity, "handshake_failed", "no progress")
            return False
        self._keys.session = session
        try:
            buffer.do_handshake()
        except tls.WantWriteError:
            self._flush(buffer, address)
            return True
        except tls.WantReadError:
            self._flush(buffer, address)
            session.reading = True
            return bool(session.inbox)
        except tls.HelloVerifyRequest:
            self._flush(buffer, address)
            self.table.remove(address)
            return False
        except TLSError as exc:
            self._flush(buffer, address)  # the alert, if any
            self.table.remove(address)
            self._failed(address, session.psk_identity, _failure_reason(session, exc), str(exc))
            return False
        finally:
            self._keys.session = None
        if buffer._handshake_state is not _HANDSHAKE_OVER:
            return True
        self._flush(buffer, address)
        if not self._establish(session):
            return False
        self._read(session)
        while session.inbox and self.table.peek(address) is session:
            buffer.receive_from_network(session.inbox.popleft())  # records after Finished
            self._read(session)
        return False

    def _establish(self, session: _Session) -> bool:
        """The handshake is over: the session's identity, or False (and no session)."""
        identity = self._identity_of(session)
        if identity is None:
            self.table.remove(session.address)
            self._close(session)
            self._failed(
                session.address,
                session.psk_identity,
                "no_client_credential",
                "no PSK and no client certificate",
            )
            return False
        self.table.established(session.address)
        session.remote = DtlsEndpointAddress(self, session.address, identity)
        session.remote.maximum_block_size_exp = self.block_size_exp
        _log.debug(
            "dtls_session_established",
            peer=str(session.address),
            mode=identity.mode,
            identity=identity.name,
        )
        return True

    def _identity_of(self, session: _Session) -> PeerIdentity | None:
        if session.psk_known and session.psk_identity is not None:
            return PeerIdentity("psk", session.psk_identity)
        der = session.buffer.getpeercert(binary_form=True)
        return certificate_identity(der) if der else None

    def _read(self, session: _Session) -> None:
        buffer = session.buffer
        remote = session.remote
        assert remote is not None
        while True:
            try:
                plaintext = buffer.read(_READ_SIZE)
            except (tls.WantReadError, tls.WantWriteError):
                break
            except TLSError as exc:  # close_notify (0x7880), a fatal alert
                _log.debug("dtls_session_closed", peer=str(session.address), reason=str(exc))
                self._drop_session(session.address)
                return
            if not plaintext:
                # Nothing for the application: e.g. the peer retransmitted its last
                # handshake flight and the library answered with ours again.
                break
            self._dispatch(remote, plaintext)
        self._flush(buffer, session.address)

    def _dispatch(self, remote: DtlsEndpointAddress, plaintext: bytes) -> None:
        manager = self._manager
        if manager is None:
            return
        message = wire.parse(plaintext)
        if message is None:  # a message format error: silently ignored (RFC 7252 §4.2)
            _log.debug("dtls_message_dropped", peer=remote.hostinfo, reason="not CoAP")
            return
        try:
            if (
                message.mtype <= wire.NON
                and message.is_request
                and self._take_request(message, remote.address, remote, 0)
            ):
                return
            aiocoap_message = Message.decode(plaintext, remote=remote)
        except (error.UnparsableMessage, UnicodeDecodeError, ValueError):
            _log.debug("dtls_message_dropped", peer=remote.hostinfo, reason="not CoAP")
            return
        manager.dispatch_message(aiocoap_message)

    # --- LeanRegistrations ---------------------------------------------------------------

    def _lean_peer(self, address: Any, via: Any) -> Peer:
        remote: DtlsEndpointAddress = via
        return Peer(remote.host, remote.port, "dtls", handle=remote, identity=remote.identity)

    def _sendto(self, data: bytes, address: Any, via: Any) -> None:
        self.send_plaintext(via, data)

    # --- housekeeping --------------------------------------------------------------------

    def _failed(self, address: Address, identity: str | None, reason: str, detail: str) -> None:
        self.failed_handshakes += 1
        host, port = _printable_host(address[0]), address[1]
        _log.warning(
            "dtls_handshake_failed", peer=hostportjoin(host, port), identity=identity, reason=reason
        )
        if self.on_handshake_failure is not None:
            failure = HandshakeFailure(host, port, identity, reason, detail)
            try:
                self.on_handshake_failure(failure)
            except Exception:  # the hook's bug must not break the socket
                _log.exception("dtls_failure_hook_failed")

    def _drop_session(self, address: Address) -> None:
        session = self.table.remove(address)
        if session is not None:
            self._close(session)

    def _close(self, session: _Session) -> None:
        """Say close_notify if the session was established (best effort)."""
        if session.remote is None:
            return
        try:
            session.buffer.shutdown()
        except TLSError:
            return
        self._flush(session.buffer, session.address)

    def _flush(self, buffer: tls.TLSWrappedBuffer, address: Address) -> None:
        """Send what the library wrote: its records, packed into datagrams."""
        data = buffer.peek_outgoing(_READ_SIZE * 4)
        if not data:
            return
        buffer.consume_outgoing(len(data))
        transport = self.transport
        if transport is None:
            return
        for datagram in pack_records(data, _DATAGRAM_SIZE):
            transport.sendto(datagram, address)
            if self.traffic is not None:
                host = _printable_host(address[0])
                self.traffic.add((host, address[1]), sent=len(datagram))

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(_SWEEP_INTERVAL, self._sweep)

    def _sweep(self) -> None:
        for address, session, reason in self.table.expire():
            if session.remote is None:
                self._failed(
                    session.address,
                    session.psk_identity,
                    reason,
                    f"no Finished within {self.table.handshake_timeout:g} s",
                )
            else:
                self._close(session)
                _log.debug("dtls_session_expired", peer=str(address), reason=reason)
        self._schedule_sweep()


def _failure_reason(session: _Session, exc: Exception) -> str:
    text = str(exc).lower()
    if session.psk_identity is not None:
        return "wrong_key" if session.psk_known else "unknown_identity"
    if "x509" in text or "cert" in text:
        return "certificate_rejected"
    return "handshake_failed"


def _printable_host(address: str) -> str:
    host = address.partition("%")[0]
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


# --- the server ----------------------------------------------------------------------------


class DtlsServer:
    """Binds ``host:port`` (port 0 picks a free one) for DTLS and serves it through the
    aiocoap ``context`` of a running ``CoapServer``; ``handler`` gets the Register,
    Update and De-register requests directly (as ``CoapServer``'s does).

    ``limits``: the session table's (``SessionTable``); ``handshake_slice``: seconds of
    handshake cryptography run before the event loop gets its turn
    (``HandshakeScheduler``); ``reuse_port``: SO_REUSEPORT, for
    several processes on one port (each holds its own sessions; the kernel keeps a
    sender on one process while the set of processes does not change).
    """

    def __init__(
        self,
        handler: UplinkHandler,
        credentials: DtlsCredentials,
        host: str,
        port: int,
        *,
        max_payload: int = 65536,
        max_sessions: int = 20_000,
        idle_timeout: float = 86_400.0,
        handshake_timeout: float = 30.0,
        handshakes_per_second: float = 20.0,
        block_size_exp: int = 6,
        traffic: TrafficCounter | None = None,
        on_handshake_failure: Callable[[HandshakeFailure], None] | None = None,
        reuse_port: bool = False,
        handshake_slice: float = 0.001,
    ) -> None:
        self._handler = handler
        self._max_payload = max_payload
        self._credentials = credentials
        self._bind = (host, port)
        self._limits = SessionLimits(
            max_sessions=max_sessions,
            idle_timeout=idle_timeout,
            handshake_timeout=handshake_timeout,
            handshakes_per_second=handshakes_per_second,
        )
        self._block_size_exp = block_size_exp
        self._traffic = traffic
        self._on_handshake_failure = on_handshake_failure
        self._reuse_port = reuse_port
        self._handshake_slice = handshake_slice
        self.interface: DtlsMessageInterface | None = None

    async def start(self, context: Context) -> None:
        loop = asyncio.get_running_loop()
        tokens = TokenManager(context)
        messages = MessageManager(tokens)
        interface = DtlsMessageInterface(
            messages,
            self._credentials,
            SessionTable(**self._limits),
            self._handler,
            max_payload=self._max_payload,
            traffic=self._traffic,
            on_handshake_failure=self._on_handshake_failure,
            handshake_slice=self._handshake_slice,
        )
        interface.block_size_exp = self._block_size_exp
        sock = await bind_udp_socket(loop, *self._bind, reuse_port=self._reuse_port)
        try:
            await loop.create_datagram_endpoint(lambda: interface, sock=sock)
        except BaseException:
            sock.close()
            raise
        messages.message_interface = interface
        tokens.token_interface = messages
        # First: the plain UDP interface would try (and fail) to resolve a coaps remote.
        context.request_interfaces.insert(0, tokens)
        self.interface = interface

    async def stop(self) -> None:
        interface, self.interface = self.interface, None
        if interface is not None:
            await interface.shutdown()

    def close_sessions(self, identity: str) -> int:
        """See ``DtlsMessageInterface.close_sessions`` (0 when not running)."""
        return 0 if self.interface is None else self.interface.close_sessions(identity)

    @property
    def port(self) -> int:
        if self.interface is None or self.interface.transport is None:
            raise RuntimeError("the DTLS server is not running")
        return int(self.interface.transport.get_extra_info("sockname")[1])
