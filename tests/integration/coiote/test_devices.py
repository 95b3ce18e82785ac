"""Coiote v3 devices through python-coiote and raw HTTP against the real server."""

from __future__ import annotations

import secrets

import pytest
from coiote.client import Coiote
from coiote.v3.model.devices import (
    Device,
    DeviceUpdateRequest,
    HexStringPsk,
    PlaintextPsk,
)

API = "/api/coiotedm/v3"


def tag() -> str:
    return secrets.token_hex(4)


@pytest.fixture(scope="module")
def coiote(server):
    client = Coiote(server.url, auth=server.admin_token)
    yield client
    client.session.close()


@pytest.fixture(scope="module")
def http(server):
    with server.admin() as client:
        yield client


def new_group(http, group_id: str) -> str:
    response = http.post(f"{API}/groups", json={"id": group_id, "description": ""})
    assert response.status_code == 201, response.text
    return group_id


def test_create_get_update_delete_with_python_coiote(coiote, http):
    endpoint = f"urn:dev:{tag()}"
    group = new_group(http, f"devtest{tag()}")
    created = coiote.devices.create_one(
        Device(
            id=endpoint,
            friendlyName="Boiler",
            description="cellar",
            managementEnabled=True,
            properties={"site": "north"},
            directGroups=[group],
        )
    )
    assert (created.id, created.result) == (endpoint, "created")

    device = coiote.devices.get_one(endpoint)
    assert isinstance(device, Device)
    assert device.id == endpoint and device.domain == "/root/"
    assert device.properties == {"site": "north", "endpointName": endpoint}
    assert (device.friendlyName, device.description) == ("Boiler", "cellar")
    assert device.directGroups == [group]
    assert device.securityMode == "nosec" and device.dtlsPsk is None
    assert device.connectorType == "management" and device.bootstrap is False
    assert device.creationTime is not None and device.lastRegisterTime is None
    assert (device.blacklisted, device.managementEnabled) == (False, True)

    assert coiote.devices.get_by_endpoint_name(endpoint).id == endpoint
    assert coiote.devices.get_by_endpoint_name(f"absent-{tag()}") is None

    updated = coiote.devices.update_one(
        endpoint,
        DeviceUpdateRequest(
            addProperties={"floor": "2"},
            removeProperties=["site"],
            removeGroups=[group],
            friendlyName="Heater",
            blacklisted=True,
        ),
    )
    assert updated.status_code == 204, updated.text
    device = coiote.devices.get_one(endpoint)
    assert device.properties == {"floor": "2", "endpointName": endpoint}
    assert device.friendlyName == "Heater" and device.description == "cellar"
    assert device.directGroups == [] and device.blacklisted is True

    assert coiote.devices.delete_one(endpoint).status_code == 204
    assert coiote.devices.get_one.__wrapped__(coiote.devices, endpoint).status_code == 404
    assert coiote.devices.delete_one(endpoint).status_code == 404


def test_raw_device_json_has_every_field_and_iso_times(http):
    endpoint = f"raw-{tag()}"
    assert (
        http.post(f"{API}/devices", json={"properties": {"endpointName": endpoint}}).status_code
        == 201
    )
    body = http.get(f"{API}/devices/{endpoint}").json()
    assert set(body) == set(Device.__dataclass_fields__)
    assert body["creationTime"].endswith("Z")
    assert body["managementEnabled"] is True and body["dtlsPsk"] is None


