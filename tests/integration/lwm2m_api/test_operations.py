"""Every LwM2M operation through the REST API against simulated 1.0 and 1.1 devices."""

from __future__ import annotations

import time
from typing import Any

import pytest

from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.simulator.objects import FirmwareState

API = "/api/lwm2m/v1/clients"
VERSIONS = ["1.0", "1.1"]


def _url(device, path: str = "") -> str:
    return f"{API}/{device.endpoint_name}{path}"


def _ok(response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()  # type: ignore[no-any-return]


def _value(lab, device, path: str) -> Any:
    node = lab.call(device.objects.read, LwM2mPath.parse(path))
    return node.value


def _eventually(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# --- registrations ----------------------------------------------------------------------


def test_can_list_registered_clients(lab, dev10, dev11):
    clients = _ok(lab.admin().get(API))
    by_name = {client["endpoint"]: client for client in clients}
    assert by_name[dev10.endpoint_name]["lwM2mVersion"] == "1.0"
    assert by_name[dev11.endpoint_name]["lwM2mVersion"] == "1.1"


def test_can_get_one_registration(lab, dev11):
    client = _ok(lab.admin().get(_url(dev11)))
    assert client["endpoint"] == dev11.endpoint_name
    assert client["queuemode"] is False and client["sleeping"] is False
    assert client["lifetime"] == dev11.lifetime
    assert client["address"].startswith("127.0.0.1:")
    assert client["transport"] == "udp" and client["secure"] is False
    assert {"url": "/3303/0", "attributes": {}} in client["objectLinks"]
    assert 112 in client["contentFormats"]


# --- discover, write, write-attributes ---------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_can_discover_an_object(lab, devices, version):
    body = _ok(lab.admin().get(_url(devices[version], "/3303/discover")))
    urls = [link["url"] for link in body["objectLinks"]]
    assert "/3303" in urls and "/3303/0" in urls and "/3303/0/5700" in urls


@pytest.mark.parametrize("version", VERSIONS)
def test_can_write_resource_replacing_it(lab, devices, version):
    device = devices[version]
    zone = f"Europe/Zone{version}"
    body = _ok(lab.admin().put(_url(device, "/3/0/15"), json={"value": zone}))
    assert body == {"status": "CHANGED(204)"}
    assert _value(lab, device, "/3/0/15") == zone
    read = _ok(lab.admin().get(_url(device, "/3/0/15")))
    assert read["content"]["value"] == zone


@pytest.mark.parametrize("version", VERSIONS)
def test_can_write_instance_partially(lab, devices, version):
    device = devices[version]
    before = _value(lab, device, "/3/0/15")
    node = {
        "kind": "instance",
        "resources": [{"id": 14, "kind": "singleResource", "type": "string", "value": "+05:00"}],
    }
    _ok(lab.admin().put(_url(device, "/3/0"), params={"replace": "false"}, json=node))
    assert _value(lab, device, "/3/0/14") == "+05:00"
    assert _value(lab, device, "/3/0/15") == before


@pytest.mark.parametrize("version", VERSIONS)
def test_can_write_instance_replacing_it(lab, devices, version):
    device = devices[version]
    node = {"resources": [{"id": 5750, "value": f"kitchen {version}"}]}
    _ok(lab.admin().put(_url(device, "/3303/0"), json=node))
    assert _value(lab, device, "/3303/0/5750") == f"kitchen {version}"


@pytest.mark.parametrize(
    ("version", "fmt"),
    [
        ("1.0", "tlv"),
        ("1.0", "text"),
        ("1.1", "cbor"),
        ("1.1", "senml-json"),
        ("1.1", "lwm2m-cbor"),
    ],
)
def test_can_write_time_resource_in_format(lab, devices, version, fmt):
    device = devices[version]
    _ok(
        lab.admin().put(
            _url(device, "/3/0/13"), params={"format": fmt}, json={"value": "2030-01-02T03:04:05Z"}
        )
    )
    content = _ok(lab.admin().get(_url(device, "/3/0/13")))["content"]
    assert abs(content["epoch"] - 1893553445) <= 2


@pytest.mark.parametrize("version", VERSIONS)
def test_can_write_opaque_resource_in_opaque_format(lab, devices, version):
    device = devices[version]
    _ok(
        lab.admin().put(
            _url(device, "/5/0/0"), params={"format": "opaque"}, json={"value": "cafe" * 8}
        )
    )
    state = _value(lab, device, "/5/0/3")
    assert state in (FirmwareState.DOWNLOADING.value, FirmwareState.DOWNLOADED.value)


def test_can_write_opaque_given_in_base64(lab, dev11):
    _ok(
        lab.admin().put(
            _url(dev11, "/5/0/0"),
            params={"format": "opaque", "opaque": "base64"},
            json={"value": "yv7K/g=="},
        )
    )


@pytest.mark.parametrize(
    "node", [{"value": 5}, {"type": "integer", "value": 5}, {"value": "x", "kind": "multiResource"}]
)
def test_a_write_of_the_wrong_type_is_refused_before_the_device(lab, dev11, node, error_body):
    answered = dev11.stats.requests_answered
    body = error_body(lab.admin().put(_url(dev11, "/3/0/15"), json=node), 400)
    assert "/3/0/15" in body["message"]
    assert dev11.stats.requests_answered == answered


@pytest.mark.parametrize("version", VERSIONS)
def test_can_write_and_clear_attributes(lab, devices, version):
    device = devices[version]
    url = _url(device, "/3303/0/5700")
    _ok(lab.admin().put(url + "/attributes", params={"pmin": "2", "pmax": "60", "gt": "30.5"}))
    links = _ok(lab.admin().get(url + "/discover"))["objectLinks"]
    assert links[0]["attributes"] == {"pmin": "2", "pmax": "60", "gt": "30.5"}
    _ok(lab.admin().put(url + "/attributes", params={"pmin": "", "gt": ""}))
    links = _ok(lab.admin().get(url + "/discover"))["objectLinks"]
    assert links[0]["attributes"] == {"pmax": "60"}
    _ok(lab.admin().put(url + "/attributes", params={"pmax": ""}))


@pytest.mark.parametrize("query", [{"pmin": "-1"}, {"colour": "red"}, {"pmin": "9", "pmax": "3"}])
def test_bad_attributes_are_refused(lab, dev11, query, error_body):
    error_body(lab.admin().put(_url(dev11, "/3303/0/5700/attributes"), params=query), 400)


# --- execute, create, delete ----------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_can_execute_with_arguments(lab, devices, version):
    device = devices[version]
    lab.call(device.set_temperature, 40.0)
    lab.call(device.set_temperature, 20.0)
    body = _ok(
        lab.admin().post(
            _url(device, "/3303/0/5605"),
            content="0='now',1",
            headers={"content-type": "text/plain"},
        )
    )
    assert body == {"status": "CHANGED(204)"}
    assert _value(lab, device, "/3303/0/5602") == 20.0


def test_execute_arguments_the_device_refuses_pass_its_4_00(lab, dev11, error_body):
    body = error_body(lab.admin().post(_url(dev11, "/3303/0/5605"), content="not args"), 400)
    assert "4.00" in body["message"]


@pytest.mark.parametrize("version", VERSIONS)
def test_can_create_and_delete_an_instance(lab, devices, version, error_body):
    device = devices[version]
    created = _ok(
        lab.admin().post(
            _url(device, "/3303"),
            json={"kind": "instance", "resources": [{"id": 5750, "value": "attic"}]},
        ),
        201,
    )
    assert created["status"] == "CREATED(201)"
    location = created["location"]
    assert location.startswith("/3303/") and location != "/3303/0"
    read = _ok(lab.admin().get(_url(device, location + "/5750")))
    assert read["content"]["value"] == "attic"
    assert _ok(lab.admin().delete(_url(device, location))) == {"status": "DELETED(202)"}
    error_body(lab.admin().get(_url(device, location)), 404)


def test_can_create_an_instance_with_a_chosen_id(lab, dev11):
    created = _ok(
        lab.admin().post(
            _url(dev11, "/3303/7"), json={"resources": [{"id": 5750, "value": "shed"}]}
        ),
        201,
    )
    assert created["location"] == "/3303/7"
    _ok(lab.admin().delete(_url(dev11, "/3303/7")))


# --- composite (LwM2M 1.1) ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["senml-json", "senml-cbor", "lwm2m-cbor"])
def test_can_read_composite_in_format(lab, dev11, fmt):
    lab.call(dev11.set_temperature, 21.5)
    body = _ok(
        lab.admin().get(
            _url(dev11, "/composite"), params={"paths": "/3/0/0,/3303/0/5700", "format": fmt}
        )
    )
    content = body["content"]
    assert content["/3/0/0"]["value"] == _value(lab, dev11, "/3/0/0")
    assert content["/3303/0/5700"] == {
        "id": 5700,
        "kind": "singleResource",
        "type": "float",
        "value": 21.5,
    }


@pytest.mark.parametrize("fmt", ["senml-json", "senml-cbor", "lwm2m-cbor"])
def test_can_write_composite_in_format(lab, dev11, fmt):
    body = {
        "/3/0/14": {"value": f"+0{len(fmt) % 9}:00"},
        "/3303/0/5750": {"kind": "singleResource", "type": "string", "value": fmt},
    }
    _ok(lab.admin().put(_url(dev11, "/composite"), params={"format": fmt}, json=body))
    assert _value(lab, dev11, "/3303/0/5750") == fmt
    assert _value(lab, dev11, "/3/0/14") == f"+0{len(fmt) % 9}:00"


def test_composite_needs_lwm2m_1_1(lab, dev10, error_body):
    response = lab.admin().get(_url(dev10, "/composite"), params={"paths": "/3/0/0"})
    assert "1.1" in error_body(response, 400)["message"]


# --- observe, notifications, cancel -----------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_notifications_update_the_value_cache_and_reach_sse(lab, devices, version):
    device = devices[version]
    ep = device.endpoint_name
    with lab.events(ep=ep) as events:
        observed = _ok(lab.admin().post(_url(device, "/3303/0/5700/observe")))
        assert observed["content"]["kind"] == "singleResource"
        lab.call(device.set_temperature, 33.25)
        event = events.next("NOTIFICATION", lambda data: data["val"]["value"] == 33.25)
        assert event == {
            "ep": ep,
            "kind": "single",
            "res": "/3303/0/5700",
            "val": {"id": 5700, "kind": "singleResource", "type": "float", "value": 33.25},
        }

    def cached() -> Any:
        values = lab.run(lab.runtime.lwm2m.cached_values(ep, LwM2mPath(3303, 0, 5700)))
        return values[LwM2mPath(3303, 0, 5700)].value

    _eventually(lambda: cached() == 33.25)
    assert _ok(lab.admin().delete(_url(device, "/3303/0/5700/observe")))["cancelled"] is True
    _eventually(lambda: not device.observations)


def test_passive_cancel_ends_the_observation_at_the_next_notification(lab):
    """aiocoap still takes the first notification after the cancel and answers the second
    (if confirmable) with RST; a non-confirmable one it ignores, so such a device would
    notify on. No NOTIFICATION event comes out either way."""
    device = lab.device("api-passive-cancel", "1.1", confirmable_notifications=True)
    url = _url(device, "/3303/0/5700/observe")
    _ok(lab.admin().post(url))
    assert len(device.observations) == 1
    body = _ok(lab.admin().delete(url, params={"active": "false"}))
    assert body == {"cancelled": True, "active": False}
    assert len(device.observations) == 1
    with lab.events(ep=device.endpoint_name) as events:
        for step in range(1, 4):
            lab.call(device.set_temperature, 12.0 + step)
            time.sleep(0.1)
        _eventually(lambda: not device.observations)
        assert not [e for e in events.drain(0.2) if e[0] == "NOTIFICATION"]


def test_cancelling_what_is_not_observed_is_404(lab, dev11, error_body):
    error_body(lab.admin().delete(_url(dev11, "/3/0/9/observe")), 404)


def test_composite_observation_notifies_and_cancels(lab, dev11):
    params = {"paths": "/3303/0/5700,/3/0/9"}
    with lab.events(ep=dev11.endpoint_name) as events:
        body = _ok(lab.admin().post(_url(dev11, "/composite/observe"), params=params))
        assert set(body["content"]) == {"/3303/0/5700", "/3/0/9"}
        lab.call(dev11.set_temperature, 27.75)
        event = events.next("NOTIFICATION", lambda data: data["kind"] == "composite")
        assert event["paths"] == ["/3303/0/5700", "/3/0/9"]
        assert event["val"]["/3303/0/5700"]["value"] == 27.75
    _ok(lab.admin().delete(_url(dev11, "/composite/observe"), params=params))
    _eventually(lambda: not dev11.observations)


# --- events of the registration lifecycle and Send -----------------------------------------


def test_registration_update_send_and_deregistration_reach_sse(lab):
    with lab.events() as events:
        device = lab.device("api-lifecycle", "1.1")
        registered = events.next("REGISTRATION", lambda d: d["endpoint"] == "api-lifecycle")
        assert registered["lwM2mVersion"] == "1.1"
        lab.run(device.update())
        events.next("UPDATED", lambda d: d["endpoint"] == "api-lifecycle")
        lab.call(device.set_temperature, 18.5)
        lab.run(device.send(["/3303/0/5700"]))
        sent = events.next("SEND", lambda d: d["ep"] == "api-lifecycle")
        assert sent["val"]["/3303/0/5700"]["value"] == 18.5
        lab.run(device.stop())
        gone = events.next("DEREGISTRATION", lambda d: d["endpoint"] == "api-lifecycle")
        assert gone["expired"] is False


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/3/0/200", 404),
        ("get", "/42", 404),
        ("delete", "/3/0", 405),
        ("post", "/3/0/0", 405),
        ("put", "/3/0/0", 405),
    ],
)
def test_device_error_codes_pass_through(lab, dev11, method, path, status, error_body):
    kwargs = {"json": {"value": "x"}} if method == "put" else {}
    response = getattr(lab.admin(), method)(_url(dev11, path), **kwargs)
    body = error_body(response, status)
    assert f"{status // 100}.{status % 100:02d}" in body["message"]


@pytest.mark.parametrize(
    "path", ["/clients/nobody", "/clients/nobody/3/0/0", "/clients/nobody/3/0/0/discover"]
)
def test_unknown_endpoint_is_404(lab, path, error_body):
    error_body(lab.admin().get(f"/api/lwm2m/v1{path}"), 404)


@pytest.mark.parametrize("path", ["/3/x/1", "/70000", "/3/0/1/2/3", "/03/0", "/"])
def test_bad_paths_are_400(lab, dev11, path, error_body):
    error_body(lab.admin().get(_url(dev11, path)), 400)


@pytest.mark.parametrize("params", [{"format": "xml"}, {"timeout": "0"}, {"timeout": "soon"}])
def test_bad_query_parameters_are_400(lab, dev11, params, error_body):
    error_body(lab.admin().get(_url(dev11, "/3/0/0"), params=params), 400)
