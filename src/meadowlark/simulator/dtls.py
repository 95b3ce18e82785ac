"""DTLS 1.2 for simulated devices: the lean CoAP endpoint over a DTLS client session.

``DtlsCoapEndpoint`` is a ``CoapEndpoint`` whose datagrams to the server are encrypted
and whose datagrams from it are decrypted before the message layer sees them, so plain
UDP devices keep ``CoapEndpoint``'s own path and pay nothing for this module.

python-mbedtls does the protocol sans-IO: the endpoint feeds it datagrams, sends what it
produces and wakes it for retransmissions. mbedtls keeps the handshake's retransmission
timer (RFC 6347 §4.2.4: 1 s, doubled per attempt) and resends the last flight when it is
stepped after the timer ran out; the endpoint steps it on its own timer that mirrors that
backoff, and gives up after ``handshake_timeout`` seconds. A server's HelloVerifyRequest
is answered inside mbedtls.

Plain CoAP to other addresses (a ``coap://`` firmware package) goes out as is, and only
responses come back that way: a request that did not come over the session is dropped.

A session the server dropped is re-established without a new registration: a close or
fatal alert, or a record that fails to decrypt, starts a new handshake at once, and a
request that got no answer on an established session is sent once more after a fresh
handshake (a server that forgot the session drops its records silently). Datagrams sent
meanwhile wait for the new session.

Credentials are a PSK (identity and key, RFC 4279) or an X.509 certificate with its key;
the server's certificate is checked against a CA bundle when one is given. Raw public
keys (RFC 7250) are not offered: mbedtls 2.x has no support for them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiocoap import Message
from mbedtls import pk, tls, x509
from mbedtls.exceptions import TLSError

from meadowlark.simulator.coap import (
    Address,
    CoapEndpoint,
    CoapError,
    CoapTimeout,
    RequestHandler,
)

log = logging.getLogger(__name__)

DEFAULT_COAPS_PORT = 5684
HANDSHAKE_TIMEOUT = 30.0
"""Seconds a handshake may take, retransmissions included, before it fails."""
RETRANSMIT_INITIAL = 1.0
"""RFC 6347 §4.2.4.1: the first flight retransmission timeout."""
RETRANSMIT_MAX = 60.0
DATAGRAM_LIMIT = 1280
"""Handshake flights go in datagrams of at most this size (the IPv6 minimum MTU)."""
_PENDING_LIMIT = 16
"""Datagrams kept while a session is (re-)established; older ones are dropped."""
_RECORD_HEADER = 13
_MAX_PLAINTEXT = 16384
_TIMER_MARGIN = 0.02
"""Wake a little after mbedtls's timer runs out, so the step finds it expired."""
_EARLY_RETRY = 0.05


class DtlsError(CoapError):
    """No DTLS session with the server (handshake refused, failed or timed out)."""


@dataclass(frozen=True, slots=True)
class PskCredentials:
    """A pre-shared key (RFC 4279): the identity the device presents and the key."""

    identity: str
    key: bytes

    def __post_init__(self) -> None:
        if not self.identity or not self.key:
            raise ValueError("a PSK needs a non-empty identity and key")

    def __repr__(self) -> str:
        return f"PskCredentials(identity={self.identity!r}, key=<{len(self.key)} bytes>)"


@dataclass(frozen=True, slots=True)
class CertificateCredentials:
    """An X.509 client certificate (PEM) and its private key (PEM). ``ca`` (PEM, one or
    more certificates) authenticates the server: its chain, and its name when the server
    URI names a host (not for an IP literal). Without it the server is not checked."""

    certificate: bytes
    private_key: bytes
    ca: bytes | None = None

    @classmethod
    def from_files(
        cls, certificate: Path, private_key: Path, ca: Path | None = None
    ) -> CertificateCredentials:
        return cls(
            certificate.read_bytes(),
            private_key.read_bytes(),
            None if ca is None else ca.read_bytes(),
        )

    def __repr__(self) -> str:
        return f"CertificateCredentials(ca={'yes' if self.ca else 'no'})"


DtlsCredentials = PskCredentials | CertificateCredentials


