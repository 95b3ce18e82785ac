"""Read through REST in every content format each device supports, LwM2M 1.0 and 1.1
(after Leshan's ReadSingleValueTest / ReadMultiValueTest matrices)."""

from __future__ import annotations

from typing import Any

import pytest

from meadowlark.api.lwm2m_json import node_to_json
from meadowlark.lwm2m.path import LwM2mPath

SINGLE_VALUE = {
    "1.0": ["text", "tlv", "oma-json"],
    "1.1": ["text", "cbor", "tlv", "oma-json", "senml-json", "senml-cbor", "lwm2m-cbor"],
}
MULTI_VALUE = {
    "1.0": ["tlv", "oma-json"],
    "1.1": ["tlv", "oma-json", "senml-json", "senml-cbor", "lwm2m-cbor"],
}
CLOCK = 13
"""/3/0/13 Current Time ticks between the device's read and ours: compared by type only."""


def _cases(table: dict[str, list[str]]) -> list[Any]:
    return [
        pytest.param(version, fmt, id=f"{version}-{fmt}")
        for version, formats in table.items()
        for fmt in formats
    ]


def _read(lab, device, path: str, fmt: str) -> dict[str, Any]:
    with lab.admin() as http:
        response = http.get(
            f"/api/lwm2m/v1/clients/{device.endpoint_name}{path}", params={"format": fmt}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "CONTENT(205)"
    return body["content"]  # type: ignore[no-any-return]


def _expected(lab, device, path: str) -> dict[str, Any]:
    return node_to_json(lab.call(device.objects.read, LwM2mPath.parse(path)))


def _by_id(items: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {item["id"]: item for item in items}


def _without_clock(instance: dict[str, Any]) -> dict[int, dict[str, Any]]:
    resources = _by_id(instance["resources"])
    clock = resources.pop(CLOCK, None)
    if clock is not None:
        assert clock["type"] == "time" and isinstance(clock["epoch"], int)
    return resources


@pytest.mark.parametrize(("version", "fmt"), _cases(SINGLE_VALUE))
def test_can_read_resource_in_format(lab, devices, version, fmt):
    device = devices[version]
    content = _read(lab, device, "/3/0/0", fmt)
    assert content == _expected(lab, device, "/3/0/0")
    assert content["kind"] == "singleResource" and content["type"] == "string"


@pytest.mark.parametrize(("version", "fmt"), _cases(SINGLE_VALUE))
def test_can_read_integer_resource_as_json_number_in_format(lab, devices, version, fmt):
    content = _read(lab, devices[version], "/3/0/9", fmt)
    assert content["type"] == "integer" and isinstance(content["value"], int)


@pytest.mark.parametrize(("version", "fmt"), _cases(SINGLE_VALUE))
def test_can_read_resource_instance_in_format(lab, devices, version, fmt):
    device = devices[version]
    content = _read(lab, device, "/3/0/6/1", fmt)
    assert content == {"id": 1, "kind": "resourceInstance", "type": "integer", "value": 5}


@pytest.mark.parametrize(("version", "fmt"), _cases(MULTI_VALUE))
def test_can_read_multi_resource_in_format(lab, devices, version, fmt):
    device = devices[version]
    content = _read(lab, device, "/3/0/6", fmt)
    assert content == _expected(lab, device, "/3/0/6")
    assert content["values"] == {"0": 1, "1": 5}


@pytest.mark.parametrize(("version", "fmt"), _cases(MULTI_VALUE))
def test_can_read_instance_in_format(lab, devices, version, fmt):
    device = devices[version]
    content = _read(lab, device, "/3/0", fmt)
    assert content["kind"] == "instance" and content["id"] == 0
    assert _without_clock(content) == _without_clock(_expected(lab, device, "/3/0"))


@pytest.mark.parametrize(("version", "fmt"), _cases(MULTI_VALUE))
def test_can_read_object_in_format(lab, devices, version, fmt):
    device = devices[version]
    content = _read(lab, device, "/3303", fmt)
    expected = _expected(lab, device, "/3303")
    assert content["kind"] == "obj" and content["id"] == 3303
    assert {i["id"]: _without_clock(i) for i in content["instances"]} == {
        i["id"]: _without_clock(i) for i in expected["instances"]
    }


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_can_read_in_the_devices_preferred_format_when_none_is_asked(lab, devices, version):
    device = devices[version]
    with lab.admin() as http:
        response = http.get(f"/api/lwm2m/v1/clients/{device.endpoint_name}/1/0")
    assert response.status_code == 200, response.text
    content = response.json()["content"]
    assert _by_id(content["resources"])[1]["value"] == device.lifetime


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_reading_text_resource_as_opaque_is_refused_by_the_device(
    lab, devices, version, error_body
):
    device = devices[version]
    with lab.admin() as http:
        response = http.get(
            f"/api/lwm2m/v1/clients/{device.endpoint_name}/3/0/0", params={"format": "opaque"}
        )
    assert "4.06" in error_body(response, 406)["message"]
