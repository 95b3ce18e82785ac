# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""The bootstrap server's DTLS port (``MEADOWLARK_BOOTSTRAP_DTLS``) on loopback, beside the
management DTLS port: devices that hold only bootstrap PSK credentials are bootstrapped
over DTLS, given fresh management PSKs and register with them; no key shows anywhere.
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from aiocoap import Message
from aiocoap.numbers.codes import Code
from sqlalchemy import select, update

from lwm2m_harness import Lwm2mTestServer, eventually, running_lwm2m_server
from meadowlark.api.routers.coiote_events import event_payloads
from meadowlark.cli.dtls_serving import start_bootstrap_dtls, start_dtls
from meadowlark.coap.bootstrap_site import BootstrapSite, NoRegistrations
from meadowlark.coap.server import CoapServer
from meadowlark.core.events import DeviceEvent, EventFilter
from meadowlark.core.secret_box import PSK_PURPOSE, SecretBox, derive_key
from meadowlark.simulator import DeviceState, SimulatedDevice
from meadowlark.simulator.bootstrap import BootstrapError, ManagementAccount, bootstrap_into
from meadowlark.simulator.client import DeviceTiming
from meadowlark.simulator.dtls import DtlsCoapEndpoint, PskCredentials
from meadowlark.store.bootstrap_models import BootstrapAccount
from meadowlark.store.device_models import Device
from meadowlark.store.psk_keyring import BOOTSTRAP_PSKS, check_stored_psks, seal_stored_psks

API = "/api/coiotedm/v3"
CLIENTS = "/api/lwm2m/v1/clients"
TIMING = DeviceTiming(ack_timeout=0.5, max_retransmit=2, handshake_timeout=5.0)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, database_url: str | None, settings_for: Any
) -> Iterator[Lwm2mTestServer]:
    """The management server (plain and DTLS) and the bootstrap server (plain and DTLS),
    wired as ``meadowlark serve`` wires them."""
    settings = settings_for(
        tmp_path_factory.mktemp("data"),
        database_url=database_url,
        coaps="127.0.0.1:0",
        bootstrap="127.0.0.1:0",
        bootstrap_dtls="127.0.0.1:0",
    )
    with running_lwm2m_server(settings) as running:
        runtime = running.runtime
        plain = CoapServer(
            NoRegistrations(),
            "127.0.0.1",
            0,
            max_payload=4096,
            site=BootstrapSite(runtime.bootstrap),
        )

        async def start() -> Any:
            dtls = await start_dtls(settings, runtime, running.coap)
            runtime.bootstrap.attach(await plain.start())
            bootstrap_dtls = await start_bootstrap_dtls(settings, runtime, plain)
            runtime.bootstrap_configurations.bind("coap", "127.0.0.1", running.coap_port)
            runtime.bootstrap_configurations.bind("coaps", "127.0.0.1", dtls.port)
            return dtls, bootstrap_dtls

        dtls, bootstrap_dtls = running.call(start())
        running.dtls = dtls  # type: ignore[attr-defined]
        running.bootstrap_uri = f"coap://127.0.0.1:{plain.port}"  # type: ignore[attr-defined]
        running.bootstrap_coaps = f"coaps://127.0.0.1:{bootstrap_dtls.port}"  # type: ignore[attr-defined]
        try:
            yield running
        finally:
            running.call(bootstrap_dtls.stop())
            running.call(plain.stop())
            running.call(dtls.stop())


def tag() -> str:
    return secrets.token_hex(4)