@dataclass(frozen=True, slots=True)
class FleetPsk:
    """PSKs for a fleet: the identity from a pattern (``{endpoint}`` is the endpoint
    name), and one key for every device or, ``per_device``, one derived from it per
    endpoint name (``derive_psk``)."""

    key: bytes
    identity: str = "{endpoint}"
    per_device: bool = False

    def credentials(self, endpoint_name: str) -> PskCredentials:
        key = derive_psk(self.key, endpoint_name) if self.per_device else self.key
        return PskCredentials(self.identity.format(endpoint=endpoint_name), key)

    def __repr__(self) -> str:
        return f"FleetPsk(identity={self.identity!r}, per_device={self.per_device})"


@dataclass(frozen=True, slots=True)
class FleetCertificates:
    """X.509 credentials for a fleet: PEM file names, patterns where ``{endpoint}`` is the
    endpoint name (one certificate per device), or plain names (one shared by all)."""

    certificate: str
    private_key: str
    ca: Path | None = None

    def credentials(self, endpoint_name: str) -> CertificateCredentials:
        return CertificateCredentials.from_files(
            Path(self.certificate.format(endpoint=endpoint_name)),
            Path(self.private_key.format(endpoint=endpoint_name)),
            self.ca,
        )


FleetSecurity = FleetPsk | FleetCertificates


def derive_psk(master_key: bytes, endpoint_name: str, length: int = 16) -> bytes:
    """A per-device key from a fleet's master key: HMAC-SHA256(master, endpoint name),
    its first ``length`` bytes. Provision the server with the same derivation."""
    digest = hmac.new(master_key, endpoint_name.encode(), hashlib.sha256).digest()
    return digest[:length]


def client_configuration(credentials: DtlsCredentials) -> tls.DTLSConfiguration:
    """The mbedtls client configuration for ``credentials``."""
    if isinstance(credentials, PskCredentials):
        return tls.DTLSConfiguration(
            pre_shared_key=(credentials.identity, credentials.key),
            validate_certificates=False,
            handshake_timeout_min=RETRANSMIT_INITIAL,
            handshake_timeout_max=RETRANSMIT_MAX,
        )
    chain = x509.CRT.from_PEM(credentials.certificate.decode())
    key = pk.ECC.from_buffer(credentials.private_key)
    trust = None
    if credentials.ca is not None:
        trust = tls.TrustStore([x509.CRT.from_PEM(pem) for pem in _pem_blocks(credentials.ca)])
    return tls.DTLSConfiguration(
        certificate_chain=((chain,), key),
        trust_store=trust,
        validate_certificates=trust is not None,
        handshake_timeout_min=RETRANSMIT_INITIAL,
        handshake_timeout_max=RETRANSMIT_MAX,
    )


def _is_request_code(code: int) -> bool:
    """Whether a CoAP code byte is a request method (class 0, detail 1..31)."""
    return 0 < code < 32


def _pem_blocks(bundle: bytes) -> list[str]:
    end = "-----END CERTIFICATE-----"
    text = bundle.decode()
    return [block + end for block in text.split(end) if "-----BEGIN" in block]