def test_psk_is_stored_never_returned_and_validated(coiote, http, store, server):
    endpoint, identity = f"psk-{tag()}", f"id-{tag()}"
    coiote.devices.create_one(
        Device(
            id=endpoint,
            securityMode="psk",
            dtlsIdentity=identity,
            dtlsPsk=HexStringPsk(HexadecimalPsk="00A1ff"),
            managementEnabled=True,
        )
    )
    device = coiote.devices.get_one(endpoint)
    assert (device.securityMode, device.dtlsIdentity, device.dtlsPsk) == ("psk", identity, None)

    from sqlalchemy import select

    from meadowlark.store.device_models import Device as DeviceRow

    async def stored_key(session):
        return await session.scalar(select(DeviceRow.dtls_psk).where(DeviceRow.id == endpoint))

    def opened(sealed: str) -> bytes:  # stored sealed for this device (core/secret_box.py)
        assert sealed.startswith("enc1:") and "00a1ff" not in sealed
        return server.runtime.psk_box.open(sealed, endpoint)

    assert opened(store(stored_key)) == bytes.fromhex("00a1ff")
    coiote.devices.update_one(
        endpoint, DeviceUpdateRequest(dtlsPsk=PlaintextPsk(PlainTextPsk="key"))
    )
    assert opened(store(stored_key)) == b"key"

    body = {
        "properties": {"endpointName": f"psk2-{tag()}"},
        "securityMode": "psk",
        "dtlsIdentity": f"other-{tag()}",
    }
    for psk in (
        {"HexadecimalPsk": "abc"},
        {"HexadecimalPsk": "zz"},
        {"BinaryPsk": [1, 256]},
        {"GlobalPsk": {}},
        {"PlainTextPsk": ""},
        {},
    ):
        response = http.post(f"{API}/devices", json={**body, "dtlsPsk": psk})
        assert response.status_code == 400, (psk, response.text)
    duplicate = http.post(
        f"{API}/devices", json={**body, "dtlsIdentity": identity, "dtlsPsk": {"BinaryPsk": [1, 2]}}
    )
    assert duplicate.status_code == 400 and "DTLS identity" in duplicate.json()["message"]
    assert (
        http.post(f"{API}/devices", json={**body, "dtlsPsk": {"BinaryPsk": [1, 2]}}).status_code
        == 201
    )


def test_create_refuses_duplicates_long_names_and_bad_input(http, error_body):
    endpoint = f"dup-{tag()}"
    assert (
        http.post(f"{API}/devices", json={"properties": {"endpointName": endpoint}}).status_code
        == 201
    )
    error_body(http.post(f"{API}/devices", json={"properties": {"endpointName": endpoint}}), 409)
    error_body(
        http.post(
            f"{API}/devices",
            json={"id": f"other-{tag()}", "properties": {"endpointName": endpoint}},
        ),
        409,
    )
    error_body(http.post(f"{API}/devices", json={"properties": {"endpointName": "e" * 151}}), 400)
    assert (
        http.post(f"{API}/devices", json={"properties": {"endpointName": "e" * 150}}).status_code
        == 201
    )
    error_body(http.post(f"{API}/devices", json={"properties": {}}), 400)
    error_body(http.post(f"{API}/devices", json={"properties": {"endpointName": "x", "n": 5}}), 400)
    error_body(
        http.post(
            f"{API}/devices",
            json={
                "properties": {"endpointName": f"b-{tag()}"},
                "connectorType": "bootstrap",
                "directGroups": ["g"],
            },
        ),
        400,
    )
    error_body(
        http.post(
            f"{API}/devices",
            json={"properties": {"endpointName": f"b-{tag()}"}, "securityMode": "magic"},
        ),
        400,
    )
    error_body(
        http.post(
            f"{API}/devices",
            json={"properties": {"endpointName": f"b-{tag()}", "lwm2mVersion": "1.1"}},
        ),
        400,
    )
    error_body(
        http.post(
            f"{API}/devices",
            json={"properties": {"endpointName": f"b-{tag()}"}, "directGroups": ["no-such-group"]},
        ),
        404,
    )
    error_body(
        http.post(
            f"{API}/devices",
            json={"properties": {"endpointName": f"b-{tag()}"}, "domain": "/root/nowhere/"},
        ),
        404,
    )
    error_body(
        http.post(
            f"{API}/devices", content=b"{not json", headers={"content-type": "application/json"}
        ),
        400,
    )
    error_body(http.post(f"{API}/devices", json=["a list"]), 400)
    error_body(http.put(f"{API}/devices/{endpoint}", json={"addGroups": ["no-such-group"]}), 404)
    error_body(http.put(f"{API}/devices/{endpoint}", json={"blacklisted": "maybe"}), 400)
    error_body(
        http.put(f"{API}/devices/{endpoint}", json={"removeProperties": ["endpointName"]}), 400
    )
    error_body(http.get(f"{API}/devices/find/details", params={"limit": 1001}), 400)
    error_body(http.get(f"{API}/devices/find/details", params={"limit": "many"}), 400)
    error_body(http.get(f"{API}/devices", params={"searchCriteria": "id eq"}), 400)
    for criteria in (
        "nosuchfield eq 1",
        "properties.lifetime eq 99999999999999999999",
        "lastContactTime gt 1e30",
        "creationTime lt '0001-01-01T00:00:00+14:00'",
        "blacklisted lt true",
    ):
        error_body(http.get(f"{API}/devices", params={"searchCriteria": criteria}), 400)


