# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""Who may register as whom, over real UDP on loopback, with the REST API beside it.

A device provisioned with a security mode other than NoSec (PSK here) must not be
registered by a plain-UDP Register carrying its endpoint name: that would let anyone
impersonate it. NoSec and not-yet-known devices still register. Updates and
De-registers from another source address are accepted (NAT rebinding) but reported.
Runs on SQLite and, when configured, PostgreSQL (the ``server`` fixture's backends).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiocoap import Code, Message
from fake_device import FakeDevice

from lwm2m_harness import Lwm2mTestServer, eventually, server  # noqa: F401 - fixtures
from lwm2m_registrations import make_registration
from meadowlark.core.events import DeviceEvent, EventFilter, EventKind, Subscription
from meadowlark.server.registration import Registration, new_registration_id
from meadowlark.server.security import Admission
from meadowlark.server.transport import Peer, PeerIdentity

API = "/api/coiotedm/v3"
OBJECTS = b"</1/0>,</3/0>"
PSK_HEX = "5ec2e7f0a1b2c3d4e5f60718293a4b5c"
REFUSED = "device.registration_refused"


def tag() -> str:
    return secrets.token_hex(4)


def bound_port(device: FakeDevice) -> int:
    """The UDP port a fake device's aiocoap context sends from."""
    assert device.context is not None
    for interface in device.context.request_interfaces:
        messages = getattr(getattr(interface, "token_interface", None), "message_interface", None)
        transport = getattr(messages, "transport", None)
        if transport is not None:
            return int(transport.get_extra_info("socket").getsockname()[1])
    raise AssertionError("no UDP transport")


@pytest.fixture
def udp_client(server: Lwm2mTestServer) -> Iterator[Callable[[], FakeDevice]]:
    """``udp_client()``: a plain-UDP CoAP client on its own ephemeral port."""
    started: list[FakeDevice] = []

    def start() -> FakeDevice:
        device = FakeDevice()
        server.call(device.start())
        started.append(device)
        return device

    yield start
    for device in started:
        server.call(device.stop())


def send(
    server: Lwm2mTestServer, device: FakeDevice, method: Code, path: str, payload: bytes = b""
) -> Message:
    return server.call(device.request(method, f"{server.server_uri}/{path}", payload))


def register(server: Lwm2mTestServer, device: FakeDevice, endpoint: str) -> Message:
    return send(server, device, Code.POST, f"rd?ep={endpoint}&lt=300&lwm2m=1.1", OBJECTS)


def registration(server: Lwm2mTestServer, endpoint: str) -> Any:
    return server.call(server.runtime.lwm2m.get_registration(endpoint))


def subscribe(server: Lwm2mTestServer, endpoint: str) -> Subscription:
    async def open_subscription() -> Subscription:
        return server.runtime.events.subscribe(EventFilter("/root/", endpoint))

    return server.call(open_subscription())


def next_event(
    server: Lwm2mTestServer, subscription: Subscription, kind: EventKind, timeout: float = 5
) -> DeviceEvent:
    """The next event of ``kind`` on the runtime's event bus (others are skipped)."""

    async def wait() -> DeviceEvent:
        async with asyncio.timeout(timeout):
            async for event in subscription:
                if event.kind is kind:
                    return event
        raise AssertionError("subscription ended")

    return server.call(wait(), timeout=timeout + 5)


def provision(server: Lwm2mTestServer, endpoint: str, **security: Any) -> str:
    body = {"properties": {"endpointName": endpoint}, **security}
    with server.admin() as http:
        response = http.post(f"{API}/devices", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def refusals(server: Lwm2mTestServer, device_id: str) -> list[dict[str, Any]]:
    with server.admin() as http:
        response = http.get("/api/admin/audit", params={"event": REFUSED})
    assert response.status_code == 200, response.text
    return [event for event in response.json() if event["subject"] == device_id]


def test_a_psk_device_cannot_be_registered_over_plain_udp(server, udp_client):
    endpoint = f"psk-{tag()}"
    device_id = provision(
        server,
        endpoint,
        securityMode="psk",
        dtlsIdentity=f"identity-{tag()}",
        dtlsPsk={"HexadecimalPsk": PSK_HEX},
    )
    client = udp_client()
    with subscribe(server, endpoint) as events:
        response = register(server, client, endpoint)
        assert response.code == Code.FORBIDDEN, (response.code, response.payload)
        assert registration(server, endpoint) is None
        refused = next_event(server, events, EventKind.REGISTRATION_REFUSED)
    assert refused.reason == "unsecured_transport"
    assert refused.peer is not None and refused.peer.port == bound_port(client)

    audited = eventually(lambda: refusals(server, device_id))
    assert len(audited) == 1
    entry = audited[0]
    assert entry["domain"] == "/root/" and entry["clientIp"] == "127.0.0.1"
    assert entry["details"]["endpoint"] == endpoint
    assert entry["details"]["reason"] == "unsecured_transport"
    assert entry["details"]["securityMode"] == "psk"
    assert entry["details"]["peer"] == f"127.0.0.1:{bound_port(client)}"
    assert PSK_HEX not in str(entry).lower()

    with server.admin() as http:
        stored = http.get(f"{API}/devices/{device_id}").json()
        assert http.get(f"/api/lwm2m/v1/clients/{endpoint}").status_code == 404
    assert stored["securityMode"] == "psk"
    assert not stored.get("lastRegisterTime")


def test_nosec_and_unknown_devices_still_register(server, udp_client):
    nosec = f"nosec-{tag()}"
    provision(server, nosec, securityMode="nosec")
    unknown = f"new-{tag()}"
    for endpoint in (nosec, unknown):
        response = register(server, udp_client(), endpoint)
        assert response.code == Code.CREATED, (response.code, response.payload)
        location = response.opt.location_path
        assert location[0] == "rd" and len(location[1]) >= 16  # >= 64 random bits in hex
        assert registration(server, endpoint) is not None
    with server.admin() as http:
        created = http.get(f"{API}/devices/{unknown}").json()
    assert created["securityMode"] == "nosec"


def test_refusal_holds_inside_one_batch_of_registers(server, udp_client):
    """Registers arriving together are admitted in one transaction: each is checked."""
    psk = f"psk-batch-{tag()}"
    provision(
        server,
        psk,
        securityMode="psk",
        dtlsIdentity=f"identity-{tag()}",
        dtlsPsk={"HexadecimalPsk": PSK_HEX},
    )
    nosec, unknown = f"nosec-batch-{tag()}", f"new-batch-{tag()}"
    provision(server, nosec)
    endpoints = [psk, nosec, unknown, psk]
    clients = [udp_client() for _ in endpoints]

    async def together() -> list[Message]:
        return await asyncio.gather(
            *(
                client.request(Code.POST, f"{server.server_uri}/rd?ep={endpoint}&lt=300", OBJECTS)
                for client, endpoint in zip(clients, endpoints, strict=True)
            )
        )

    codes = [response.code for response in server.call(together())]
    assert codes == [Code.FORBIDDEN, Code.CREATED, Code.CREATED, Code.FORBIDDEN]
    assert registration(server, psk) is None
    assert registration(server, nosec) is not None and registration(server, unknown) is not None


def test_the_sql_registry_checks_each_register_of_a_batch(server):
    """One admission batch (one transaction) with plain and authenticated peers, as a
    DTLS transport will hand them over: each gets its own answer, refusals are audited."""
    identity = f"identity-{tag()}"
    psk = f"psk-sql-{tag()}"
    psk_id = provision(
        server,
        psk,
        securityMode="psk",
        dtlsIdentity=identity,
        dtlsPsk={"HexadecimalPsk": PSK_HEX},
    )
    unknown = f"new-sql-{tag()}"
    plain = Peer("127.0.0.1", 40001)
    secure = Peer("127.0.0.1", 40002, "dtls", identity=PeerIdentity("psk", identity))
    wrong = Peer("127.0.0.1", 40003, "dtls", identity=PeerIdentity("psk", "someone-else"))

    def attempt(endpoint: str, peer: Peer) -> Registration:
        return make_registration(
            endpoint, registration_id=new_registration_id(), peer=peer, links=OBJECTS
        )

    attempts = [
        attempt(psk, plain),
        attempt(psk, wrong),
        attempt(unknown, secure),  # credentials of one device, name of another
        attempt(unknown, plain),
        attempt(psk, secure),
    ]

    async def admit_together() -> list[Admission]:
        registry = server.runtime.device_stores.devices
        return list(await asyncio.gather(*(registry.admit_registration(a) for a in attempts)))

    assert server.call(admit_together()) == [
        Admission.UNSECURED_TRANSPORT,
        Admission.IDENTITY_MISMATCH,
        Admission.IDENTITY_MISMATCH,
        Admission.ALLOWED,
        Admission.ALLOWED,
    ]
    audited = eventually(lambda: len(refusals(server, psk_id)) == 2 and refusals(server, psk_id))
    reasons = sorted(entry["details"]["reason"] for entry in audited)
    assert reasons == ["identity_mismatch", "unsecured_transport"]
    with server.admin() as http:
        stored = http.get(f"{API}/devices/{psk_id}").json()
        created = http.get(f"{API}/devices/{unknown}").json()
    assert stored["securityMode"] == "psk" and stored["lastRegisterTime"]  # the device itself
    assert created["securityMode"] == "nosec"


def test_an_update_from_another_port_is_accepted_and_reported(server, udp_client):
    endpoint = f"moving-{tag()}"
    first, second = udp_client(), udp_client()
    old, new = f"127.0.0.1:{bound_port(first)}", f"127.0.0.1:{bound_port(second)}"
    with subscribe(server, endpoint) as events:
        location = "/".join(register(server, first, endpoint).opt.location_path)
        assert str(registration(server, endpoint).peer) == old

        assert send(server, second, Code.POST, f"{location}?lt=600").code == Code.CHANGED
        moved = next_event(server, events, EventKind.ADDRESS_CHANGED)
        assert moved.previous_peer is not None and str(moved.previous_peer) == old
        assert moved.peer is not None and str(moved.peer) == new
        assert moved.operation == "update"
        current = registration(server, endpoint)
        assert str(current.peer) == new and current.lifetime == 600

        # De-register from yet another address: accepted, and the event names it.
        assert send(server, first, Code.DELETE, location).code == Code.DELETED
        moved_again = next_event(server, events, EventKind.ADDRESS_CHANGED)
        assert (str(moved_again.previous_peer), str(moved_again.peer)) == (new, old)
        assert moved_again.operation == "deregister"
        gone = next_event(server, events, EventKind.DEREGISTRATION)
        assert gone.registration is not None and str(gone.registration.peer) == old
    assert registration(server, endpoint) is None


def test_securing_a_registered_device_ends_its_plain_udp_registration(server, udp_client):
    endpoint = f"secured-later-{tag()}"
    client = udp_client()
    location = "/".join(register(server, client, endpoint).opt.location_path)
    assert registration(server, endpoint) is not None
    with server.admin() as http:
        response = http.put(
            f"{API}/devices/{endpoint}",
            json={
                "securityMode": "psk",
                "dtlsIdentity": f"identity-{tag()}",
                "dtlsPsk": {"HexadecimalPsk": PSK_HEX},
            },
        )
    assert response.status_code == 204, response.text
    assert registration(server, endpoint) is None
    assert send(server, client, Code.POST, location).code == Code.NOT_FOUND
    assert register(server, client, endpoint).code == Code.FORBIDDEN
