# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""A SIM (Thing) is linked to the device that reports its IMEI as the Device object's serial
number (/3/0/2), whatever read brings the value in: the task engine's registration reads, or
a REST read. The simulated devices' endpoint names are not ``urn:imei:``; a device of
another tenant reporting the same number links nothing."""

from __future__ import annotations

import secrets
import time

import pytest

from lwm2m_harness import eventually, server  # noqa: F401 - fixture
from meadowlark.connectivity.identifiers import with_check_digit
from meadowlark.simulator import SimulatedDevice
from meadowlark.simulator.objects import DeviceIdentity, DeviceObjects

API = "/api/coiotedm/v3"


@pytest.fixture(scope="module")
def tenant(server, given):
    tag = secrets.token_hex(3)
    domain = given.domain(f"/root/serial{tag}/")
    token = given.token(given.user(f"ca-{tag}", domain=domain, roles=["Customer Admin"]))
    return {"tag": tag, "domain": domain, "token": token}


def _thing(server, tenant) -> tuple[str, str]:
    """A new Thing with an IMEI; (ThingId, IMEI)."""
    imei = with_check_digit(f"35{secrets.randbelow(10**12):012d}")
    iccid = with_check_digit(f"8944{secrets.randbelow(10**14):014d}")
    with server.client(tenant["token"]) as http:
        created = http.post("/thing", json={"ICCID": iccid, "IMEI": imei})
        assert created.status_code == 201, created.text
    return created.json()["ThingId"], imei


def _device(server, domain: str, endpoint: str, serial: str, reads: str | None = None):
    with server.admin() as http:
        created = http.post(
            f"{API}/devices", json={"properties": {"endpointName": endpoint}, "domain": domain}
        )
        assert created.status_code == 201, created.text
        if reads is not None:
            put = http.put(
                f"{API}/settingValues",
                json={"name": "registrationRead", "value": reads, "deviceId": endpoint},
            )
            assert put.status_code == 204, put.text
    objects = DeviceObjects(
        endpoint, server.server_uri, identity=DeviceIdentity(serial_number=serial)
    )
    device = SimulatedDevice(endpoint, server.server_uri, objects=objects)
    server.call(device.start())
    return device


def _linked(server, tenant, thing_id: str) -> str | None:
    with server.client(tenant["token"]) as http:
        answer = http.get(f"/thing/{thing_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()["DeviceEndpoint"]


def test_registration_reads_link_the_thing(server, tenant):
    thing_id, imei = _thing(server, tenant)
    endpoint = f"tracker-{tenant['tag']}-reg"
    device = _device(server, tenant["domain"], endpoint, imei)
    try:
        assert eventually(lambda: _linked(server, tenant, thing_id)) == endpoint
        with server.client(tenant["token"]) as http:
            status = http.get("/thing/status", params={"ThingIds": thing_id}).json()["Data"][0]
        assert status["ConnectionStatus"] == "CONNECTED"
    finally:
        server.call(device.stop())


def test_a_rest_read_links_the_thing(server, tenant):
    thing_id, imei = _thing(server, tenant)
    endpoint = f"tracker-{tenant['tag']}-rest"
    device = _device(server, tenant["domain"], endpoint, f"urn:imei:{imei}", reads="off")
    try:
        time.sleep(0.3)
        assert not _linked(server, tenant, thing_id)  # nothing was read yet
        with server.admin() as http:
            read = http.get(f"/api/lwm2m/v1/clients/{endpoint}/3/0/2")
            assert read.status_code == 200, read.text
        assert eventually(lambda: _linked(server, tenant, thing_id)) == endpoint
    finally:
        server.call(device.stop())


def test_another_tenants_device_links_nothing(server, tenant, given):
    thing_id, imei = _thing(server, tenant)
    other = given.domain(f"/root/other{tenant['tag']}/")
    endpoint = f"tracker-{tenant['tag']}-other"
    device = _device(server, other, endpoint, imei)
    try:
        with server.admin() as http:
            # The registration reads, then a read of ours: both answered, nothing linked.
            cached = eventually(
                lambda: http.get(f"{API}/cachedDataModels/{endpoint}").json() or None
            )
            assert any(entry.get("value") == imei for entry in cached), cached
            read = http.get(f"/api/lwm2m/v1/clients/{endpoint}/3/0")
            assert read.status_code == 200, read.text
        time.sleep(0.3)
        assert not _linked(server, tenant, thing_id)
    finally:
        server.call(device.stop())
