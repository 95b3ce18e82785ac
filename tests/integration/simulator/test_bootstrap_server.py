# ruff: noqa: F811 - the fixtures imported from the harnesses are test parameters here
"""The bootstrap server on loopback, with simulated devices that start with only their
bootstrap account (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import secrets
import socket
from typing import Any

import pytest
from aiocoap import Message
from aiocoap.numbers.codes import Code

from bootstrap_harness import audit_events, bootstrap_port
from lwm2m_harness import Lwm2mTestServer, eventually, server  # noqa: F401 - fixture
from meadowlark.simulator import DeviceState, SimulatedDevice
from meadowlark.simulator.bootstrap import (
    BootstrapClient,
    BootstrapError,
    ManagementAccount,
    bootstrap_into,
)
from meadowlark.simulator.coap import CoapEndpoint

API = "/api/coiotedm/v3"
assert bootstrap_port  # a fixture, used by name


def tag() -> str:
    return secrets.token_hex(4)


def bootstrap_device(server: Lwm2mTestServer, endpoint: str, **device: Any) -> str:
    """A ``connectorType: bootstrap`` device for ``endpoint``; returns its id."""
    body = {"properties": {"endpointName": endpoint}, "connectorType": "bootstrap", **device}
    with server.admin() as http:
        response = http.post(f"{API}/devices", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def configure(server: Lwm2mTestServer, kind: str, target: str, **config: Any) -> dict[str, Any]:
    with server.admin() as http:
        response = http.put(f"{API}/bootstrap/configuration/{kind}/{target}", json=config)
    assert response.status_code == 200, response.text
    return dict(response.json())


def audit_names(server: Lwm2mTestServer, endpoint: str) -> list[str]:
    return [row["event"] for row in audit_events(server, endpoint)]


def test_a_fresh_device_is_bootstrapped_and_registers(server, bootstrap_port):
    endpoint = f"bs-fresh-{tag()}"
    account_id = bootstrap_device(server, endpoint)
    assert account_id == f"bs-{endpoint}"
    configure(server, "device", account_id, lifetime=120, shortServerId=7)
    device = SimulatedDevice(endpoint, "coap://192.0.2.1:9")  # only its bootstrap account

    async def run() -> ManagementAccount:
        account = await bootstrap_into(device, f"coap://127.0.0.1:{bootstrap_port}")
        await device.start()
        return account

    account = server.call(run())
    try:
        assert account.server_uri == f"coap://127.0.0.1:{server.coap_port}"
        assert (account.short_server_id, account.lifetime, account.security_mode) == (7, 120, 3)
        assert device.state is DeviceState.REGISTERED and device.lifetime == 120
        with server.admin() as http:
            record = http.get(f"{API}/devices/{endpoint}").json()
            bootstrap_record = http.get(f"{API}/devices/{account_id}").json()
        assert record["securityMode"] == "nosec" and record["domain"] == "/root/"
        assert bootstrap_record["connectorType"] == "bootstrap" and bootstrap_record["bootstrap"]
        names = eventually(
            lambda: (n := audit_names(server, endpoint)) and "bootstrap.finished" in n and n
        )
        assert names[0] == "bootstrap.requested"
        steps = [
            (row["details"]["step"], row["details"]["path"], row["details"]["code"])
            for row in audit_events(server, endpoint)
            if row["event"] in ("bootstrap.step", "bootstrap.finished")
        ]
        assert steps == [
            ("discover", "/", "2.05"),
            ("delete", "/0", "2.02"),
            ("delete", "/1", "2.02"),
            ("write", "/0/1", "2.04"),
            ("write", "/1/0", "2.04"),
            ("read", "/1/0", "2.05"),
            ("finish", "/bs", "2.04"),
        ]
        bootstrap_record = eventually(
            lambda: (
                (r := server.admin().get(f"{API}/devices/{account_id}").json())["lastSessionTime"]
                and r
            )
        )
    finally:
        server.call(device.stop())


def test_bootstrap_pack_request(server, bootstrap_port):
    endpoint = f"bs-pack-{tag()}"
    account_id = bootstrap_device(server, endpoint)
    configure(server, "device", account_id, lifetime=90)
    device = SimulatedDevice(endpoint, "coap://192.0.2.1:9", lwm2m_version="1.2")

    async def run() -> None:
        await bootstrap_into(device, f"coap://127.0.0.1:{bootstrap_port}", pack=True)
        await device.start()

    server.call(run())
    try:
        assert device.state is DeviceState.REGISTERED and device.lifetime == 90
        assert device.server_uri == f"coap://127.0.0.1:{server.coap_port}"
        eventually(lambda: "bootstrap.finished" in audit_names(server, endpoint))
    finally:
        server.call(device.stop())


def test_psk_configuration_gives_fresh_credentials_kept_only_on_the_device_record(
    server, bootstrap_port
):
    endpoint = f"bs-psk-{tag()}"
    account_id = bootstrap_device(server, endpoint)
    configure(server, "device", account_id, securityMode="psk", serverUri="coaps://127.0.0.1:5684")

    async def run() -> ManagementAccount:
        client = BootstrapClient(
            endpoint, ("127.0.0.1", bootstrap_port), f"coap://127.0.0.1:{bootstrap_port}"
        )
        return await client.bootstrap()

    first = server.call(run())
    assert first.security_mode == 0 and first.server_uri == "coaps://127.0.0.1:5684"
    assert len(first.psk_key) == 16 and first.psk_identity
    with server.admin() as http:
        record = eventually(
            lambda: (
                (r := http.get(f"{API}/devices/{endpoint}").json())["securityMode"] == "psk" and r
            )
        )
    assert record["dtlsIdentity"] == first.psk_identity.decode()
    assert record["dtlsPsk"] is None
    second = server.call(run())
    assert second.psk_key != first.psk_key and second.psk_identity != first.psk_identity
    with server.admin() as http:
        assert http.get(f"{API}/devices/{endpoint}").json()["dtlsIdentity"] == (
            second.psk_identity.decode()
        )
        audit = http.get("/api/admin/audit", params={"limit": 1000}).text
    assert first.psk_key.hex() not in audit and second.psk_key.hex() not in audit.lower()
    # A simulated device takes the written PSK as its DTLS credentials for the coaps:// URI.
    device = SimulatedDevice(endpoint, "coap://192.0.2.1:9")
    third = server.call(bootstrap_into(device, f"coap://127.0.0.1:{bootstrap_port}"))
    assert device.server_uri == "coaps://127.0.0.1:5684" and device.security is not None
    assert device.security.identity == third.psk_identity.decode()  # type: ignore[union-attr]
    assert device.security.key == third.psk_key  # type: ignore[union-attr]


def test_a_group_configuration_applies_to_its_members(server, bootstrap_port):
    endpoint, group = f"bs-grp-{tag()}", f"bsgroup{tag()}"
    with server.admin() as http:
        assert http.post(f"{API}/groups", json={"id": group}).status_code == 201
        assert (
            http.post(
                f"{API}/devices",
                json={"properties": {"endpointName": endpoint}, "directGroups": [group]},
            ).status_code
            == 201
        )
    bootstrap_device(server, endpoint)
    configure(server, "group", group, lifetime=77, shortServerId=3)
    client = BootstrapClient(
        endpoint, ("127.0.0.1", bootstrap_port), f"coap://127.0.0.1:{bootstrap_port}"
    )
    account = server.call(client.bootstrap())
    assert (account.lifetime, account.short_server_id) == (77, 3)


def test_unknown_endpoint_and_missing_configuration_get_4_00(server, bootstrap_port):
    unknown, unconfigured = f"bs-unknown-{tag()}", f"bs-noconf-{tag()}"
    bootstrap_device(server, unconfigured)
    for endpoint in (unknown, unconfigured):
        client = BootstrapClient(
            endpoint, ("127.0.0.1", bootstrap_port), f"coap://127.0.0.1:{bootstrap_port}"
        )
        with pytest.raises(BootstrapError, match="4.00"):
            server.call(client.bootstrap())
    rows = eventually(lambda: audit_events(server, unknown))
    assert rows[0]["event"] == "bootstrap.refused"
    assert rows[0]["details"]["detail"] == "unknown_endpoint" and rows[0]["clientIp"]
    rows = eventually(lambda: audit_events(server, unconfigured)[-1:])
    assert rows[0]["details"]["detail"] == "no_configuration"


def test_psk_bootstrap_credentials_need_dtls(server, bootstrap_port):
    endpoint = f"bs-secure-{tag()}"
    account_id = bootstrap_device(
        server,
        endpoint,
        securityMode="psk",
        dtlsIdentity=f"id-{endpoint}",
        dtlsPsk={"HexadecimalPsk": "00112233445566778899aabbccddeeff"},
    )
    configure(server, "device", account_id)
    client = BootstrapClient(
        endpoint, ("127.0.0.1", bootstrap_port), f"coap://127.0.0.1:{bootstrap_port}"
    )
    with pytest.raises(BootstrapError, match="4.00"):
        server.call(client.bootstrap())
    rows = eventually(lambda: audit_events(server, endpoint)[-1:])
    assert rows[0]["event"] == "bootstrap.refused"
    assert rows[0]["details"]["detail"] == "unsecured_transport"
    with server.admin() as http:
        shown = http.get(f"{API}/devices/{account_id}").json()
    assert shown["securityMode"] == "psk" and shown["dtlsPsk"] is None


class RefusingClient(BootstrapClient):
    """A device that answers one of the bootstrap server's requests with an error."""

    def __init__(self, *args: Any, refuse: tuple[str, str], code: Code, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.refuse, self.code = refuse, code

    def _dispatch(self, request: Message, path: Any) -> Message:
        if (str(request.code), "/" + "/".join(request.opt.uri_path)) == self.refuse:
            return Message(code=self.code)
        return super()._dispatch(request, path)


@pytest.mark.parametrize(
    ("refuse", "code", "expected"),
    [
        (("POST", "/bs"), Code.NOT_ACCEPTABLE, ("finish", "/bs", "4.06")),
        (("PUT", "/0/1"), Code.BAD_REQUEST, ("write", "/0/1", "4.00")),
        (("DELETE", "/1"), Code.NOT_FOUND, ("delete", "/1", "4.04")),
    ],
)
def test_device_error_codes_are_reported(server, bootstrap_port, refuse, code, expected):
    endpoint = f"bs-err-{tag()}"
    configure(server, "device", bootstrap_device(server, endpoint))
    client = RefusingClient(
        endpoint,
        ("127.0.0.1", bootstrap_port),
        f"coap://127.0.0.1:{bootstrap_port}",
        refuse=refuse,
        code=code,
        finish_timeout=3,
    )
    with pytest.raises(BootstrapError, match="no Bootstrap-Finish"):
        server.call(client.bootstrap())
    failed = eventually(
        lambda: [r for r in audit_events(server, endpoint) if r["event"] == "bootstrap.failed"]
    )
    details = failed[0]["details"]
    assert (details["step"], details["path"], details["code"]) == expected
    with server.admin() as http:
        shown = http.get(f"{API}/devices/bs-{endpoint}").json()
    assert f"failed {expected[2]}" in server.call(_last_result(server, endpoint))
    assert shown["lastSessionTime"] is not None


async def _last_result(server: Lwm2mTestServer, endpoint: str) -> str:
    from sqlalchemy import select

    from meadowlark.store.bootstrap_models import BootstrapAccount

    async with server.runtime.db.session() as session:
        result = await session.scalar(
            select(BootstrapAccount.last_bootstrap_result).where(
                BootstrapAccount.endpoint_name == endpoint
            )
        )
    return str(result)


@pytest.mark.parametrize(
    ("code", "path", "query", "expected"),
    [
        (Code.POST, ("bs",), (), Code.BAD_REQUEST),
        (Code.POST, ("bs",), ("ep=",), Code.BAD_REQUEST),
        (Code.POST, ("bs",), ("ep=" + "e" * 2000,), Code.BAD_REQUEST),
        (Code.POST, ("bs",), ("ep=x", "ep=y"), Code.BAD_REQUEST),
        (Code.POST, ("bs",), ("ep=x", "pct=99999999"), Code.BAD_REQUEST),
        (Code.POST, ("bs",), ("ep=x", "pct=0"), Code.UNSUPPORTED_CONTENT_FORMAT),
        (Code.GET, ("bs",), ("ep=x",), Code.METHOD_NOT_ALLOWED),
        (Code.GET, ("bspack",), (), Code.BAD_REQUEST),
        (Code.GET, ("bspack",), ("ep=nobody",), Code.BAD_REQUEST),
        (Code.POST, ("rd",), ("ep=x",), Code.NOT_FOUND),
        (Code.GET, ("nothing",), (), Code.NOT_FOUND),
    ],
)
def test_hostile_requests_get_4xx(server, bootstrap_port, code, path, query, expected):
    async def ask() -> Code:
        endpoint = await CoapEndpoint.open(lambda _: None, ("127.0.0.1", 0))
        try:
            request = Message(code=code, uri_path=path, uri_query=query)
            response = await endpoint.request(
                request, ("127.0.0.1", bootstrap_port), response_timeout=10
            )
            return response.code
        finally:
            endpoint.close()

    assert server.call(ask()) == expected


def test_garbage_datagrams_leave_the_bootstrap_server_serving(server, bootstrap_port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for garbage in (b"", b"\xff" * 3, b"\x40\x02\x00\x01\xbb" + b"bs" * 300, bytes(range(256))):
            sock.sendto(garbage, ("127.0.0.1", bootstrap_port))
    client = BootstrapClient(
        f"bs-after-garbage-{tag()}",
        ("127.0.0.1", bootstrap_port),
        f"coap://127.0.0.1:{bootstrap_port}",
    )
    with pytest.raises(BootstrapError, match="4.00"):  # unknown, but answered
        server.call(client.bootstrap())


def test_configuration_api_validates_and_scopes(server, bootstrap_port):
    endpoint = f"bs-api-{tag()}"
    account_id = bootstrap_device(server, endpoint)
    url = f"{API}/bootstrap/configuration/device/{account_id}"
    with server.admin() as http:
        assert http.get(url).status_code == 404
        for bad in (
            {"securityMode": "cert"},
            {"shortServerId": 0},
            {"lifetime": 0},
            {"binding": "XYZ"},
            {"serverUri": "http://example.com"},
            {"serverUri": "coap://example.com", "securityMode": "psk"},
            {"unknown": 1},
        ):
            response = http.put(url, json=bad)
            assert response.status_code == 400, (bad, response.text)
        stored = http.put(url, json={"serverUri": "coap://lwm2m.example.com:5683"}).json()
        assert (
            stored["serverUri"] == "coap://lwm2m.example.com:5683" and stored["target"] == "device"
        )
        assert http.get(url).json()["serverUri"] == "coap://lwm2m.example.com:5683"
        assert http.put(f"{API}/bootstrap/configuration/device/nobody", json={}).status_code == 404
        assert http.put(f"{API}/bootstrap/configuration/group/nogroup", json={}).status_code == 404
        assert http.delete(url).status_code == 204
        assert http.get(url).status_code == 404
        assert http.delete(f"{API}/devices/{account_id}").status_code == 204
        assert http.get(f"{API}/devices/{account_id}").status_code == 404
        duplicate = {"properties": {"endpointName": endpoint}, "connectorType": "bootstrap"}
        assert http.post(f"{API}/devices", json=duplicate).status_code == 201
        assert http.post(f"{API}/devices", json=duplicate).status_code == 409


def test_concurrent_bootstraps(server, bootstrap_port):
    endpoints = [f"bs-many-{tag()}" for _ in range(10)]
    for endpoint in endpoints:
        configure(server, "device", bootstrap_device(server, endpoint))

    async def run() -> list[ManagementAccount]:
        clients = [
            BootstrapClient(e, ("127.0.0.1", bootstrap_port), f"coap://127.0.0.1:{bootstrap_port}")
            for e in endpoints
        ]
        return await asyncio.gather(*(c.bootstrap() for c in clients))

    accounts = server.call(run(), timeout=60)
    assert {a.server_uri for a in accounts} == {f"coap://127.0.0.1:{server.coap_port}"}


def test_bootstrap_steps_are_device_events(server, bootstrap_port):
    from meadowlark.api.routers.coiote_events import event_payloads
    from meadowlark.core.events import DeviceEvent, EventFilter, EventKind

    endpoint = f"bs-events-{tag()}"
    configure(server, "device", bootstrap_device(server, endpoint))

    async def run() -> list[DeviceEvent]:
        subscription = server.runtime.events.subscribe(EventFilter("/root/", endpoint))
        try:
            client = BootstrapClient(
                endpoint, ("127.0.0.1", bootstrap_port), f"coap://127.0.0.1:{bootstrap_port}"
            )
            await client.bootstrap()
            seen: list[DeviceEvent] = []
            while not seen or seen[-1].operation != "finish":
                seen.append(await asyncio.wait_for(subscription.__anext__(), 10))
            return seen
        finally:
            subscription.close()

    events = server.call(run())
    assert {event.kind for event in events} == {EventKind.BOOTSTRAP}
    assert [event.operation for event in events] == [
        "request", "discover", "delete", "delete", "write", "write", "read", "finish"
    ]  # fmt: skip
    assert events[-1].reason == "finish /bs ok" and events[-1].domain_id == "/root/"
    [entry] = event_payloads(server.runtime, events[-1])
    assert entry["eventType"] == "deviceBootstrap" and entry["reason"] == "finish /bs ok"
    assert entry["ipAddress"] == "127.0.0.1" and entry["endpointName"] == endpoint


def test_mutated_bootstrap_requests_get_only_coap_answers(server, bootstrap_port):
    import random

    from aiocoap.numbers.types import Type

    def encoded(code: Code, path: tuple[str, ...], query: tuple[str, ...] = ()) -> bytes:
        message = Message(code=code, uri_path=path, uri_query=query)
        message.mtype, message.mid, message.token = Type.CON, 0x4321, b"\x07"
        return message.encode()

    seeds = [
        encoded(Code.POST, ("bs",), ("ep=fuzz", "pct=112")),
        encoded(Code.GET, ("bspack",), ("ep=fuzz",)),
        encoded(Code.POST, ("bs",)),
    ]
    rng = random.Random(11)
    replies: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.002)
        for _ in range(1500):
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 5)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data[0] = 0x40 | (data[0] & 0x3F)
            sock.sendto(bytes(data), ("127.0.0.1", bootstrap_port))
            try:
                replies.append(sock.recv(2048))
            except TimeoutError:
                pass
    for reply in replies:
        assert reply[0] >> 6 == 1  # CoAP version 1, whatever it says
    client = BootstrapClient(
        f"bs-after-fuzz-{tag()}",
        ("127.0.0.1", bootstrap_port),
        f"coap://127.0.0.1:{bootstrap_port}",
    )
    with pytest.raises(BootstrapError, match="4.00"):  # still serving
        server.call(client.bootstrap())


