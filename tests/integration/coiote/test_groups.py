"""Coiote v3 groups through python-coiote and raw HTTP against the real server."""

from __future__ import annotations

import secrets

import pytest
from coiote.client import Coiote
from coiote.v3.model.devices import Device, DeviceUpdateRequest
from coiote.v3.model.groups import Group, GroupUpdateRequest

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


def test_group_lifecycle_with_python_coiote(coiote):
    root = f"g{tag()}"
    assert coiote.groups.add_group(Group(id=root, description="top")).result == root
    child = f"{root}.sensors-1_a"
    assert coiote.groups.add_group(Group(id=child, description="child")).result == child
    assert coiote.groups.get_one(child) == Group(id=child, description="child")
    assert coiote.groups.get_all(f"id startswith '{root}'") == [root, child]
    assert coiote.groups.get_all(f"description eq 'top' and id eq '{root}'") == [root]
    assert coiote.groups.update_one(child, GroupUpdateRequest(description="new")).status_code == 204
    assert coiote.groups.get_one(child).description == "new"

    refused = coiote.groups.delete_one(root)
    assert refused.status_code == 409 and "sub-groups" in refused.json()["message"]
    assert coiote.groups.delete_one(child).status_code == 204
    assert coiote.groups.delete_one(root).status_code == 204
    assert coiote.groups.get_one.__wrapped__(coiote.groups, root).status_code == 404


def test_group_ids_and_parents_are_checked(http, error_body):
    root = f"p{tag()}"
    assert http.post(f"{API}/groups", json={"id": root}).status_code == 201
    error_body(http.post(f"{API}/groups", json={"id": root}), 409)
    body = error_body(http.post(f"{API}/groups", json={"id": f"missing{tag()}.child"}), 404)
    assert body["code"] == 4041
    for bad in ("", "a..b", ".a", "a.", "sp ace", "sl/ash", "ü", "x" * 256):
        response = http.post(f"{API}/groups", json={"id": bad})
        assert response.status_code == 400, (bad, response.text)
    error_body(http.post(f"{API}/groups", json={"id": 5}), 400)
    error_body(http.post(f"{API}/groups", json={"id": f"{root}.x", "colour": "red"}), 400)
    error_body(http.put(f"{API}/groups/{root}", json={"description": ["x"]}), 400)
    error_body(http.get(f"{API}/groups/no-such-group"), 404)
    error_body(http.get(f"{API}/groups", params={"searchCriteria": "id eq"}), 400)


def test_memberships_follow_device_updates_and_group_deletion(coiote, http):
    group = f"m{tag()}"
    coiote.groups.add_group(Group(id=group))
    device_ids = [f"member-{tag()}" for _ in range(3)]
    for device_id in device_ids:
        coiote.devices.create_one(Device(id=device_id))
    for device_id in device_ids[:2]:
        assert (
            coiote.devices.update_one(device_id, DeviceUpdateRequest(addGroups=[group])).status_code
            == 204
        )
    members = coiote.devices.get_all(f"directGroups eq '{group}'").json()
    assert members == sorted(device_ids[:2])
    assert coiote.devices.get_one(device_ids[0]).directGroups == [group]

    coiote.devices.update_one(device_ids[0], DeviceUpdateRequest(removeGroups=[group]))
    assert coiote.devices.get_all(f"directGroups eq '{group}'").json() == [device_ids[1]]
    missing = coiote.devices.update_one(device_ids[2], DeviceUpdateRequest(addGroups=["nope"]))
    assert missing.status_code == 404 and missing.json()["code"] == 4041

    assert coiote.groups.delete_one(group).status_code == 204
    assert coiote.devices.get_one(device_ids[1]).directGroups == []
    assert coiote.devices.get_all(f"directGroups eq '{group}'").json() == []


def test_groups_are_scoped_to_domains(
    server, http, given_domain, given_user, token_for, error_body
):
    own, other = given_domain(), given_domain()
    group = f"d{tag()}"
    assert http.post(f"{API}/groups", json={"id": group, "domain": own}).status_code == 201
    error_body(http.post(f"{API}/groups", json={"id": f"{group}.sub", "domain": other}), 400)
    error_body(http.post(f"{API}/groups", json={"id": f"x{tag()}", "domain": "/root/none/"}), 404)
    outsider = given_user(
        domain=other,
        permissions=[
            "GET groups",
            "GET groups/{id}",
            "PUT groups/{id}",
            "DELETE groups/{id}",
            "POST groups",
            "POST devices",
            "PUT devices/{id}",
        ],
    )
    with server.client(token_for(outsider)) as theirs:
        assert theirs.get(f"{API}/groups").json() == []
        error_body(theirs.get(f"{API}/groups/{group}"), 404)
        error_body(theirs.put(f"{API}/groups/{group}", json={"description": "x"}), 404)
        error_body(theirs.delete(f"{API}/groups/{group}"), 404)
        error_body(theirs.post(f"{API}/groups", json={"id": f"{group}.mine"}), 404)
        device = f"dev-{tag()}"
        assert (
            theirs.post(f"{API}/devices", json={"properties": {"endpointName": device}}).status_code
            == 201
        )
        error_body(theirs.put(f"{API}/devices/{device}", json={"addGroups": [group]}), 404)
        theirs_group = f"t{tag()}"
        assert theirs.post(f"{API}/groups", json={"id": theirs_group}).status_code == 201
        assert theirs.get(f"{API}/groups").json() == [theirs_group]
    assert http.get(f"{API}/groups", params={"searchCriteria": f"domain eq '{other}'"}).json() == [
        theirs_group
    ]