def test_batch_reports_each_item(coiote, http, error_body):
    first, second = f"batch-{tag()}", f"batch-{tag()}"
    response = coiote.devices.create_batch(
        [Device(id=first, managementEnabled=True), Device(id=second), Device(id=first)]
    )
    assert (response.total, response.succeeded, response.failed) == (3, 2, 1)
    assert [(r.id, r.success) for r in response.results] == [
        (first, True),
        (second, True),
        (first, False),
    ]
    assert "already exists" in response.results[2].reason
    assert coiote.devices.get_one(second).managementEnabled is False

    mixed = http.post(
        f"{API}/devices/batch",
        json=[
            {"properties": {"endpointName": f"batch-{tag()}"}},
            {"properties": {"endpointName": 7}},
            "not an object",
            {"properties": {"endpointName": f"batch-{tag()}"}, "dtlsPsk": {"HexadecimalPsk": "1"}},
        ],
    )
    assert mixed.status_code == 200, mixed.text
    assert [r["success"] for r in mixed.json()["results"]] == [True, False, False, False]
    assert all(r["reason"] for r in mixed.json()["results"][1:])
    too_many = [{"properties": {"endpointName": f"many-{i}"}} for i in range(101)]
    error_body(http.post(f"{API}/devices/batch", json=too_many), 400)


def test_paging_across_250_devices_is_stable(coiote, http, error_body):
    label = tag()
    ids = [f"page-{label}-{n:03d}" for n in range(250)]
    for start in range(0, 250, 100):
        batch = coiote.devices.create_batch(
            [Device(id=i, properties={"batch": label}) for i in ids[start : start + 100]]
        )
        assert batch.succeeded == len(ids[start : start + 100])
    criteria = f"properties.batch eq '{label}'"
    seen: list[str] = []
    bookmark = None
    pages = 0
    while True:
        page = coiote.devices.get_device_details(criteria, limit=100, page_bookmark=bookmark)
        seen += [device.id for device in page.devices]
        pages += 1
        if pages == 1:
            # A device added behind the cursor must not shift the pages that follow.
            coiote.devices.create_one(Device(id=f"page-{label}-000a", properties={"batch": "x"}))
        bookmark = page.nextPageBookmark
        if bookmark is None:
            break
    assert seen == ids and pages == 3
    assert sorted(coiote.devices.get_all(criteria).json()) == ids

    first = http.get(
        f"{API}/devices/find/details",
        params={"searchCriteria": criteria, "limit": 10, "fieldSelection": "friendlyName"},
    ).json()
    assert all(set(d) == {"id", "friendlyName"} for d in first["devices"])
    mark = first["nextPageBookmark"]
    error_body(
        http.get(
            f"{API}/devices/find/details",
            params={"searchCriteria": "id startswith 'page-'", "pageBookmark": mark},
        ),
        400,
    )
    error_body(
        http.get(
            f"{API}/devices/find/details",
            params={"searchCriteria": criteria, "pageBookmark": mark[:-2] + "xx"},
        ),
        400,
    )
    error_body(
        http.get(
            f"{API}/devices/find/details",
            params={"searchCriteria": criteria, "pageBookmark": "%%%"},
        ),
        400,
    )
    error_body(http.get(f"{API}/devices/find/details", params={"fieldSelection": "id,colour"}), 400)
    only_ids = coiote.devices.get_device_details(criteria, fields=["id"], limit=1000)
    assert [d.id for d in only_ids.devices] == ids and only_ids.nextPageBookmark is None
    empty = http.get(
        f"{API}/devices/find/details", params={"searchCriteria": criteria, "limit": 0}
    ).json()
    assert empty == {"devices": [], "nextPageBookmark": None}


