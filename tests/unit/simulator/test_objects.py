"""Object semantics of a simulated device and the response codes of refused operations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiocoap.numbers.codes import Code

from meadowlark.lwm2m.codec.attributes import NotificationAttributes
from meadowlark.lwm2m.codec.link_format import format_links
from meadowlark.lwm2m.node import (
    LwM2mObject,
    MultiResource,
    ObjectInstance,
    ResourceInstance,
    ResourceType,
    SingleResource,
)
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.simulator.firmware import ImageReceiver
from meadowlark.simulator.objects import DeviceObjects, Effect, FirmwareState, OperationError


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def given_device(version: str = "1.1", clock: FakeClock | None = None) -> DeviceObjects:
    return DeviceObjects(
        "dev-1", "coap://127.0.0.1:5683", lwm2m_version=version, clock=clock or FakeClock()
    )


def path(text: str) -> LwM2mPath:
    return LwM2mPath.parse(text)


class _Refusal:
    """Asserts that the block raises ``OperationError`` with ``code``."""

    def __init__(self, code: Code) -> None:
        self.code = code

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        assert isinstance(error, OperationError), f"expected {self.code}, nothing raised"
        assert error.code == self.code, f"expected {self.code}, got {error.code}: {error}"
        return True


def test_an_idle_device_holds_no_resource_tree() -> None:
    device = given_device()
    device.set_temperature(30.0)
    device.refresh_clock()
    assert device.instance_ids(3) == [0]
    assert not device.is_materialized()


def test_can_read_device_resources() -> None:
    device = given_device()
    assert device.read(path("/3/0/0")) == SingleResource(0, ResourceType.STRING, "Meadowlark")
    error_codes = device.read(path("/3/0/11"))
    assert error_codes == MultiResource(11, ResourceType.INTEGER, {0: 0})
    assert device.read(path("/3/0/11/0")) == ResourceInstance(0, ResourceType.INTEGER, 0)
    instance = device.read(path("/3/0"))
    assert isinstance(instance, ObjectInstance)
    assert 4 not in instance.resources  # executable resources are not read
    assert isinstance(device.read(path("/3303")), LwM2mObject)


def test_current_time_changes_every_second() -> None:
    clock = FakeClock(1_700_000_000.2)
    device = given_device(clock=clock)
    first = device.read(path("/3/0/13"))
    clock.now += 1
    second = device.read(path("/3/0/13"))
    assert isinstance(first, SingleResource) and isinstance(second, SingleResource)
    assert first.value == datetime.fromtimestamp(1_700_000_000, UTC)
    assert second.value == datetime.fromtimestamp(1_700_000_001, UTC)


def test_writing_current_time_sets_the_clock_offset() -> None:
    clock = FakeClock(1_700_000_000.0)
    device = given_device(clock=clock)
    target = datetime.fromtimestamp(1_800_000_000, UTC)
    device.write(path("/3/0/13"), SingleResource(13, ResourceType.TIME, target), replace=True)
    clock.now += 5
    assert device.read(path("/3/0/13")).value == datetime.fromtimestamp(1_800_000_005, UTC)


def test_sensor_value_and_min_max_follow_readings() -> None:
    device = given_device()
    device.set_temperature(30.0)
    device.set_temperature(10.0)
    assert device.read(path("/3303/0/5700")).value == 10.0
    assert device.read(path("/3303/0/5601")).value == 10.0
    assert device.read(path("/3303/0/5602")).value == 30.0
    assert device.execute(path("/3303/0/5605")) is Effect.NONE
    assert device.read(path("/3303/0/5602")).value == 10.0


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("/5/0/0", Code.METHOD_NOT_ALLOWED),  # write-only package
        ("/3/0/4", Code.METHOD_NOT_ALLOWED),  # executable
        ("/3/0/99", Code.NOT_FOUND),
        ("/3/1", Code.NOT_FOUND),
        ("/42", Code.NOT_FOUND),
        ("/0/0", Code.NOT_FOUND),  # the Security object is not for DM servers
        ("/1/0/3", Code.NOT_FOUND),  # optional resource not present
        ("/", Code.METHOD_NOT_ALLOWED),
    ],
)
def test_read_refusals(target: str, code: Code) -> None:
    with _Refusal(code):
        given_device().read(path(target))


def test_can_write_and_replace_resources() -> None:
    device = given_device()
    lifetime = SingleResource(1, ResourceType.INTEGER, 600)
    device.write(path("/1/0/1"), lifetime, replace=True)
    assert device.read(path("/1/0/1")).value == 600
    assert device.lifetime == 600
    device.write(
        path("/1/0"),
        ObjectInstance(0, {3: SingleResource(3, ResourceType.INTEGER, 60)}),
        replace=False,
    )
    assert device.read(path("/1/0/3")).value == 60
    assert device.default_periods() == (0, 60)


def test_partial_update_adds_resource_instances_and_replace_swaps_them() -> None:
    device = given_device()
    apn = MultiResource(7, ResourceType.STRING, {1: "iot"})
    instance = ObjectInstance(0, {7: apn})
    with _Refusal(Code.METHOD_NOT_ALLOWED):  # /4/0/7 is read-only
        device.write(path("/4/0"), instance, replace=False)
    device.write(path("/3/0/14"), SingleResource(14, ResourceType.STRING, "+01:00"), replace=True)
    assert device.read(path("/3/0/14")).value == "+01:00"


@pytest.mark.parametrize(
    ("target", "node", "code"),
    [
        ("/3/0/0", SingleResource(0, ResourceType.STRING, "x"), Code.METHOD_NOT_ALLOWED),
        ("/3/0/99", SingleResource(99, ResourceType.STRING, "x"), Code.NOT_FOUND),
        ("/1/0/1", SingleResource(1, ResourceType.STRING, "soon"), Code.BAD_REQUEST),
        ("/3", LwM2mObject(3), Code.METHOD_NOT_ALLOWED),
        ("/3/0/14", SingleResource(15, ResourceType.STRING, "x"), Code.BAD_REQUEST),
    ],
)
def test_write_refusals(target: str, node, code: Code) -> None:
    with _Refusal(code):
        given_device().write(path(target), node, replace=True)


def test_execute_effects_and_refusals() -> None:
    device = given_device()
    assert device.execute(path("/3/0/4")) is Effect.REBOOT
    assert device.execute(path("/1/0/8")) is Effect.REGISTRATION_UPDATE
    assert device.execute(path("/3/0/4"), b"0='now',1") is Effect.REBOOT
    with _Refusal(Code.METHOD_NOT_ALLOWED):
        device.execute(path("/3/0/0"))
    with _Refusal(Code.METHOD_NOT_ALLOWED):
        device.execute(path("/3/0"))
    with _Refusal(Code.BAD_REQUEST):
        device.execute(path("/3/0/4"), b"not arguments")
    with _Refusal(Code.NOT_FOUND):
        device.execute(path("/1/0/4"))  # Disable is defined but not implemented


def test_firmware_update_goes_through_its_states() -> None:
    device = given_device()
    with _Refusal(Code.METHOD_NOT_ALLOWED):
        device.execute(path("/5/0/2"))
    uri = SingleResource(1, ResourceType.STRING, "coap://fw.example/image")
    assert device.write(path("/5/0/1"), uri, replace=True) is Effect.FIRMWARE_DOWNLOAD
    assert device.read(path("/5/0/3")).value == FirmwareState.DOWNLOADING
    received = ImageReceiver()
    received.feed(b"an image")
    device.firmware_downloaded(received, expected_size=8)
    assert device.read(path("/5/0/3")).value == FirmwareState.DOWNLOADED
    assert device.execute(path("/5/0/2")) is Effect.FIRMWARE_UPDATE
    device.finish_firmware_update()
    assert device.read(path("/5/0/3")).value == FirmwareState.IDLE
    assert device.read(path("/5/0/5")).value == 1
    assert device.read(path("/3/0/3")).value == "1.0.1"


def test_create_and_delete_instances() -> None:
    device = given_device()
    new = ObjectInstance(1, {5750: SingleResource(5750, ResourceType.STRING, "freezer")})
    assert device.create(3303, new) == 1
    assert device.instance_ids(3303) == [0, 1]
    assert device.read(path("/3303/1/5750")).value == "freezer"
    with _Refusal(Code.BAD_REQUEST):
        device.create(3303, new)
    with _Refusal(Code.BAD_REQUEST):
        device.create(3, ObjectInstance(1))
    device.delete(path("/3303/1"))
    assert device.instance_ids(3303) == [0]
    with _Refusal(Code.NOT_FOUND):
        device.delete(path("/3303/1"))


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("/3/0", Code.METHOD_NOT_ALLOWED),
        ("/1/0", Code.METHOD_NOT_ALLOWED),
        ("/3303", Code.METHOD_NOT_ALLOWED),
        ("/3303/0/5700", Code.METHOD_NOT_ALLOWED),
        ("/0/0", Code.NOT_FOUND),
    ],
)
def test_delete_refusals(target: str, code: Code) -> None:
    with _Refusal(code):
        given_device().delete(path(target))


def test_registration_links_per_version() -> None:
    modern = format_links(given_device("1.1").registration_links(112))
    assert modern == (
        '</>;rt="oma.lwm2m";ct=112,</1>;ver=1.1,</1/0>,</3>;ver=1.1,</3/0>,</4>;ver=1.2,'
        "</4/0>,</5>;ver=1.1,</5/0>,</3303>;ver=1.1,</3303/0>"
    )
    legacy = format_links(given_device("1.0").registration_links(None))
    assert legacy == "</1/0>,</3/0>,</4/0>,</5/0>,</3303/0>"


def test_discover_lists_attributes_and_dimensions() -> None:
    device = given_device()
    device.write_attributes(path("/3/0"), NotificationAttributes(pmin=10))
    device.write_attributes(path("/3/0/11"), NotificationAttributes(pmax=60))
    links = format_links(device.discover(path("/3/0/11")))
    assert links == "</3/0/11>;dim=1;pmax=60,</3/0/11/0>"
    instance_links = format_links(device.discover(path("/3/0")))
    assert instance_links.startswith("</3/0>;pmin=10,</3/0/0>,")
    assert format_links(device.discover(path("/3")))[:18] == "</3>;ver=1.1,</3/0"


def test_write_attributes_merge_clear_and_refuse_conflicts() -> None:
    device = given_device()
    target = path("/3303/0/5700")
    device.write_attributes(target, NotificationAttributes(pmin=5, st=0.5))
    device.write_attributes(target, NotificationAttributes(pmax=50, cleared=frozenset({"st"})))
    assert device.attributes_at(target) == NotificationAttributes(pmin=5, pmax=50)
    with _Refusal(Code.BAD_REQUEST):
        device.write_attributes(target, NotificationAttributes(pmin=100))
    with _Refusal(Code.NOT_FOUND):
        device.write_attributes(path("/3303/7"), NotificationAttributes(pmin=1))
    assert [a.pmin for a in device.attribute_chain(target)] == [5]