def test_new_credentials_end_a_registration_made_under_the_old_ones(server, bootstrap_port):
    endpoint = f"bs-rekey-{tag()}"
    account_id = bootstrap_device(server, endpoint)
    configure(server, "device", account_id)
    device = SimulatedDevice(endpoint, "coap://192.0.2.1:9")

    async def register() -> None:
        await bootstrap_into(device, f"coap://127.0.0.1:{bootstrap_port}")
        await device.start()

    server.call(register())
    try:
        assert server.call(server.runtime.lwm2m.get_registration(endpoint)) is not None
        configure(server, "device", account_id, securityMode="psk", serverUri="coaps://[::1]:5684")
        client = BootstrapClient(
            endpoint, ("127.0.0.1", bootstrap_port), f"coap://127.0.0.1:{bootstrap_port}"
        )
        account = server.call(client.bootstrap())
        assert account.security_mode == 0
        # Registered over plain UDP as a NoSec device: that registration may not outlive
        # the device becoming a PSK device.
        eventually(lambda: server.call(server.runtime.lwm2m.get_registration(endpoint)) is None)
        with server.admin() as http:
            assert http.get(f"{API}/devices/{endpoint}").json()["securityMode"] == "psk"
    finally:
        server.call(device.stop(deregister=False))


def test_a_record_of_another_tenant_is_never_provisioned(server, bootstrap_port):
    """A bootstrap account cannot provision a management record of a sibling domain
    (that endpoint name is another tenant's device): refused before anything is sent."""
    mine, theirs = f"/root/bsa{tag()}/", f"/root/bsb{tag()}/"
    endpoint = f"bs-tenant-{tag()}"
    with server.admin() as http:
        for domain in (mine, theirs):
            assert http.post(f"{API}/domains", json={"id": domain}).status_code == 201
        record = {"properties": {"endpointName": endpoint}, "domain": theirs}
        assert http.post(f"{API}/devices", json=record).status_code == 201
    configure(server, "device", bootstrap_device(server, endpoint, domain=mine))
    client = BootstrapClient(
        endpoint, ("127.0.0.1", bootstrap_port), f"coap://127.0.0.1:{bootstrap_port}"
    )
    with pytest.raises(BootstrapError, match="4.00"):
        server.call(client.bootstrap())
    assert client.requests == []
    rows = eventually(lambda: audit_events(server, endpoint)[-1:])
    assert rows[0]["event"] == "bootstrap.refused"
    assert rows[0]["details"]["detail"] == "domain_mismatch"
    with server.admin() as http:
        shown = http.get(f"{API}/devices/{endpoint}").json()
    assert shown["domain"] == theirs and shown["securityMode"] == "nosec"


