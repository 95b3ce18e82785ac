# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""Devices over DTLS 1.2 (``coaps://``) on loopback, with the REST API beside them.

A python-mbedtls client (``dtls_device``) handshakes with PSK or an X.509 client
certificate, registers, and is read, written, executed and observed through the REST
API, over its session. Wrong credentials get no session (audited); a session of one
device cannot register another; a PSK device over plain UDP is still refused.
Runs on SQLite and, when configured, PostgreSQL.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiocoap import Code, Message
from dtls_device import DtlsDevice, HandshakeFailed, write_pem

from lwm2m_harness import Lwm2mTestServer, eventually, running_lwm2m_server
from meadowlark.certificates import IssuedCertificate, issue_certificate
from meadowlark.cli.dtls_serving import HANDSHAKE_FAILED_EVENT, start_dtls
from meadowlark.coap.dtls import DtlsServer
from meadowlark.config import TlsSettings
from meadowlark.core.events import EventFilter, EventKind, Subscription

API = "/api/coiotedm/v3"
REFUSED = "device.registration_refused"


def tag() -> str:
    return secrets.token_hex(4)


class Keys(dict[str, bytes]):
    """The PSK store of the test server: identity -> key."""


@pytest.fixture(scope="module")
def ca() -> IssuedCertificate:
    return issue_certificate("Meadowlark test devices CA", ca=True)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    settings_for: Any,
    ca: IssuedCertificate,
    keys: Keys,
) -> Iterator[Lwm2mTestServer]:
    data = tmp_path_factory.mktemp("data")
    bundle = write_pem(data / "devices-ca.pem", ca)
    settings = settings_for(
        data, database_url=database_url, tls=TlsSettings(ca_bundle=bundle), coaps="127.0.0.1:0"
    )
    with running_lwm2m_server(settings) as running:
        running.dtls = running.call(start_dtls(settings, running.runtime, running.coap, keys))
        try:
            yield running
        finally:
            running.call(running.dtls.stop())


def dtls_port(server: Lwm2mTestServer) -> int:
    dtls: DtlsServer = server.dtls  # type: ignore[attr-defined]
    return dtls.port