def psk_bootstrap_account(server: Lwm2mTestServer, endpoint: str) -> tuple[str, PskCredentials]:
    credentials = PskCredentials(f"bs-id-{endpoint}", secrets.token_bytes(16))
    body = {
        "properties": {"endpointName": endpoint},
        "connectorType": "bootstrap",
        "securityMode": "psk",
        "dtlsIdentity": credentials.identity,
        "dtlsPsk": {"HexadecimalPsk": credentials.key.hex()},
    }
    with server.admin() as http:
        response = http.post(f"{API}/devices", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"]), credentials


def configure(server: Lwm2mTestServer, account_id: str, **config: Any) -> None:
    with server.admin() as http:
        response = http.put(f"{API}/bootstrap/configuration/device/{account_id}", json=config)
    assert response.status_code == 200, response.text


def audit_rows(server: Lwm2mTestServer) -> list[dict[str, Any]]:
    with server.admin() as http:
        response = http.get("/api/admin/audit", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return list(response.json())


def forms_of(key: bytes) -> list[bytes]:
    """How a key could show: hex in either case, and raw."""
    return [key.hex().encode(), key.hex().upper().encode(), key]


def assert_nowhere(keys: list[bytes], texts: dict[str, bytes]) -> None:
    for key in keys:
        for form in forms_of(key):
            for where, text in texts.items():
                assert form not in text, f"a key shows in {where}"


def test_a_device_with_only_bootstrap_credentials_gets_and_uses_fresh_ones(server):
    endpoint = f"bsd-{tag()}"
    account_id, bootstrap_credentials = psk_bootstrap_account(server, endpoint)
    configure(server, account_id, securityMode="psk", lifetime=120)
    device = SimulatedDevice(
        endpoint, "coap://192.0.2.1:9", security=bootstrap_credentials, timing=TIMING
    )

    async def run() -> tuple[ManagementAccount, list[DeviceEvent]]:
        subscription = server.runtime.events.subscribe(EventFilter("/root/", endpoint))
        try:
            account = await bootstrap_into(device, server.bootstrap_coaps)  # type: ignore[attr-defined]
            await device.start()
            seen: list[DeviceEvent] = []
            while True:
                try:
                    seen.append(await asyncio.wait_for(subscription.__anext__(), 1.0))
                except TimeoutError:
                    return account, seen
        finally:
            subscription.close()

    account, events = server.call(run())
    try:
        management = device.security
        assert isinstance(management, PskCredentials)
        assert account.server_uri == f"coaps://127.0.0.1:{server.dtls.port}"  # type: ignore[attr-defined]
        assert device.server_uri == account.server_uri and device.state is DeviceState.REGISTERED
        assert management.identity != bootstrap_credentials.identity
        assert management.key != bootstrap_credentials.key and len(management.key) == 16
        registration = server.call(server.runtime.lwm2m.get_registration(endpoint))
        assert registration is not None and registration.peer.transport == "dtls"
        assert registration.peer.identity.name == management.identity
        operations = [event.operation for event in events]
        assert "request" in operations and "finish" in operations
        responses: dict[str, bytes] = {}
        with server.admin() as http:
            read = http.get(f"{CLIENTS}/{endpoint}/3/0/0", params={"format": "text"})
            assert read.status_code == 200, read.text
            for url in (
                f"{API}/devices/{endpoint}",
                f"{API}/devices/{account_id}",
                f"{API}/devices",
                f"{CLIENTS}/{endpoint}",
                f"{CLIENTS}/{endpoint}/3/0/0",
                "/api/admin/audit?limit=1000",
            ):
                response = http.get(url)
                assert response.status_code == 200, (url, response.text)
                responses[url] = response.content
            record = json.loads(responses[f"{API}/devices/{endpoint}"])
            assert record["securityMode"] == "psk" and record["dtlsPsk"] is None
            assert record["dtlsIdentity"] == management.identity
            bootstrap_record = json.loads(responses[f"{API}/devices/{account_id}"])
            assert bootstrap_record["dtlsIdentity"] == bootstrap_credentials.identity
            assert bootstrap_record["dtlsPsk"] is None
        responses["device events"] = json.dumps(
            [entry for event in events for entry in event_payloads(server.runtime, event)]
        ).encode()
        stored = server.call(stored_psks(server, endpoint, account_id))
        responses["stored rows"] = " ".join(stored).encode()
        assert all(value.startswith("enc1:") for value in stored)
        assert_nowhere([management.key, bootstrap_credentials.key], responses)
    finally:
        server.call(device.stop())


async def stored_psks(server: Lwm2mTestServer, endpoint: str, account_id: str) -> list[str]:
    async with server.runtime.db.session() as session:
        device_psk = await session.scalar(
            select(Device.dtls_psk).where(Device.endpoint_name == endpoint)
        )
        account_psk = await session.scalar(
            select(BootstrapAccount.dtls_psk).where(BootstrapAccount.id == account_id)
        )
    return [str(device_psk), str(account_psk)]


def test_a_wrong_bootstrap_key_gets_no_bootstrap_and_is_audited(server):
    endpoint = f"bsd-wrong-{tag()}"
    account_id, credentials = psk_bootstrap_account(server, endpoint)
    configure(server, account_id, securityMode="psk")
    wrong = PskCredentials(credentials.identity, secrets.token_bytes(16))
    device = SimulatedDevice(endpoint, "coap://192.0.2.1:9", security=wrong, timing=TIMING)
    with pytest.raises(BootstrapError):
        server.call(bootstrap_into(device, server.bootstrap_coaps))  # type: ignore[attr-defined]
    rows = eventually(
        lambda: [
            row
            for row in audit_rows(server)
            if row["event"] == "device.dtls_handshake_failed"
            and row["details"].get("identity") == credentials.identity
        ]
    )
    assert rows[0]["details"]["reason"]
    assert not [row for row in audit_rows(server) if row["subject"] == endpoint]
    with server.admin() as http:
        assert http.get(f"{API}/devices/{endpoint}").status_code == 404  # never provisioned
    assert_nowhere([credentials.key, wrong.key], {"audit": json.dumps(audit_rows(server)).encode()})


def test_a_psk_bootstrap_account_over_plain_udp_is_refused(server):
    endpoint = f"bsd-plain-{tag()}"
    account_id, credentials = psk_bootstrap_account(server, endpoint)
    configure(server, account_id, securityMode="psk")
    device = SimulatedDevice(endpoint, "coap://192.0.2.1:9", timing=TIMING)
    with pytest.raises(BootstrapError, match="4.00"):
        server.call(bootstrap_into(device, server.bootstrap_uri))  # type: ignore[attr-defined]


def test_nosec_bootstrap_gives_psk_management_credentials(server):
    endpoint = f"bsd-nosec-{tag()}"
    with server.admin() as http:
        body = {"properties": {"endpointName": endpoint}, "connectorType": "bootstrap"}
        response = http.post(f"{API}/devices", json=body)
        assert response.status_code == 201, response.text
    configure(server, response.json()["id"], securityMode="psk")
    device = SimulatedDevice(endpoint, "coap://192.0.2.1:9", timing=TIMING)

    async def run() -> None:
        await bootstrap_into(device, server.bootstrap_uri)  # type: ignore[attr-defined]
        await device.start()

    server.call(run())
    try:
        assert device.state is DeviceState.REGISTERED
        assert device.server_uri.startswith("coaps://") and device.security is not None
        with server.admin() as http:
            read = http.get(f"{CLIENTS}/{endpoint}/3/0/0", params={"format": "text"})
        assert read.status_code == 200, read.text
    finally:
        server.call(device.stop())


def test_a_psk_bootstrap_over_dtls_may_also_hand_out_nosec(server):
    endpoint = f"bsd-tonosec-{tag()}"
    account_id, credentials = psk_bootstrap_account(server, endpoint)
    configure(server, account_id)  # nosec management account
    device = SimulatedDevice(endpoint, "coap://192.0.2.1:9", security=credentials, timing=TIMING)

    async def run() -> None:
        await bootstrap_into(device, server.bootstrap_coaps)  # type: ignore[attr-defined]
        await device.start()

    server.call(run())
    try:
        assert device.state is DeviceState.REGISTERED and device.security is None
        assert device.server_uri == server.server_uri
    finally:
        server.call(device.stop())


def test_bootstrap_key_changes_reach_the_bootstrap_port_at_once(server):
    endpoint = f"bsd-rotate-{tag()}"
    account_id, credentials = psk_bootstrap_account(server, endpoint)
    keyring = server.runtime.bootstrap_keyring
    assert keyring[credentials.identity] == credentials.key
    assert credentials.identity not in server.runtime.psk_keyring  # not a management identity
    rotated = secrets.token_bytes(16)
    with server.admin() as http:
        url = f"{API}/devices/{account_id}"
        assert http.put(url, json={"dtlsPsk": {"HexadecimalPsk": rotated.hex()}}).status_code == 204
        assert keyring[credentials.identity] == rotated
        changed = {"dtlsIdentity": f"{credentials.identity}-2"}
        assert http.put(url, json=changed).status_code == 204
        assert credentials.identity not in keyring
        assert keyring[f"{credentials.identity}-2"] == rotated
        assert http.delete(url).status_code in (200, 204)
    assert f"{credentials.identity}-2" not in keyring


def test_bootstrap_keys_stored_in_clear_are_sealed_at_start(server):
    endpoint = f"bsd-legacy-{tag()}"
    account_id, credentials = psk_bootstrap_account(server, endpoint)
    table = BootstrapAccount.__table__

    async def legacy_then_seal() -> tuple[int, str | None]:
        async with server.runtime.db.transaction() as session:  # as an older version left it
            await session.execute(
                update(table).where(table.c.id == account_id).values(dtls_psk=credentials.key.hex())
            )
        sealed = await seal_stored_psks(server.runtime.db, server.runtime.psk_box, BOOTSTRAP_PSKS)
        await server.runtime.bootstrap_keyring.load()
        async with server.runtime.db.session() as session:
            stored = await session.scalar(
                select(BootstrapAccount.dtls_psk).where(BootstrapAccount.id == account_id)
            )
        return sealed, stored

    sealed, stored = server.call(legacy_then_seal())
    assert sealed >= 1 and stored is not None and stored.startswith("enc1:")
    assert credentials.key.hex() not in stored
    assert server.runtime.bootstrap_keyring[credentials.identity] == credentials.key


def test_the_bootstrap_dtls_port_takes_no_registration_and_survives_garbage(server):
    endpoint = f"bsd-noreg-{tag()}"
    account_id, credentials = psk_bootstrap_account(server, endpoint)
    configure(server, account_id, securityMode="psk")
    port = int(server.bootstrap_coaps.rsplit(":", 1)[1])  # type: ignore[attr-defined]

    async def run() -> Code:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port)
        )
        for garbage in (b"", b"\x16\xfe\xfd" + b"\x00" * 10, secrets.token_bytes(300)):
            transport.sendto(garbage)
        transport.close()
        secure = await DtlsCoapEndpoint.connect(
            lambda request: None,
            ("127.0.0.1", 0),
            server=("127.0.0.1", port),
            credentials=credentials,
            handshake_timeout=5.0,
        )
        try:
            register = Message(code=Code.POST, uri_path=("rd",), uri_query=(f"ep={endpoint}",))
            response = await secure.request(register, ("127.0.0.1", port), response_timeout=5)
            return response.code
        finally:
            secure.close()

    assert server.call(run()) == Code.NOT_FOUND  # bootstrap credentials register nowhere
    with server.admin() as http:
        assert http.get(f"{API}/devices/{endpoint}").status_code == 404
    device = SimulatedDevice(endpoint, "coap://192.0.2.1:9", security=credentials, timing=TIMING)
    account = server.call(bootstrap_into(device, server.bootstrap_coaps))  # type: ignore[attr-defined]
    assert account.security_mode == 0  # still serving after the garbage


def test_doctor_counts_bootstrap_keys_that_do_not_open(server):
    account_id, _ = psk_bootstrap_account(server, f"bsd-doctor-{tag()}")
    db, box = server.runtime.db, server.runtime.psk_box
    health = server.call(check_stored_psks(db, box, BOOTSTRAP_PSKS))
    assert health.stored >= 1 and account_id not in health.unreadable
    other = SecretBox(derive_key("another-server-key", PSK_PURPOSE))
    locked = server.call(check_stored_psks(db, other, BOOTSTRAP_PSKS))
    assert account_id in locked.unreadable