def test_search_criteria_fields(coiote, http):
    label = tag()
    parent = new_group(http, f"s{label}")
    child = new_group(http, f"s{label}.child")
    for n, groups in enumerate([[parent], [child], []]):
        coiote.devices.create_one(
            Device(
                id=f"s-{label}-{n}",
                directGroups=groups,
                friendlyName=f"name {n}",
                blacklisted=n == 2,
                properties={"kind": "even" if n % 2 == 0 else "odd"},
            )
        )

    def ids(criteria: str) -> list[str]:
        response = coiote.devices.get_all(f"id startswith 's-{label}' and ({criteria})")
        assert response.status_code == 200, response.text
        return [i.rsplit("-", 1)[1] for i in response.json()]

    assert ids(f"directGroups eq '{parent}'") == ["0"]
    assert ids(f"directGroups in ('{parent}', '{child}')") == ["0", "1"]
    assert ids(f"directGroups startswith '{parent}'") == ["0", "1"]
    assert ids(f"directGroups ne '{parent}'") == ["1", "2"]
    assert ids("directGroups eq null") == ["2"]
    assert ids("blacklisted eq true") == ["2"]
    assert ids("properties.kind eq 'even'") == ["0", "2"]
    assert ids(f"properties.endpointName eq 's-{label}-1'") == ["1"]
    assert ids("friendlyName contains '1' or blacklisted eq true") == ["1", "2"]
    assert ids("managementEnabled eq true") == []
    assert ids("creationTime gt '2020-01-01T00:00:00Z' and not properties.kind eq 'odd'") == [
        "0",
        "2",
    ]
    assert ids("properties.lwm2mVersion eq null") == ["0", "1", "2"]


def test_count(http):
    before = http.get(f"{API}/devices/all/count").json()["count"]
    assert (
        http.post(f"{API}/devices", json={"properties": {"endpointName": f"c-{tag()}"}}).status_code
        == 201
    )
    assert http.get(f"{API}/devices/all/count").json() == {"count": before + 1}


def test_other_domains_see_nothing(server, http, given_domain, given_user, token_for, error_body):
    own, other = given_domain(), given_domain()
    mine = f"mine-{tag()}"
    assert (
        http.post(
            f"{API}/devices", json={"properties": {"endpointName": mine}, "domain": own}
        ).status_code
        == 201
    )
    outsider = given_user(
        domain=other,
        permissions=[
            "GET devices",
            "GET devices/{id}",
            "PUT devices/{id}",
            "DELETE devices/{id}",
            "GET devices/find/details",
            "GET devices/all/count",
            "POST devices",
        ],
    )
    with server.client(token_for(outsider)) as theirs:
        error_body(theirs.get(f"{API}/devices/{mine}"), 404)
        error_body(theirs.put(f"{API}/devices/{mine}", json={"friendlyName": "x"}), 404)
        error_body(theirs.delete(f"{API}/devices/{mine}"), 404)
        assert theirs.get(f"{API}/devices").json() == []
        assert theirs.get(f"{API}/devices/find/details").json()["devices"] == []
        assert theirs.get(f"{API}/devices/all/count").json() == {"count": 0}
        error_body(
            theirs.post(
                f"{API}/devices", json={"properties": {"endpointName": f"x-{tag()}"}, "domain": own}
            ),
            404,
        )
        created = theirs.post(f"{API}/devices", json={"properties": {"endpointName": f"t-{tag()}"}})
        assert created.status_code == 201
    assert http.get(f"{API}/devices/{created.json()['id']}").json()["domain"] == other