def test_a_bootstrap_device_takes_names_and_credentials_only(server, bootstrap_port):
    endpoint = f"bs-update-{tag()}"
    account_id = bootstrap_device(server, endpoint)
    url = f"{API}/devices/{account_id}"
    with server.admin() as http:
        psk = {
            "securityMode": "psk",
            "dtlsIdentity": f"id-{endpoint}",
            "dtlsPsk": {"HexadecimalPsk": "0011223344556677"},
            "blacklisted": False,  # python-coiote sends the flags every time
            "managementEnabled": True,
            "friendlyName": "bootstrap me",
        }
        assert http.put(url, json=psk).status_code == 204
        shown = http.get(url).json()
        assert (shown["securityMode"], shown["dtlsIdentity"], shown["dtlsPsk"]) == (
            "psk",
            f"id-{endpoint}",
            None,
        )
        assert shown["friendlyName"] == "bootstrap me" and shown["connectorType"] == "bootstrap"
        for refused in (
            {"blacklisted": True},
            {"managementEnabled": False},
            {"addGroups": ["g"]},
            {"addProperties": {"a": "b"}},
            {"securityMode": "cert"},
            {"securityMode": "nosec", "dtlsIdentity": "x"},
        ):
            assert http.put(url, json=refused).status_code == 400, refused
        assert http.put(url, json={"securityMode": "nosec"}).status_code == 204
        shown = http.get(url).json()
        assert (shown["securityMode"], shown["dtlsIdentity"]) == ("nosec", None)
