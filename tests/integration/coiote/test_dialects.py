# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""dialects/addObject: custom object definitions, used at once to decode device data."""

from __future__ import annotations

import secrets

import pytest
from coiote.v3.model.dialects import Dialect

from lwm2m_harness import coiote, devices, eventually, server  # noqa: F401 - fixtures
from meadowlark.lwm2m.model import parse_ddf
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.simulator import DeviceObjects

BASE = "/api/coiotedm/v3"
XML = {"Content-Type": "text/xml"}


def ddf(object_id: int, name: str = "Custom Sensor", reading_type: str = "Integer") -> str:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<LWM2M xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <Object ObjectType="MODefinition">
    <Name>{name}</Name>
    <Description1>A sensor only this test knows</Description1>
    <ObjectID>{object_id}</ObjectID>
    <ObjectURN>urn:oma:lwm2m:x:{object_id}</ObjectURN>
    <LWM2MVersion>1.1</LWM2MVersion>
    <ObjectVersion>1.0</ObjectVersion>
    <MultipleInstances>Multiple</MultipleInstances>
    <Mandatory>Optional</Mandatory>
    <Resources>
      <Item ID="0"><Name>Label</Name><Operations>R</Operations>
        <MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory>
        <Type>String</Type><RangeEnumeration></RangeEnumeration><Units></Units>
        <Description>Where it is</Description></Item>
      <Item ID="1"><Name>Reading</Name><Operations>R</Operations>
        <MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory>
        <Type>{reading_type}</Type><RangeEnumeration>0..1000</RangeEnumeration>
        <Units>ppm</Units><Description>Latest reading</Description></Item>
    </Resources>
  </Object>
</LWM2M>"""


SENSOR_ID = 33000
SENSOR_MODEL = parse_ddf(ddf(SENSOR_ID))[0]


class CustomSensorObjects(DeviceObjects):
    """The simulator's objects plus one instance of the custom sensor object."""

    def object_ids(self) -> list[int]:
        return [*super().object_ids(), SENSOR_ID]

    def instance_ids(self, object_id: int) -> list[int]:
        if object_id == SENSOR_ID and not self.is_materialized():
            return [0]
        return super().instance_ids(object_id)

    def _object_model(self, path: LwM2mPath):  # type: ignore[no-untyped-def]
        if path.object_id == SENSOR_ID:
            return SENSOR_MODEL
        return super()._object_model(path)

    def _initial_tree(self):  # type: ignore[no-untyped-def]
        tree = super()._initial_tree()
        tree[SENSOR_ID] = {0: {0: "unit-7", 1: 42}}
        return tree


def test_custom_object_decodes_device_data_at_once(server, coiote, devices):
    dialect = coiote.dialects.add_lwm2m_object_definition(ddf(SENSOR_ID))
    assert isinstance(dialect, Dialect) and dialect.dialectId
    endpoint = f"custom-{secrets.token_hex(4)}"
    devices(endpoint, objects=CustomSensorObjects(endpoint, server.server_uri))
    server.call(server.runtime.lwm2m.read(endpoint, LwM2mPath(SENSOR_ID, 0)))

    def cached() -> dict[str, tuple[str, str]]:
        entries = coiote.data_model.get_device_datamodel(endpoint, ["Custom Sensor."])
        return {entry.name: (entry.value, entry.type) for entry in entries}

    assert eventually(cached) == {
        "Custom Sensor.0.Label": ("unit-7", "String"),
        "Custom Sensor.0.Reading": ("42", "Integer"),
    }
    definitions = coiote.device_resources.get_defined_resources(endpoint, ["Custom Sensor"])
    assert [(d.id, d.name, d.objectVersion) for d in definitions] == [
        (SENSOR_ID, "Custom Sensor", "1.0")
    ]
    reading = definitions[0].resourceDefinitions[1]
    assert (reading.name, reading.units, reading.range, reading.description) == (
        "Reading",
        "ppm",
        "0..1000",
        "Latest reading",
    )
    data = coiote.device_resources.get_resources_data(endpoint, ["Custom Sensor.0.Reading"])
    assert [(item.path, item.value.get_value()) for item in data] == [
        ("Custom Sensor.0.Reading", "42")
    ]


def test_defining_an_object_twice_conflicts_and_put_overwrites(server, coiote):
    object_id = 33001
    first = coiote.dialects.add_lwm2m_object_definition(ddf(object_id, "Meter"))
    with pytest.raises(ValueError, match="409"):
        coiote.dialects.add_lwm2m_object_definition(ddf(object_id, "Meter"))
    again = coiote.dialects.add_lwm2m_object_definition(ddf(object_id, "Gas Meter"), overwrite=True)
    assert again.dialectId == first.dialectId
    assert server.runtime.object_models.registry_for("/root/").get_object(object_id).name == (
        "Gas Meter"
    )


def test_built_in_objects_cannot_be_redefined(server, error_body):
    with server.admin() as http:
        for method in ("POST", "PUT"):
            response = http.request(
                method, f"{BASE}/dialects/addObject", content=ddf(3), headers=XML
            )
            error_body(response, 409)


@pytest.mark.parametrize(
    "document",
    [
        "<LWM2M><Object>",
        "not xml at all",
        ddf(0),
        ddf(65535),
        "<LWM2M></LWM2M>",
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><LWM2M/>',
        ddf(33002, reading_type="Decimal"),
        ddf(33003) + ddf(33004),
    ],
)
def test_invalid_definitions_are_400_with_code_4042(server, error_body, document):
    with server.admin() as http:
        response = http.post(f"{BASE}/dialects/addObject", content=document, headers=XML)
    assert error_body(response, 400)["code"] == 4042


def test_definitions_must_be_sent_as_xml(server, error_body):
    with server.admin() as http:
        response = http.post(f"{BASE}/dialects/addObject", json={"xml": ddf(33005)})
    error_body(response, 400)


def test_custom_objects_belong_to_a_domain(
    server,
    given_domain,
    given_user,
    token_for,
):
    object_id = 33006
    first = given_domain()
    second = given_domain()
    for domain in (first, second):
        login = given_user(domain=domain, permissions=["POST dialects/addObject"])
        with server.client(token_for(login)) as http:
            response = http.post(f"{BASE}/dialects/addObject", content=ddf(object_id), headers=XML)
        assert response.status_code == 201, response.text
    catalog = server.runtime.object_models
    assert catalog.registry_for(first).get_object(object_id) is not None
    assert catalog.registry_for("/root/").get_object(object_id) is None
    assert catalog.registry_for(first + "child/").get_object(object_id) is not None
