# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""Simulated devices over DTLS (the simulator's client) against the server's DTLS
transport, managed through the REST API. Runs on SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from aiocoap.numbers.codes import Code

from lwm2m_harness import Lwm2mTestServer, eventually, running_lwm2m_server
from meadowlark.certificates import IssuedCertificate, issue_certificate, server_credentials
from meadowlark.cli.dtls_serving import start_dtls
from meadowlark.coap.dtls import is_client_hello
from meadowlark.config import TlsSettings
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.simulator import DeviceState, RegistrationError, SimulatedDevice
from meadowlark.simulator.client import DeviceTiming
from meadowlark.simulator.dtls import (
    CertificateCredentials,
    DtlsCoapEndpoint,
    DtlsCredentials,
    PskCredentials,
)

API = "/api/coiotedm/v3"
CLIENTS = "/api/lwm2m/v1/clients"
TIMING = DeviceTiming(ack_timeout=0.5, max_retransmit=2, handshake_timeout=10.0)


@pytest.fixture(scope="module")
def ca() -> IssuedCertificate:
    return issue_certificate("Simulated devices CA", ca=True)


@pytest.fixture(scope="module")
def keys() -> dict[str, bytes]:
    return {}


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    settings_for: Any,
    ca: IssuedCertificate,
    keys: dict[str, bytes],
) -> Iterator[Lwm2mTestServer]:
    data = tmp_path_factory.mktemp("data")
    bundle = data / "devices-ca.pem"
    bundle.write_bytes(ca.certificate_pem)
    settings = settings_for(
        data, database_url=database_url, tls=TlsSettings(ca_bundle=bundle), coaps="127.0.0.1:0"
    )
    with running_lwm2m_server(settings) as running:
        running.dtls = running.call(start_dtls(settings, running.runtime, running.coap, keys))
        try:
            yield running
        finally:
            running.call(running.dtls.stop())


def coaps_uri(server: Lwm2mTestServer) -> str:
    return f"coaps://127.0.0.1:{server.dtls.port}"  # type: ignore[attr-defined]


def provision(server: Lwm2mTestServer, endpoint: str, **security: Any) -> None:
    with server.admin() as http:
        response = http.post(
            f"{API}/devices", json={"properties": {"endpointName": endpoint}, **security}
        )
    assert response.status_code == 201, response.text


def psk_endpoint(server: Lwm2mTestServer, keys: dict[str, bytes]) -> tuple[str, PskCredentials]:
    endpoint = f"sim-dtls-{secrets.token_hex(4)}"
    credentials = PskCredentials(f"id-{endpoint}", secrets.token_bytes(16))
    provision(
        server,
        endpoint,
        securityMode="psk",
        dtlsIdentity=credentials.identity,
        dtlsPsk={"HexadecimalPsk": credentials.key.hex()},
    )
    keys[credentials.identity] = credentials.key
    return endpoint, credentials


def start(server: Lwm2mTestServer, endpoint: str, credentials: DtlsCredentials) -> SimulatedDevice:
    async def register() -> SimulatedDevice:
        device = SimulatedDevice(
            endpoint, coaps_uri(server), lifetime=300, timing=TIMING, security=credentials
        )
        try:
            await device.start()
        except BaseException:
            await device.stop()
            raise
        return device

    return server.call(register())


def test_simulated_psk_devices_register_and_are_managed_over_dtls(server, keys) -> None:
    started = [start(server, *psk_endpoint(server, keys)) for _ in range(2)]
    try:
        for device in started:
            registration = server.call(server.runtime.lwm2m.get_registration(device.endpoint_name))
            assert registration.peer.transport == "dtls"
            assert registration.peer.identity.mode == "psk"
            assert registration.peer.identity.name == device.security.identity
        device = started[0]
        base = f"{CLIENTS}/{device.endpoint_name}"
        with server.admin() as http:
            read = http.get(f"{base}/3/0/0", params={"format": "text"})
            assert read.status_code == 200, read.text
            assert read.json()["content"]["value"] == "Meadowlark"

            body = {"kind": "singleResource", "value": "Europe/Paris"}
            written = http.put(f"{base}/3/0/15", params={"format": "text"}, json=body)
            assert written.status_code == 200, written.text
            assert device.objects.read(LwM2mPath.parse("/3/0/15")).value == "Europe/Paris"

            observed = http.post(f"{base}/3303/0/5700/observe")
            assert observed.status_code == 200, observed.text
            assert len(device.observations) == 1
            server.call(_set_temperature(device, 31.5))

            def notified() -> bool:
                value = http.get(f"{base}/3303/0/5700", params={"format": "text"})
                return value.status_code == 200 and value.json()["content"]["value"] == 31.5

            eventually(notified)
        registered = server.call(server.runtime.lwm2m.get_registration(device.endpoint_name))
        server.call(device.update())  # the session survives an Update
        after = server.call(server.runtime.lwm2m.get_registration(device.endpoint_name))
        assert after.registration_id == registered.registration_id
        assert _endpoint(device).handshakes == 1
    finally:
        for device in started:
            server.call(device.stop())
    for device in started:
        assert server.call(server.runtime.lwm2m.get_registration(device.endpoint_name)) is None


