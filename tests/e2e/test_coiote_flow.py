# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""The Coiote v3 flow end to end, as an operator's script would run it with python-coiote:
simulated devices register over real UDP; the script finds them, reads their data model,
observes a resource, triggers a session, adds a custom object, updates and deletes
devices; a user of another domain sees none of it."""

from __future__ import annotations

import secrets

import pytest
from coiote.client import Coiote
from coiote.v3.model.devices import DeviceUpdateRequest
from coiote.v3.model.groups import Group
from coiote.v3.model.observations import ObservationAttribute, SetObservationRequest

from lwm2m_harness import coiote, devices, eventually, server  # noqa: F401 - fixtures
from meadowlark.lwm2m.path import LwM2mPath

SENSOR_NAME = "Temperature.0.Sensor Value"
CUSTOM_OBJECT = """<?xml version="1.0" encoding="utf-8"?>
<LWM2M><Object ObjectType="MODefinition">
  <Name>Water Meter</Name><Description1>test object</Description1>
  <ObjectID>33500</ObjectID><ObjectURN>urn:oma:lwm2m:x:33500</ObjectURN>
  <LWM2MVersion>1.1</LWM2MVersion><ObjectVersion>1.0</ObjectVersion>
  <MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory>
  <Resources><Item ID="0"><Name>Volume</Name><Operations>R</Operations>
    <MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory>
    <Type>Float</Type><RangeEnumeration></RangeEnumeration><Units>m3</Units>
    <Description>Total volume</Description></Item></Resources>
</Object></LWM2M>"""


def _set_temperature(server, device, value: float) -> None:
    async def change() -> None:
        device.set_temperature(value)

    server.call(change())


def test_operator_script_manages_a_fleet(
    server, coiote, devices, given_domain, given_user, token_for
):
    prefix = f"flow{secrets.token_hex(3)}"
    fleet = {f"{prefix}-{n}": devices(f"{prefix}-{n}") for n in range(5)}

    # Find them: searchCriteria and keyset paging (2 per page).
    criteria = f"id startswith '{prefix}-'"
    assert sorted(coiote.devices.get_all(criteria).json()) == sorted(fleet)
    seen, bookmark = [], None
    while True:
        page = coiote.devices.get_device_details(criteria, ["id", "properties"], 2, bookmark)
        seen += [device.id for device in page.devices]
        bookmark = page.nextPageBookmark
        if not bookmark:
            break
    assert seen == sorted(fleet)
    first = sorted(fleet)[0]
    device = coiote.devices.get_one(first)
    assert device.properties["endpointName"] == first
    assert device.properties["lwm2mVersion"] == "1.1"
    assert device.lastRegisterTime is not None

    # Cached data model: a read through the server fills it.
    with server.admin() as http:
        assert http.get(f"/api/lwm2m/v1/clients/{first}/3/0").status_code == 200
    manufacturer = eventually(lambda: coiote.data_model.get_device_datamodel(first, ["Device."]))
    assert any(entry.name == "Device.0.Manufacturer" for entry in manufacturer)

    # Observation: the cache follows the device's notifications.
    request = SetObservationRequest([ObservationAttribute("pmin", "0")], True)
    assert coiote.observations.set_observation_on_device(first, SENSOR_NAME, request).ok
    eventually(lambda: (LwM2mPath(3303, 0, 5700),) in server.runtime.lwm2m.observed_paths(first))
    _set_temperature(server, fleet[first], 18.5)

    def sensor() -> str | None:
        entries = coiote.data_model.get_device_parameter(first, SENSOR_NAME)
        return entries[0].value if entries else None

    assert eventually(lambda: sensor() == "18.5")

    # Session: the device is asked for a Registration Update now.
    updates_before = fleet[first].stats.updates
    assert coiote.sessions.start_for_device(first).status_code in (200, 202)
    eventually(lambda: fleet[first].stats.updates > updates_before)

    # Custom object through dialects, read back by name.
    dialect = coiote.dialects.add_lwm2m_object_definition(CUSTOM_OBJECT)
    assert dialect.dialectId
    with server.admin() as http:
        volume = http.get(f"/api/lwm2m/v1/clients/{first}/33500/0/0")
    assert volume.status_code == 404  # the device doesn't have it, and says so (4.04)

    # Groups, updates and deletes.
    group = prefix
    coiote.groups.add_group(Group(group, "fleet under test"))
    update = DeviceUpdateRequest(
        addProperties={"site": "north"}, addGroups=[group], friendlyName="first one"
    )
    assert coiote.devices.update_one(first, update).status_code == 204
    updated = coiote.devices.get_one(first)
    assert updated.properties["site"] == "north" and group in updated.directGroups
    assert coiote.devices.get_all(f"directGroups eq '{group}'").json() == [first]
    last = sorted(fleet)[-1]
    assert coiote.devices.delete_one(last).status_code == 204
    assert coiote.devices.get_all(criteria).json() == sorted(fleet)[:-1]

    # Another domain sees none of it.
    other_domain = given_domain()
    outsider = given_user(domain=other_domain, roles=["Admin"], account_type="admin")
    stranger = Coiote(server.url, auth=token_for(outsider))
    try:
        assert stranger.devices.get_all(criteria).json() == []
        for call in (
            lambda: stranger.devices.get_one(first),
            lambda: stranger.data_model.get_device_datamodel(first),
            lambda: stranger.groups.get_one(group),
            lambda: stranger.observations.get_device_observation_data(first, SENSOR_NAME),
        ):
            with pytest.raises(ValueError, match="Code:\n404"):
                call()
        assert stranger.sessions.start_for_device(first).status_code == 404
        assert stranger.devices.delete_one(first).status_code == 404
    finally:
        stranger.session.close()
