# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""Observations on devices and groups: configurations through python-coiote, real Observes
to simulated devices, and the value cache following their notifications."""

from __future__ import annotations

import secrets

import pytest
from coiote.v3.model.observations import (
    BasicSetObservationRequest,
    EntityObservationData,
    ObservationAttribute,
    ObservedDevice,
    ObservedGroup,
    SetObservationRequest,
)

from lwm2m_harness import coiote, devices, eventually, server  # noqa: F401 - fixtures
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.store.coiote_models import GroupMembership

BASE = "/api/coiotedm/v3"
SENSOR = LwM2mPath(3303, 0, 5700)
MIN_MEASURED = LwM2mPath(3303, 0, 5601)
SENSOR_NAME = "Temperature.0.Sensor Value"


def _observed(server, endpoint: str) -> set[LwM2mPath]:
    return {key[0] for key in server.runtime.lwm2m.observed_paths(endpoint) if len(key) == 1}


def _sensor_value(coiote, endpoint: str) -> str | None:
    entries = coiote.data_model.get_device_parameter(endpoint, SENSOR_NAME)
    return entries[0].value if entries else None


def _set_temperature(server, device, value: float) -> None:
    async def change() -> None:
        device.set_temperature(value)

    server.call(change())


def _endpoint(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def test_device_observation_follows_notifications(server, coiote, devices):
    endpoint = _endpoint("obs")
    device = devices(endpoint)
    request = SetObservationRequest(
        attributes=[ObservationAttribute("pmin", "0"), ObservationAttribute("pmax", "60")],
        createEnsureObserveIfNotExists=True,
    )
    response = coiote.observations.set_observation_on_device(endpoint, SENSOR_NAME, request)
    assert response.status_code == 201, response.text
    eventually(lambda: SENSOR in _observed(server, endpoint))
    assert device.objects.attributes_at(SENSOR).pmax == 60
    assert eventually(lambda: _sensor_value(coiote, endpoint)) == "21.5"

    _set_temperature(server, device, 25.75)
    assert eventually(lambda: _sensor_value(coiote, endpoint) == "25.75")
    _set_temperature(server, device, -3.5)
    assert eventually(lambda: _sensor_value(coiote, endpoint) == "-3.5")

    stored = coiote.observations.get_device_observation_data(endpoint, SENSOR_NAME)
    assert (stored.deviceId, stored.path) == (endpoint, SENSOR_NAME)
    assert [(a.name, a.value) for a in stored.attributes] == [("pmin", "0"), ("pmax", "60")]
    by_number = coiote.observations.get_device_observation_data(endpoint, "/3303/0/5700")
    assert by_number == stored
    listed = coiote.observations.get_all(f"deviceId eq '{endpoint}'")
    assert listed == [EntityObservationData(ObservedDevice(endpoint), SENSOR_NAME)]

    deleted = coiote.observations.delete_observation_for_device(endpoint, SENSOR_NAME)
    assert deleted.status_code == 204, deleted.text
    eventually(lambda: not _observed(server, endpoint) and not device.observations)
    assert device.objects.attributes_at(SENSOR) is None
    with pytest.raises(ValueError, match="404"):
        coiote.observations.get_device_observation_data(endpoint, SENSOR_NAME)
    _set_temperature(server, device, 40.0)
    assert _sensor_value(coiote, endpoint) == "-3.5"


def test_changing_attributes_rewrites_them(server, coiote, devices):
    endpoint = _endpoint("attrs")
    device = devices(endpoint)
    for attributes in ([("pmin", "5"), ("pmax", "50")], [("pmax", "20"), ("st", "0.5")]):
        request = SetObservationRequest([ObservationAttribute(n, v) for n, v in attributes])
        response = coiote.observations.set_observation_on_device(endpoint, SENSOR_NAME, request)
        assert response.status_code == 201, response.text
    eventually(lambda: getattr(device.objects.attributes_at(SENSOR), "st", None) == 0.5)
    written = device.objects.attributes_at(SENSOR)
    assert (written.pmin, written.pmax) == (None, 20)
    assert SENSOR in _observed(server, endpoint)


def test_observation_starts_when_the_device_registers(server, coiote, devices):
    endpoint = _endpoint("later")
    server.call(devices(endpoint).stop())
    response = coiote.observations.set_observation_on_device(
        endpoint, SENSOR_NAME, SetObservationRequest()
    )
    assert response.status_code == 201, response.text
    assert not _observed(server, endpoint)
    device = devices(endpoint)
    eventually(lambda: SENSOR in _observed(server, endpoint))
    _set_temperature(server, device, 30.5)
    assert eventually(lambda: _sensor_value(coiote, endpoint) == "30.5")


@pytest.mark.parametrize(
    ("path", "attributes"),
    [
        (SENSOR_NAME, [("pmin", "10"), ("pmax", "5")]),
        (SENSOR_NAME, [("lt", "30"), ("gt", "20")]),
        (SENSOR_NAME, [("gt", "30"), ("lt", "20"), ("st", "6")]),
        (SENSOR_NAME, [("pmin", "-1")]),
        (SENSOR_NAME, [("pmin", "soon")]),
        (SENSOR_NAME, [("pmin", "1"), ("pmin", "2")]),
        (SENSOR_NAME, [("epmin", "1")]),
        (SENSOR_NAME, [("st", "")]),
        ("Temperature.0", [("gt", "1")]),
        ("Nothing.0.Here", []),
        ("/", []),
        ("/3303/0/5700/1/2", []),
    ],
)
def test_invalid_observations_are_400(server, devices, error_body, path, attributes):
    endpoint = _endpoint("bad")
    devices(endpoint)
    body = {"attributes": [{"name": n, "value": v} for n, v in attributes]}
    with server.admin() as http:
        response = http.post(f"{BASE}/observations/device/{endpoint}/{path}", json=body)
    error_body(response, 400)


def test_malformed_requests_are_client_errors(server, devices, error_body):
    endpoint = _endpoint("malformed")
    devices(endpoint)
    url = f"{BASE}/observations/device/{endpoint}/{SENSOR_NAME}"
    with server.admin() as http:
        error_body(
            http.post(url, content=b"{not json", headers={"Content-Type": "application/json"}), 400
        )
        error_body(http.post(url, json={"attributes": [{"name": "pmin", "value": True}]}), 400)
        error_body(http.post(url, json={"attributes": "pmin=1"}), 400)
        error_body(http.post(f"{BASE}/observations/device/nobody/{SENSOR_NAME}", json={}), 404)
        error_body(http.get(url), 404)
        error_body(http.delete(url), 404)
        error_body(http.get(f"{BASE}/observations", params={"searchCriteria": "nope eq 1"}), 400)
        group_url = f"{BASE}/observations/group/resourceUrl/no-such-group//3303/0/5700"
        error_body(http.post(group_url, json={}), 404)


def _create_group(server, group_id: str) -> None:
    with server.admin() as http:
        response = http.post(f"{BASE}/groups", json={"id": group_id, "description": ""})
    assert response.status_code == 201, response.text


def _join(server, store, device_id: str, group_id: str) -> None:
    async def add(session) -> None:
        session.add(GroupMembership(device_id=device_id, group_id=group_id))

    store(add)
    server.call(server.runtime.observations.reconcile_device(device_id))


def test_group_observation_reaches_members_old_and_new(server, coiote, devices, store):
    group_id = f"obs{secrets.token_hex(3)}"
    _create_group(server, group_id)
    _create_group(server, f"{group_id}.sub")
    early, joiner, returning = _endpoint("early"), _endpoint("joiner"), _endpoint("returning")
    early_device = devices(early)
    _join(server, store, early, group_id)
    server.call(devices(returning).stop())
    _join(server, store, returning, f"{group_id}.sub")

    by_path = coiote.observations.set_observation_on_group(
        group_id, path=SENSOR_NAME, data=BasicSetObservationRequest(minPeriod=0, maxPeriod=30)
    )
    assert by_path.status_code == 201, by_path.text
    by_url = coiote.observations.set_observation_on_group(
        group_id, lwm2m_url="/3303/0/5601", data=BasicSetObservationRequest(maxPeriod=40)
    )
    assert by_url.status_code == 201, by_url.text
    eventually(lambda: _observed(server, early) == {SENSOR, MIN_MEASURED})
    assert early_device.objects.attributes_at(SENSOR).pmax == 30
    assert early_device.objects.attributes_at(MIN_MEASURED).pmax == 40

    joiner_device = devices(joiner)
    assert not _observed(server, joiner)
    _join(server, store, joiner, group_id)
    eventually(lambda: _observed(server, joiner) == {SENSOR, MIN_MEASURED})
    _set_temperature(server, joiner_device, 12.25)
    assert eventually(lambda: _sensor_value(coiote, joiner) == "12.25")

    devices(returning)
    eventually(lambda: _observed(server, returning) == {SENSOR, MIN_MEASURED})

    listed = coiote.observations.get_all(f"groupId eq '{group_id}'")
    assert listed == [
        EntityObservationData(ObservedGroup(group_id), "Temperature.0.Min Measured Value"),
        EntityObservationData(ObservedGroup(group_id), SENSOR_NAME),
    ]


def test_group_observation_validation(server, error_body):
    group_id = f"val{secrets.token_hex(3)}"
    _create_group(server, group_id)
    base = f"{BASE}/observations/group"
    with server.admin() as http:
        bad_url = http.post(f"{base}/resourceUrl/{group_id}/Temperature.0", json={})
        assert error_body(bad_url, 400)["code"] == 4003
        error_body(http.post(f"{base}/resourceUrl/{group_id}//", json={}), 400)
        periods = {"minPeriod": 10, "maxPeriod": 1}
        error_body(http.post(f"{base}/resourcePath/{group_id}/{SENSOR_NAME}", json=periods), 400)
        negative = {"minPeriod": -1}
        error_body(http.post(f"{base}/resourcePath/{group_id}/{SENSOR_NAME}", json=negative), 400)
        error_body(http.post(f"{base}/resourcePath/{group_id}/No.0.Such", json={}), 400)


def test_observations_of_other_domains_are_hidden(
    server,
    coiote,
    devices,
    given_domain,
    given_user,
    token_for,
    error_body,
):
    endpoint = _endpoint("hidden")
    devices(endpoint)
    coiote.observations.set_observation_on_device(endpoint, SENSOR_NAME, SetObservationRequest())
    login = given_user(
        domain=given_domain(),
        permissions=[
            "GET observations",
            "GET observations/device/{deviceId}/{path}",
            "POST observations/device/{deviceId}/{path}",
        ],
    )
    with server.client(token_for(login)) as http:
        assert http.get(f"{BASE}/observations").json() == []
        url = f"{BASE}/observations/device/{endpoint}/{SENSOR_NAME}"
        error_body(http.get(url), 404)
        error_body(http.post(url, json={}), 404)
