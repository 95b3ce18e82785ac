"""The simulator's DTLS client against a python-mbedtls DTLS server on loopback UDP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiocoap import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from fake_dtls_server import FakeDtlsServer
from mbedtls import pk, tls, x509

from meadowlark.certificates import IssuedCertificate, issue_certificate
from meadowlark.simulator import DeviceState, RegistrationError, SimulatedDevice
from meadowlark.simulator.client import DeviceTiming
from meadowlark.simulator.dtls import (
    CertificateCredentials,
    DtlsCoapEndpoint,
    PskCredentials,
    derive_psk,
)

pytestmark = pytest.mark.anyio

KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
TIMING = DeviceTiming(ack_timeout=0.3, max_retransmit=2, handshake_timeout=8.0)


@pytest.fixture
async def psk_server() -> AsyncIterator[FakeDtlsServer]:
    server = await FakeDtlsServer.start(
        tls.DTLSConfiguration(pre_shared_key_store={"dev-1": KEY}, validate_certificates=False)
    )
    try:
        yield server
    finally:
        server.close()


def psk_device(server: FakeDtlsServer, key: bytes = KEY, **options) -> SimulatedDevice:
    return SimulatedDevice(
        "dev-1",
        server.uri,
        lifetime=120,
        timing=options.pop("timing", TIMING),
        security=PskCredentials("dev-1", key),
        **options,
    )


async def test_a_psk_device_registers_and_answers_over_dtls(psk_server: FakeDtlsServer) -> None:
    device = psk_device(psk_server)
    await device.start()
    try:
        assert device.state is DeviceState.REGISTERED
        assert psk_server.handshakes == 1
        (register,) = psk_server.registers()
        assert "ep=dev-1" in register.opt.uri_query
        read = await psk_server.request(
            device.local_address, Message(code=Code.GET, uri_path=("3", "0", "0"))
        )
        assert read.code == Code.CONTENT
        assert read.payload  # the manufacturer, decrypted by the server
    finally:
        await device.stop()


async def test_deregister_goes_over_the_session_and_closes_it(psk_server: FakeDtlsServer) -> None:
    device = psk_device(psk_server)
    await device.start()
    address = device.local_address[:2]
    await device.stop()
    await asyncio.sleep(0.05)
    assert [m.code for m in psk_server.received] == [Code.POST, Code.DELETE]
    assert address not in psk_server.sessions or not psk_server.sessions[address].established


async def test_the_handshake_survives_lost_flights(psk_server: FakeDtlsServer) -> None:
    psk_server.drop_incoming = 1  # the first ClientHello
    psk_server.drop_outgoing = 1  # the HelloVerifyRequest to the second one
    device = psk_device(psk_server)
    began = time.monotonic()
    await device.start()
    try:
        elapsed = time.monotonic() - began
        assert device.state is DeviceState.REGISTERED
        assert psk_server.handshakes == 1
        # two retransmissions with RFC 6347 backoff: after 1 s, then after 2 s more
        assert psk_server.client_hellos == 3  # two without the cookie, one with it
        assert 2.9 < elapsed < 5.0
    finally:
        await device.stop()


async def test_a_wrong_key_fails_with_a_clear_error(psk_server: FakeDtlsServer) -> None:
    device = psk_device(psk_server, key=b"not-the-right-key")
    began = time.monotonic()
    with pytest.raises(RegistrationError, match="DTLS handshake with .* failed"):
        await device.start()
    assert time.monotonic() - began < 5
    assert device.state is DeviceState.FAILED
    assert psk_server.handshakes == 0
    assert psk_server.registers() == []
    assert psk_server.handshake_failures
    await device.stop()


async def test_an_unreachable_server_times_out_cleanly() -> None:
    server = await FakeDtlsServer.start(
        tls.DTLSConfiguration(pre_shared_key_store={"dev-1": KEY}, validate_certificates=False)
    )
    server.drop_incoming = 1000
    device = psk_device(server, timing=DeviceTiming(handshake_timeout=1.5))
    began = time.monotonic()
    try:
        with pytest.raises(RegistrationError, match=r"no DTLS handshake .* within 1.5 s"):
            await device.start()
        assert 1.4 < time.monotonic() - began < 3
        assert server.client_hellos == 0  # dropped before counting
    finally:
        await device.stop()
        server.close()


async def test_a_closed_session_is_reestablished_without_a_new_registration(
    psk_server: FakeDtlsServer,
) -> None:
    device = psk_device(psk_server)
    await device.start()
    try:
        psk_server.close_session(device.local_address)
        await device.update()
        assert psk_server.handshakes == 2
        assert len(psk_server.registers()) == 1
        assert len(psk_server.updates()) == 1
        assert device.state is DeviceState.REGISTERED
    finally:
        await device.stop()


async def test_a_silently_lost_session_is_reestablished_for_the_next_update(
    psk_server: FakeDtlsServer,
) -> None:
    device = psk_device(psk_server)
    await device.start()
    try:
        psk_server.forget(device.local_address)
        await device.update()  # unanswered, then a new handshake and once more
        assert psk_server.handshakes == 2
        assert len(psk_server.registers()) == 1
        assert len(psk_server.updates()) == 1
        read = await psk_server.request(
            device.local_address, Message(code=Code.GET, uri_path=("3", "0", "0"))
        )
        assert read.code == Code.CONTENT
    finally:
        await device.stop()


async def test_fleet_keys_are_derived_per_endpoint() -> None:
    assert derive_psk(KEY, "sim-0000") != derive_psk(KEY, "sim-0001")
    assert len(derive_psk(KEY, "sim-0000")) == 16
    assert "0001" not in repr(PskCredentials("x", KEY))  # the key is never shown


# --- X.509 ---------------------------------------------------------------------------------


def _mbedtls_pair(issued: IssuedCertificate) -> tuple[list[x509.CRT], pk.ECC]:
    return [x509.CRT.from_PEM(issued.certificate_pem.decode())], pk.ECC.from_buffer(issued.key_pem)


@pytest.fixture(scope="module")
def authority() -> IssuedCertificate:
    return issue_certificate("Test device CA", ca=True)


@pytest.fixture
async def certificate_server(authority: IssuedCertificate) -> AsyncIterator[FakeDtlsServer]:
    server_certificate = issue_certificate(
        "localhost", issuer=authority, dns_names=("localhost",), server=True
    )
    server = await FakeDtlsServer.start(
        tls.DTLSConfiguration(
            certificate_chain=_mbedtls_pair(server_certificate),
            trust_store=tls.TrustStore([x509.CRT.from_PEM(authority.certificate_pem.decode())]),
            validate_certificates=True,
        )
    )
    try:
        yield server
    finally:
        server.close()


def certificate_device(
    server: FakeDtlsServer, issued: IssuedCertificate, ca: bytes | None
) -> SimulatedDevice:
    return SimulatedDevice(
        "dev-x509",
        server.uri.replace("127.0.0.1", "localhost") if ca else server.uri,
        lifetime=120,
        timing=TIMING,
        security=CertificateCredentials(issued.certificate_pem, issued.key_pem, ca),
    )


async def test_an_x509_device_registers_and_checks_the_server(
    certificate_server: FakeDtlsServer, authority: IssuedCertificate
) -> None:
    issued = issue_certificate("dev-x509", issuer=authority)
    device = certificate_device(certificate_server, issued, authority.certificate_pem)
    await device.start()
    try:
        assert device.state is DeviceState.REGISTERED
        assert certificate_server.handshakes == 1
    finally:
        await device.stop()


async def test_a_certificate_from_another_ca_is_refused(
    certificate_server: FakeDtlsServer,
) -> None:
    stranger = issue_certificate("Another CA", ca=True)
    issued = issue_certificate("dev-x509", issuer=stranger)
    device = certificate_device(certificate_server, issued, None)
    with pytest.raises(RegistrationError, match="DTLS handshake"):
        await device.start()
    assert certificate_server.handshakes == 0
    await device.stop()


async def test_a_server_outside_the_trusted_ca_is_refused(
    certificate_server: FakeDtlsServer, authority: IssuedCertificate
) -> None:
    issued = issue_certificate("dev-x509", issuer=authority)
    other = issue_certificate("Unrelated CA", ca=True)
    device = certificate_device(certificate_server, issued, other.certificate_pem)
    with pytest.raises(RegistrationError, match="DTLS handshake .* failed"):
        await device.start()
    assert certificate_server.registers() == []
    await device.stop()


class _PlainPeer(asyncio.DatagramProtocol):
    """A plain CoAP peer: answers GET with a payload, and can send a request itself."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.answers: list[Message] = []

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        message = Message.decode(data)
        if message.code == Code.GET:
            answer = Message(code=Code.CONTENT, payload=b"firmware bytes")
            answer.mtype, answer.mid, answer.token = Type.ACK, message.mid, message.token
            self.transport.sendto(answer.encode(), addr)
        else:
            self.answers.append(message)


async def test_plain_coap_elsewhere_gets_answers_but_no_requests_in(
    psk_server: FakeDtlsServer,
) -> None:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(_PlainPeer, local_addr=("127.0.0.1", 0))
    device = psk_device(psk_server)
    await device.start()
    try:
        plain = transport.get_extra_info("sockname")
        endpoint = device._endpoint
        assert isinstance(endpoint, DtlsCoapEndpoint)
        chunks: list[bytes] = []
        await endpoint.fetch(plain, ("fw",), chunks.append, response_timeout=5)
        assert chunks == [b"firmware bytes"]  # a coap:// package download, in the clear

        request = Message(code=Code.GET, uri_path=("3", "0", "0"))
        request.mtype, request.mid, request.token = Type.CON, 7, b"t"
        transport.sendto(request.encode(), device.local_address)
        await asyncio.sleep(0.3)
        assert peer.answers == []  # an unauthenticated request gets nothing
    finally:
        await device.stop()
        transport.close()