def test_a_session_the_server_closes_is_reestablished_without_a_new_registration(
    server, keys
) -> None:
    endpoint, credentials = psk_endpoint(server, keys)
    device = start(server, endpoint, credentials)
    try:
        registered = server.call(server.runtime.lwm2m.get_registration(endpoint))
        assert server.call(_close_sessions(server, credentials.identity)) == 1
        server.call(device.update())
        assert device.state is DeviceState.REGISTERED
        assert _endpoint(device).handshakes == 2
        now = server.call(server.runtime.lwm2m.get_registration(endpoint))
        assert now.registration_id == registered.registration_id
        with server.admin() as http:
            read = http.get(f"{CLIENTS}/{endpoint}/3/0/0", params={"format": "text"})
        assert read.status_code == 200, read.text
    finally:
        server.call(device.stop())


def test_a_wrong_key_gets_no_registration(server, keys) -> None:
    endpoint, credentials = psk_endpoint(server, keys)
    wrong = PskCredentials(credentials.identity, secrets.token_bytes(16))
    with pytest.raises(RegistrationError, match="DTLS handshake"):
        start(server, endpoint, wrong)
    assert server.call(server.runtime.lwm2m.get_registration(endpoint)) is None


def x509_credentials(
    server: Lwm2mTestServer, ca: IssuedCertificate, common_name: str
) -> CertificateCredentials:
    issued = issue_certificate(common_name, issuer=ca)
    server_certificate = server_credentials(server.settings).certificate.read_bytes()
    return CertificateCredentials(issued.certificate_pem, issued.key_pem, server_certificate)


def test_an_x509_simulated_device_registers_with_its_common_name(server, ca) -> None:
    endpoint = f"sim-x509-{secrets.token_hex(4)}"
    provision(server, endpoint, securityMode="cert")
    device = start(server, endpoint, x509_credentials(server, ca, endpoint))
    try:
        registration = server.call(server.runtime.lwm2m.get_registration(endpoint))
        assert registration.peer.identity.mode == "cert"
        assert registration.peer.identity.name == endpoint
        with server.admin() as http:
            read = http.get(f"{CLIENTS}/{endpoint}/3/0/0", params={"format": "text"})
        assert read.status_code == 200, read.text
    finally:
        server.call(device.stop())


def test_an_x509_simulated_device_with_another_common_name_is_refused(server, ca) -> None:
    endpoint = f"sim-x509-{secrets.token_hex(4)}"
    provision(server, endpoint, securityMode="cert")
    with pytest.raises(RegistrationError) as refused:
        start(server, endpoint, x509_credentials(server, ca, f"other-{endpoint}"))
    assert refused.value.code == Code.FORBIDDEN
    assert server.call(server.runtime.lwm2m.get_registration(endpoint)) is None


async def _set_temperature(device: SimulatedDevice, value: float) -> None:
    device.set_temperature(value)


async def _close_sessions(server: Lwm2mTestServer, identity: str) -> int:
    return server.dtls.close_sessions(identity)  # type: ignore[attr-defined]


def _endpoint(device: SimulatedDevice) -> DtlsCoapEndpoint:
    endpoint = device._endpoint
    assert isinstance(endpoint, DtlsCoapEndpoint)
    return endpoint


class _LossyRelay(asyncio.DatagramProtocol):
    """Relays one device's datagrams to the server and back, losing chosen ones (counted
    from 1 in each direction)."""

    def __init__(self, server: tuple[str, int], *, lose_up: set[int], lose_down: set[int]):
        self.server = server
        self.lose = {"up": lose_up, "down": lose_down}
        self.count = {"up": 0, "down": 0}
        self.client_hellos = 0
        self.device: tuple[str, int] | None = None
        self.upstream: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.device = addr[:2]
        self.client_hellos += is_client_hello(data)
        if not self._lost("up"):
            assert self.upstream is not None
            self.upstream.sendto(data, self.server)

    def from_server(self, data: bytes) -> None:
        if not self._lost("down") and self.device is not None:
            self.transport.sendto(data, self.device)

    def _lost(self, direction: str) -> bool:
        self.count[direction] += 1
        return self.count[direction] in self.lose[direction]


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: _LossyRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.relay.from_server(data)


def test_a_psk_device_registers_over_a_link_that_loses_flights(server, keys) -> None:
    endpoint, credentials = psk_endpoint(server, keys)

    async def through_relay() -> tuple[SimulatedDevice, _LossyRelay, list[Any]]:
        loop = asyncio.get_running_loop()
        # Lost: the first ClientHello, then the server's flight after the cookie exchange.
        relay = _LossyRelay(("127.0.0.1", server.dtls.port), lose_up={1}, lose_down={2})
        front, _ = await loop.create_datagram_endpoint(lambda: relay, local_addr=("127.0.0.1", 0))
        back, _ = await loop.create_datagram_endpoint(
            lambda: _Upstream(relay), local_addr=("127.0.0.1", 0)
        )
        relay.upstream = back
        port = front.get_extra_info("sockname")[1]
        device = SimulatedDevice(
            endpoint, f"coaps://127.0.0.1:{port}", lifetime=300, timing=TIMING,
            security=credentials,
        )  # fmt: skip
        try:
            await device.start()
        except BaseException:
            await device.stop()
            raise
        return device, relay, [front, back]

    device, relay, transports = server.call(through_relay())
    try:
        assert device.state is DeviceState.REGISTERED
        # each ClientHello went twice: the lost one, and the one whose answer was lost
        assert relay.client_hellos == 4
        with server.admin() as http:
            read = http.get(f"{CLIENTS}/{endpoint}/3/0/0", params={"format": "text"})
        assert read.status_code == 200, read.text
    finally:
        server.call(device.stop())
        for transport in transports:
            transport.close()