def provision(server: Lwm2mTestServer, endpoint: str, **security: Any) -> str:
    body = {"properties": {"endpointName": endpoint}, **security}
    with server.admin() as http:
        response = http.post(f"{API}/devices", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def psk_device(server: Lwm2mTestServer, keys: Keys) -> tuple[str, str, bytes]:
    """A provisioned PSK device: (endpoint, identity, key), its key in the server's store."""
    endpoint, identity, key = f"dtls-{tag()}", f"id-{tag()}", secrets.token_bytes(16)
    provision(
        server,
        endpoint,
        securityMode="psk",
        dtlsIdentity=identity,
        dtlsPsk={"HexadecimalPsk": key.hex()},
    )
    keys[identity] = key
    return endpoint, identity, key


def connect(server: Lwm2mTestServer, **credentials: Any) -> DtlsDevice:
    device = DtlsDevice(("127.0.0.1", dtls_port(server)), **credentials)
    server.call(device.connect())
    return device


def subscribe(server: Lwm2mTestServer, endpoint: str) -> Subscription:
    async def open_subscription() -> Subscription:
        return server.runtime.events.subscribe(EventFilter("/root/", endpoint))

    return server.call(open_subscription())


def next_event(server: Lwm2mTestServer, subscription: Subscription, kind: EventKind) -> Any:
    async def wait() -> Any:
        async with asyncio.timeout(10):
            async for event in subscription:
                if event.kind is kind:
                    return event
        raise AssertionError("subscription ended")

    return server.call(wait(), timeout=15)


def audit(server: Lwm2mTestServer, event: str) -> list[dict[str, Any]]:
    with server.admin() as http:
        response = http.get("/api/admin/audit", params={"event": event})
    assert response.status_code == 200, response.text
    return list(response.json())


def test_a_psk_device_registers_and_is_managed_over_its_session(server, keys):
    endpoint, identity, key = psk_device(server, keys)
    device = connect(server, psk=(identity, key))
    try:
        response = server.call(device.register(endpoint))
        assert response.code == Code.CREATED, (response.code, response.payload)
        registration = server.call(server.runtime.lwm2m.get_registration(endpoint))
        assert registration.peer.transport == "dtls"
        assert registration.peer.identity.mode == "psk"
        assert registration.peer.identity.name == identity
        assert registration.peer.port == device.local_port

        base = f"/api/lwm2m/v1/clients/{endpoint}"
        with server.admin() as http:
            read = http.get(f"{base}/3/0/0", params={"format": "text"})
            assert read.status_code == 200, read.text
            assert read.json()["content"]["value"] == "Meadowlark"

            body = {"kind": "singleResource", "value": "Europe/Paris"}
            written = http.put(f"{base}/3/0/15", params={"format": "text"}, json=body)
            assert written.status_code == 200, written.text
            assert device.resources["3/0/15"] == b"Europe/Paris"

            executed = http.post(f"{base}/3/0/4")
            assert executed.status_code == 200, executed.text
            assert device.executed == ["3/0/4"]

            observed = http.post(f"{base}/3/0/1/observe", params={"format": "text"})
            assert observed.status_code == 200, observed.text
            assert "3/0/1" in device.observations

            with subscribe(server, endpoint) as events:
                device.notify("3/0/1", b"changed over DTLS")
                event = next_event(server, events, EventKind.NOTIFICATION)
            assert "changed over DTLS" in repr(event)

        rtt = server.call(server.runtime.lwm2m.downlink.ping(endpoint, timeout=5))
        assert 0 < rtt < 5

        # Sessions survive an Update.
        assert server.call(device.update()).code == Code.CHANGED
        assert server.call(device.deregister()).code == Code.DELETED
    finally:
        device.close()


def test_a_lost_session_is_reestablished_without_a_new_registration(server, keys):
    endpoint, identity, key = psk_device(server, keys)
    first = connect(server, psk=(identity, key))
    assert server.call(first.register(endpoint)).code == Code.CREATED
    registered = server.call(server.runtime.lwm2m.get_registration(endpoint))
    first.close(notify=False)  # the device rebooted its DTLS stack: the server still holds it

    second = connect(server, psk=(identity, key))
    try:
        second.location = first.location
        assert server.call(second.update()).code == Code.CHANGED
        now = server.call(server.runtime.lwm2m.get_registration(endpoint))
        assert now.registration_id == registered.registration_id
        assert now.peer.port == second.local_port
        with server.admin() as http:
            read = http.get(f"/api/lwm2m/v1/clients/{endpoint}/3/0/0", params={"format": "text"})
        assert read.status_code == 200, read.text
    finally:
        second.close()


def test_wrong_key_and_unknown_identity_get_no_session_and_are_audited(server, keys):
    endpoint, identity, key = psk_device(server, keys)
    stranger = f"nobody-{tag()}"
    for credentials in ((identity, secrets.token_bytes(16)), (stranger, key)):
        device = DtlsDevice(("127.0.0.1", dtls_port(server)), psk=credentials)
        with pytest.raises((HandshakeFailed, TimeoutError)):
            server.call(device.connect(timeout=5))
        device.close(notify=False)

    def audited() -> dict[str, dict[str, Any]]:
        found = {
            entry["details"]["identity"]: entry
            for entry in audit(server, HANDSHAKE_FAILED_EVENT)
            if entry["details"]["identity"] in (identity, stranger)
        }
        return found if len(found) == 2 else {}

    entries = eventually(audited)
    assert entries[identity]["details"]["reason"] == "wrong_key"
    assert entries[stranger]["details"]["reason"] == "unknown_identity"
    assert entries[identity]["clientIp"] == "127.0.0.1"
    assert key.hex() not in str(entries).lower()
    assert server.call(server.runtime.lwm2m.get_registration(endpoint)) is None


def test_one_devices_session_cannot_register_another(server, keys):
    endpoint_a, identity_a, key_a = psk_device(server, keys)
    endpoint_b, _, _ = psk_device(server, keys)
    device = connect(server, psk=(identity_a, key_a))
    try:
        response = server.call(device.register(endpoint_b))
        assert response.code == Code.FORBIDDEN, (response.code, response.payload)
        assert server.call(server.runtime.lwm2m.get_registration(endpoint_b)) is None
    finally:
        device.close()

    def refused() -> list[dict[str, Any]]:
        return [
            entry
            for entry in audit(server, REFUSED)
            if entry["details"]["endpoint"] == endpoint_b
            and entry["details"]["reason"] == "identity_mismatch"
        ]

    entry = eventually(refused)[0]
    assert entry["details"]["authenticatedAs"] == identity_a
    assert entry["details"]["transport"] == "dtls"


def test_a_psk_device_over_plain_udp_is_still_refused(server, keys):
    endpoint, _, _ = psk_device(server, keys)

    async def plain_register() -> Message:
        from aiocoap import Context

        context = await Context.create_client_context()
        try:
            request = Message(
                code=Code.POST,
                uri=f"{server.server_uri}/rd?ep={endpoint}&lt=300",
                payload=b"</3/0>",
            )
            return await asyncio.wait_for(context.request(request).response, 10)
        finally:
            await context.shutdown()

    assert server.call(plain_register()).code == Code.FORBIDDEN


def cert_device(server: Lwm2mTestServer, name: str) -> str:
    endpoint = name
    provision(server, endpoint, securityMode="cert")
    return endpoint


def test_an_x509_device_registers_with_its_certificate(server, ca):
    endpoint = cert_device(server, f"x509-{tag()}")
    certificate = issue_certificate(endpoint, issuer=ca)
    device = connect(server, certificate=certificate)
    try:
        response = server.call(device.register(endpoint))
        assert response.code == Code.CREATED, (response.code, response.payload)
        registration = server.call(server.runtime.lwm2m.get_registration(endpoint))
        assert registration.peer.identity.mode == "cert"
        assert registration.peer.identity.name == endpoint
        with server.admin() as http:
            read = http.get(f"/api/lwm2m/v1/clients/{endpoint}/3/0/0", params={"format": "text"})
        assert read.status_code == 200, read.text
    finally:
        device.close()


def test_a_certificate_for_another_name_is_refused(server, ca):
    endpoint = cert_device(server, f"x509-{tag()}")
    certificate = issue_certificate(f"someone-else-{tag()}", issuer=ca)
    device = connect(server, certificate=certificate)
    try:
        response = server.call(device.register(endpoint))
        assert response.code == Code.FORBIDDEN
    finally:
        device.close()


def test_a_cert_device_whose_record_names_a_san_registers_and_another_name_does_not(server, ca):
    """``dtlsIdentity`` of a ``cert`` device names the certificate's CN or one of its
    subject alternative names (the Coiote API accepts it with ``securityMode: cert``)."""
    san = f"meter-{tag()}.devices.example"
    named = f"x509-san-{tag()}"
    provision(server, named, securityMode="cert", dtlsIdentity=san)
    elsewhere = f"x509-other-{tag()}"
    provision(server, elsewhere, securityMode="cert", dtlsIdentity=f"other-{tag()}.example")
    certificate = issue_certificate(f"serial-{tag()}", issuer=ca, dns_names=(san,))
    for endpoint, expected in ((named, Code.CREATED), (elsewhere, Code.FORBIDDEN)):
        device = connect(server, certificate=certificate)
        try:
            response = server.call(device.register(endpoint))
            assert response.code == expected, (endpoint, response.code, response.payload)
        finally:
            device.close()
    registration = server.call(server.runtime.lwm2m.get_registration(named))
    assert san in registration.peer.identity.alternative_names
    assert server.call(server.runtime.lwm2m.get_registration(elsewhere)) is None


def test_a_certificate_from_an_untrusted_ca_gets_no_session(server, tmp_path: Path):
    endpoint = cert_device(server, f"x509-{tag()}")
    rogue = issue_certificate("rogue CA", ca=True)
    device = DtlsDevice(
        ("127.0.0.1", dtls_port(server)), certificate=issue_certificate(endpoint, issuer=rogue)
    )
    with pytest.raises((HandshakeFailed, TimeoutError)):
        server.call(device.connect(timeout=5))
    device.close(notify=False)

    def rejected() -> list[dict[str, Any]]:
        return [
            entry
            for entry in audit(server, HANDSHAKE_FAILED_EVENT)
            if entry["details"]["reason"] == "certificate_rejected"
        ]

    assert eventually(rejected)
    assert server.call(server.runtime.lwm2m.get_registration(endpoint)) is None