class DtlsCoapEndpoint(CoapEndpoint):
    """One UDP socket speaking CoAP over DTLS with one server."""

    def __init__(
        self,
        handler: RequestHandler,
        *,
        server: Address,
        credentials: DtlsCredentials,
        server_hostname: str | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        **options: Any,
    ) -> None:
        super().__init__(handler, **options)
        self.server = server
        self.handshake_timeout = handshake_timeout
        self.handshakes = 0
        """Handshakes completed, the first included."""
        self._context = tls.ClientContext(client_configuration(credentials))
        certificates = isinstance(credentials, CertificateCredentials)
        self._hostname = server_hostname if certificates else None
        self._buffer: tls.TLSWrappedBuffer | None = None
        self._established = False
        self._handshake: asyncio.Future[None] | None = None
        self._retransmit_delay = RETRANSMIT_INITIAL
        self._retransmit_timer: asyncio.TimerHandle | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._pending: list[bytes] = []
        self._closed = False

    @classmethod
    async def connect(
        cls,
        handler: RequestHandler,
        local_address: tuple[str, int],
        *,
        server: Address,
        credentials: DtlsCredentials,
        **options: Any,
    ) -> DtlsCoapEndpoint:
        """Open the socket and complete a handshake with ``server``; ``DtlsError`` if none."""
        endpoint = await cls.open(
            handler, local_address, server=server, credentials=credentials, **options
        )
        assert isinstance(endpoint, DtlsCoapEndpoint)
        try:
            await endpoint.handshake()
        except BaseException:
            endpoint.close()
            raise
        return endpoint

    async def handshake(self) -> None:
        """A new handshake (or the one under way); ``DtlsError`` when it fails."""
        if self._handshake is None or self._handshake.done():
            self._start_handshake()
        assert self._handshake is not None
        await asyncio.shield(self._handshake)

    def close(self) -> None:
        self._closed = True
        self._stop_handshake_timers()
        if self._established and self._buffer is not None:
            try:
                self._buffer.shutdown()  # close_notify, so the server frees the session
                self._flush()
            except TLSError:
                pass
        self._established = False
        self._buffer = None
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(DtlsError("endpoint closed"))
            self._handshake.exception()
        super().close()

    # --- the message layer's traffic ----------------------------------------------------

    async def request(
        self, message: Message, remote: Address, *, response_timeout: float = 93.0
    ) -> Message:
        """As ``CoapEndpoint.request``; to the server, unanswered on an established
        session, the request goes once more after a new handshake."""
        if remote[:2] != self.server[:2]:
            return await super().request(message, remote, response_timeout=response_timeout)
        if not self._established:
            await self.handshake()
        try:
            return await super().request(message, remote, response_timeout=response_timeout)
        except CoapTimeout:
            if self._closed:
                raise
            log.info("no answer over DTLS from %s: new handshake", self.server)
            self._drop_session()
            await self.handshake()
            return await super().request(message, remote, response_timeout=response_timeout)

    def _sendto(self, data: bytes, addr: Address) -> None:
        if self._closed:
            return
        if addr[:2] != self.server[:2]:
            super()._sendto(data, addr)  # plain CoAP elsewhere (a coap:// package download)
            return
        if not self._established:
            self._pending.append(data)
            if len(self._pending) > _PENDING_LIMIT:
                del self._pending[0]
            if self._handshake is None or self._handshake.done():
                self._start_handshake()
            return
        assert self._buffer is not None
        try:
            self._buffer.write(data)
        except TLSError as error:
            self._session_lost(error)
            return
        self._flush()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if addr[:2] != self.server[:2]:
            # Plain CoAP from elsewhere: answers to the device's own plain requests only;
            # nobody unauthenticated gets to make requests to a secured device.
            if len(data) >= 4 and not _is_request_code(data[1]):
                super().datagram_received(data, addr)
            return
        if self._buffer is None:
            return
        if not self._established:
            self._buffer.receive_from_network(data)
            self._advance_handshake(received=True)
            return
        buffer = self._buffer
        offset = 0
        # One record at a time: mbedtls would join the plaintext of several records.
        while offset + _RECORD_HEADER <= len(data):
            end = offset + _RECORD_HEADER + int.from_bytes(data[offset + 11 : offset + 13], "big")
            buffer.receive_from_network(data[offset:end])
            offset = end
            try:
                plaintext = buffer.read(_MAX_PLAINTEXT)
            except (tls.WantReadError, tls.WantWriteError):
                plaintext = b""  # a record with no application data (a handshake repeat)
            except TLSError as error:
                self._session_lost(error)
                return
            self._flush()
            if plaintext:
                super().datagram_received(plaintext, addr)
                if self._buffer is not buffer:
                    return

    # --- the handshake ------------------------------------------------------------------

    def _start_handshake(self) -> None:
        loop = asyncio.get_running_loop()
        self._handshake = loop.create_future()
        self._established = False
        self._buffer = self._context.wrap_buffers(self._hostname)
        self._retransmit_delay = RETRANSMIT_INITIAL
        self._deadline_timer = loop.call_later(self.handshake_timeout, self._handshake_expired)
        self._advance_handshake(received=True)

    def _advance_handshake(self, *, received: bool) -> None:
        """Step mbedtls as far as it goes and send what it produced; ``received``: new
        data came in (a flight's retransmission timer starts afresh)."""
        buffer = self._buffer
        assert buffer is not None
        try:
            while buffer._handshake_state is not tls.HandshakeStep.HANDSHAKE_OVER:
                try:
                    buffer.do_handshake()
                except tls.WantWriteError:
                    self._flush()
                except tls.WantReadError:
                    break
        except TLSError as error:
            self._flush()  # the alert that tells the server
            self._handshake_failed(DtlsError(f"DTLS handshake with {self.server} failed: {error}"))
            return
        sent = self._flush()
        if buffer._handshake_state is tls.HandshakeStep.HANDSHAKE_OVER:
            self._handshake_done()
            return
        if received:
            self._retransmit_delay = RETRANSMIT_INITIAL
            self._schedule_retransmit(self._retransmit_delay)
        elif sent:
            self._retransmit_delay = min(self._retransmit_delay * 2, RETRANSMIT_MAX)
            self._schedule_retransmit(self._retransmit_delay)
        else:
            self._schedule_retransmit(_EARLY_RETRY)

    def _schedule_retransmit(self, delay: float) -> None:
        if self._retransmit_timer is not None:
            self._retransmit_timer.cancel()
        loop = asyncio.get_running_loop()
        self._retransmit_timer = loop.call_later(delay + _TIMER_MARGIN, self._retransmit)

    def _retransmit(self) -> None:
        self._retransmit_timer = None
        if self._buffer is not None and not self._established:
            self._advance_handshake(received=False)

    def _handshake_expired(self) -> None:
        self._deadline_timer = None
        self._handshake_failed(
            DtlsError(
                f"no DTLS handshake with {self.server} within {self.handshake_timeout:g} s "
                "(server unreachable, or it dropped the credentials)"
            )
        )

    def _handshake_done(self) -> None:
        self._stop_handshake_timers()
        self._established = True
        self.handshakes += 1
        pending, self._pending = self._pending, []
        for data in pending:
            self._sendto(data, self.server)
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_result(None)

    def _handshake_failed(self, error: DtlsError) -> None:
        self._stop_handshake_timers()
        self._buffer = None
        self._pending.clear()
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(error)
            self._handshake.exception()  # retrieved: background re-handshakes log instead
        log.info("%s", error)

    def _stop_handshake_timers(self) -> None:
        for timer in (self._retransmit_timer, self._deadline_timer):
            if timer is not None:
                timer.cancel()
        self._retransmit_timer = self._deadline_timer = None

    # --- session loss -------------------------------------------------------------------

    def _session_lost(self, error: TLSError) -> None:
        """The server closed or broke the session: establish a new one at once."""
        log.info("DTLS session with %s lost (%s): new handshake", self.server, error)
        self._drop_session()
        if not self._closed:
            self._start_handshake()

    def _drop_session(self) -> None:
        self._stop_handshake_timers()
        self._established = False
        self._buffer = None

    def _flush(self) -> int:
        """Send every record mbedtls has ready, in datagrams of at most ``DATAGRAM_LIMIT``
        bytes cut at record boundaries (a larger record goes alone); the bytes sent."""
        buffer = self._buffer
        if buffer is None:
            return 0
        data = buffer.peek_outgoing(_MAX_PLAINTEXT * 4)
        if not data:
            return 0
        buffer.consume_outgoing(len(data))
        transport = self._transport
        if transport is None or transport.is_closing():
            return len(data)
        start = offset = 0
        while offset + _RECORD_HEADER <= len(data):
            end = offset + _RECORD_HEADER + int.from_bytes(data[offset + 11 : offset + 13], "big")
            if end - start > DATAGRAM_LIMIT and offset > start:
                transport.sendto(data[start:offset], self.server)
                start = offset
            offset = end
        transport.sendto(data[start:], self.server)
        return len(data)
