"""A simulated device against a minimal aiocoap LwM2M server, for LwM2M 1.0 and 1.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiocoap import Message
from aiocoap.numbers.codes import Code
from fake_lwm2m_server import FAST, FakeLwM2mServer

from meadowlark.lwm2m.codec import registry, senml_cbor, senml_json
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.codec.link_format import (
    attributes_by_path,
    decode_links,
    parse_registration_links,
)
from meadowlark.lwm2m.node import ObjectInstance, ResourceType, SingleResource
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.simulator import DeviceState, SimulatedDevice
from meadowlark.simulator.objects import models

pytestmark = pytest.mark.anyio

P = LwM2mPath.parse
ALL_FORMATS = [
    ContentFormat.TLV,
    ContentFormat.SENML_JSON,
    ContentFormat.SENML_CBOR,
    ContentFormat.LWM2M_CBOR,
    ContentFormat.OMA_JSON,
]


@pytest.fixture(params=["1.0", "1.1"])
async def device(request, lwm2m_server: FakeLwM2mServer) -> AsyncIterator[SimulatedDevice]:
    formats = ALL_FORMATS if request.param == "1.1" else [ContentFormat.TLV, *ALL_FORMATS[1:]]
    simulated = SimulatedDevice(
        "dev-1",
        lwm2m_server.uri,
        lwm2m_version=request.param,
        lifetime=120,
        content_formats=formats,
        timing=FAST,
    )
    await simulated.start()
    try:
        yield simulated
    finally:
        await simulated.stop()


async def ask(server: FakeLwM2mServer, device: SimulatedDevice, method: Code, path: str, **kw):
    return await server.request(device.local_address, method, path, **kw)


async def test_registers_with_the_query_and_links_the_spec_describes(
    lwm2m_server: FakeLwM2mServer, device: SimulatedDevice
) -> None:
    register = lwm2m_server.of(Code.POST, "rd")[0]
    version = device.lwm2m_version
    assert register.path == ("rd",)
    assert register.query == ("ep=dev-1", "lt=120", f"lwm2m={version}", "b=U")
    assert register.content_format == ContentFormat.LINK_FORMAT
    announced = parse_registration_links(register.payload)
    assert sorted(announced.objects) == [1, 3, 4, 5, 3303]
    assert all(entry.instances == (0,) for entry in announced.objects.values())
    if version == "1.1":
        assert register.payload.startswith(b'</>;rt="oma.lwm2m";ct=11542,')
        assert announced.content_formats == (ContentFormat.TLV,)
        assert announced.objects[1].version == "1.1"
    else:
        assert not register.payload.startswith(b"</>")
        assert announced.content_formats == ()
        assert all(entry.version is None for entry in announced.objects.values())
    assert device.state is DeviceState.REGISTERED
    assert device.location == ("rd", "r1")


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize("target", ["/3/0", "/3303", "/3/0/11", "/1/0/1"])
async def test_can_read_in_every_multi_value_format(
    lwm2m_server: FakeLwM2mServer, device: SimulatedDevice, fmt: int, target: str
) -> None:
    response = await ask(lwm2m_server, device, Code.GET, target, accept=fmt)
    assert response.code == Code.CONTENT
    assert response.opt.content_format == fmt
    decoded = registry.decode(fmt, response.payload, P(target), models())
    expected = device.objects.read(P(target))
    assert decoded == expected


@pytest.mark.parametrize(
    ("target", "fmt", "expected"),
    [
        ("/3/0/0", ContentFormat.TEXT, b"Meadowlark"),
        ("/3/0/11/0", ContentFormat.TEXT, b"0"),
        ("/5/0/6", ContentFormat.OPAQUE, None),
    ],
)
async def test_can_read_single_values_as_text_and_opaque(
    lwm2m_server: FakeLwM2mServer, device: SimulatedDevice, target, fmt, expected
) -> None:
    response = await ask(lwm2m_server, device, Code.GET, target, accept=fmt)
    if expected is None:
        assert response.code == Code.NOT_ACCEPTABLE  # a String is no Opaque
    else:
        assert (response.code, response.payload) == (Code.CONTENT, expected)


async def test_reads_without_accept_use_the_version_default(
    lwm2m_server: FakeLwM2mServer, device: SimulatedDevice
) -> None:
    single = await ask(lwm2m_server, device, Code.GET, "/3/0/9")
    assert (single.opt.content_format, single.payload) == (ContentFormat.TEXT, b"95")
    instance = await ask(lwm2m_server, device, Code.GET, "/3/0")
    assert instance.opt.content_format == ContentFormat.TLV


@pytest.mark.parametrize(
    ("method", "target", "options", "code"),
    [
        (Code.GET, "/5/0/0", {}, Code.METHOD_NOT_ALLOWED),
        (Code.GET, "/3/7", {}, Code.NOT_FOUND),
        (Code.GET, "/0/0", {}, Code.NOT_FOUND),
        (Code.GET, "/3/0", {"accept": 9999}, Code.NOT_ACCEPTABLE),
        (Code.PUT, "/3/0/0", {"payload": b"x", "content_format": 0}, Code.METHOD_NOT_ALLOWED),
        (Code.PUT, "/1/0/1", {"payload": b"soon", "content_format": 0}, Code.BAD_REQUEST),
        (Code.PUT, "/1/0/1", {"payload": b"60", "content_format": 50}, 143),
        (Code.POST, "/3/0/0", {}, Code.METHOD_NOT_ALLOWED),
        (Code.DELETE, "/3/0", {}, Code.METHOD_NOT_ALLOWED),
        (Code.PUT, "/3/0/9", {"uri_query": ["pmin=x"]}, Code.BAD_REQUEST),
    ],
)
async def test_refuses_what_the_spec_refuses(
    lwm2m_server: FakeLwM2mServer, device: SimulatedDevice, method, target, options, code
) -> None:
    response = await ask(lwm2m_server, device, method, target, **options)
    assert response.code == code


@pytest.mark.parametrize("fmt", [ContentFormat.TEXT, *ALL_FORMATS])
async def test_can_write_a_resource(
    lwm2m_server: FakeLwM2mServer, device: SimulatedDevice, fmt: int
) -> None:
    node = SingleResource(1, ResourceType.INTEGER, 777)
    payload = registry.encode(fmt, node, P("/1/0/1"), models())
    response = await ask(
        lwm2m_server, device, Code.PUT, "/1/0/1", payload=payload, content_format=fmt
    )
    assert response.code == Code.CHANGED
    assert device.objects.read(P("/1/0/1")) == node


async def test_partial_update_and_replace_of_an_instance(
    lwm2m_server: FakeLwM2mServer, device: SimulatedDevice
) -> None:
    fmt = device.content_formats[0]
    instance = ObjectInstance(0, {14: SingleResource(14, ResourceType.STRING, "+02:00")})
    payload = registry.encode(fmt, instance, P("/3/0"), models())
    response = await ask(
        lwm2m_server, device, Code.POST, "/3/0", payload=payload, content_format=fmt
    )
    assert response.code == Code.CHANGED
    assert device.objects.read(P("/3/0/14")).value == "+02:00"
    assert device.objects.read(P("/3/0/15")).value == "Etc/UTC"
    response = await ask(
        lwm2m_server, device, Code.PUT, "/3/0", payload=payload, content_format=fmt
    )
    assert response.code == Code.CHANGED
    missing = await ask(lwm2m_server, device, Code.GET, "/3/0/15")
    assert missing.code == Code.NOT_FOUND


async def test_execute_registration_update_trigger_sends_an_update(
    lwm2m_server: FakeLwM2mServer, device: SimulatedDevice
) -> None:
    response = await ask(lwm2m_server, device, Code.POST, "/1/0/8")
    assert response.code == Code.CHANGED
    await lwm2m_server.wait_for(lambda: bool(lwm2m_server.of(Code.POST, "rd")[1:]))
    update = lwm2m_server.of(Code.POST, "rd")[1]
    assert update.path == ("rd", "r1")
    assert update.payload == b""


async def test_execute_reboot_registers_again(
    lwm2m_server: FakeLwM2mServer, device: SimulatedDevice
) -> None:
    response = await ask(lwm2m_server, device, Code.POST, "/3/0/4", payload=b"0='now'")
    assert response.code == Code.CHANGED
    await lwm2m_server.wait_for(lambda: len(lwm2m_server.of(Code.POST, "rd")) == 2)
    assert lwm2m_server.of(Code.POST, "rd")[1].path == ("rd",)
    for _ in range(50):
        if device.location == ("rd", "r2"):
            break
        await asyncio.sleep(0.01)
    assert device.location == ("rd", "r2")


async def test_create_and_delete_an_instance_then_update_lists_it(
    lwm2m_server: FakeLwM2mServer, device: SimulatedDevice
) -> None:
    fmt = device.content_formats[0]
    instance = ObjectInstance(4, {5750: SingleResource(5750, ResourceType.STRING, "fridge")})
    payload = registry.encode(fmt, instance, P("/3303"), models())
    created = await ask(
        lwm2m_server, device, Code.POST, "/3303", payload=payload, content_format=fmt
    )
    assert created.code == Code.CREATED
    assert tuple(created.opt.location_path) == ("3303", "4")
    again = await ask(lwm2m_server, device, Code.POST, "/3303", payload=payload, content_format=fmt)
    assert again.code == Code.BAD_REQUEST
    await device.update()
    update = lwm2m_server.of(Code.POST, "rd")[-1]
    assert parse_registration_links(update.payload).objects[3303].instances == (0, 4)
    deleted = await ask(lwm2m_server, device, Code.DELETE, "/3303/4")
    assert deleted.code == Code.DELETED
    assert device.objects.instance_ids(3303) == [0]


async def test_write_attributes_show_in_discover(
    lwm2m_server: FakeLwM2mServer, device: SimulatedDevice
) -> None:
    response = await ask(
        lwm2m_server, device, Code.PUT, "/3303/0/5700", uri_query=["pmin=2", "pmax=30", "st=0.5"]
    )
    assert response.code == Code.CHANGED
    discovered = await ask(lwm2m_server, device, Code.GET, "/3303/0", accept=40)
    assert discovered.opt.content_format == ContentFormat.LINK_FORMAT
    attributes = attributes_by_path(decode_links(discovered.payload))
    assert attributes[P("/3303/0/5700")] == {"pmin": "2", "pmax": "30", "st": "0.5"}
    assert attributes[P("/3303/0")] == {}


async def test_observe_notifies_on_changes_per_step_attribute(
    lwm2m_server: FakeLwM2mServer, device: SimulatedDevice
) -> None:
    await ask(lwm2m_server, device, Code.PUT, "/3303/0/5700", uri_query=["st=1"])
    uri = f"coap://127.0.0.1:{device.local_address[1]}/3303/0/5700"
    request = lwm2m_server.context.request(Message(code=Code.GET, observe=0, uri=uri))
    first = await asyncio.wait_for(request.response, 5)
    assert first.code == Code.CONTENT and first.opt.observe is not None
    values = []

    async def collect() -> None:
        async for notification in request.observation:
            values.append(float(notification.payload))
            if len(values) == 2:
                return

    collector = asyncio.create_task(collect())
    device.set_temperature(21.9)  # below the step: no notification
    await asyncio.sleep(0.05)
    device.set_temperature(23.0)
    device.set_temperature(21.0)
    await asyncio.wait_for(collector, 5)
    assert values == [23.0, 21.0]
    assert device.stats.notifications_sent == 2
    request.observation.cancel()
    device.confirmable_notifications = True
    for temperature in (30.0, 40.0, 50.0):  # aiocoap answers with RST once it forgot the token
        device.set_temperature(temperature)
        await asyncio.sleep(0.2)
        if not device.observations:
            break
    assert device.observations == []


async def test_observe_pmax_notifies_without_change(
    lwm2m_server: FakeLwM2mServer, device: SimulatedDevice
) -> None:
    await ask(lwm2m_server, device, Code.PUT, "/3/0/9", uri_query=["pmin=0", "pmax=1"])
    uri = f"coap://127.0.0.1:{device.local_address[1]}/3/0/9"
    request = lwm2m_server.context.request(Message(code=Code.GET, observe=0, uri=uri))
    await asyncio.wait_for(request.response, 5)
    notification = await asyncio.wait_for(request.observation.__aiter__().__anext__(), 5)
    assert notification.payload == b"95"
    request.observation.cancel()


async def test_deregisters_on_stop(lwm2m_server: FakeLwM2mServer, device: SimulatedDevice) -> None:
    await device.stop()
    assert lwm2m_server.received[-1].code == Code.DELETE
    assert lwm2m_server.received[-1].path == ("rd", "r1")
    assert device.state is DeviceState.STOPPED


async def test_composite_operations_and_send_on_1_1(lwm2m_server: FakeLwM2mServer) -> None:
    device = SimulatedDevice("dev-c", lwm2m_server.uri, timing=FAST)
    await device.start()
    try:
        paths = [P("/3/0/0"), P("/3303/0/5700")]
        read = await ask(
            lwm2m_server,
            device,
            Code.FETCH,
            "/",
            payload=senml_json.encode_paths(paths),
            content_format=ContentFormat.SENML_JSON,
            accept=ContentFormat.SENML_CBOR,
        )
        assert read.code == Code.CONTENT
        nodes = senml_cbor.decode_composite(read.payload, models())
        assert nodes[P("/3/0/0")].value == "Meadowlark"
        values = {P("/1/0/1"): SingleResource(1, ResourceType.INTEGER, 99)}
        written = await ask(
            lwm2m_server,
            device,
            Code.iPATCH,
            "/",
            payload=senml_cbor.encode_composite(values, models()),
            content_format=ContentFormat.SENML_CBOR,
        )
        assert written.code == Code.CHANGED
        assert device.objects.read(P("/1/0/1")).value == 99
        code = await device.send(["/3303/0/5700"])
        assert code == Code.CHANGED
        sent = lwm2m_server.of(Code.POST, "dp")[0]
        assert sent.content_format == ContentFormat.SENML_CBOR
        assert P("/3303/0/5700") in senml_cbor.decode_composite(sent.payload, models())
    finally:
        await device.stop()


async def test_retries_with_the_fallback_version_on_4_12(lwm2m_server: FakeLwM2mServer) -> None:
    lwm2m_server.register_answers.append(Code.PRECONDITION_FAILED)
    device = SimulatedDevice(
        "dev-v", lwm2m_server.uri, lwm2m_version="1.2", fallback_lwm2m_version="1.1", timing=FAST
    )
    await device.start()
    try:
        queries = [r.query for r in lwm2m_server.of(Code.POST, "rd")]
        assert [q[2] for q in queries] == ["lwm2m=1.2", "lwm2m=1.1"]
        assert device.lwm2m_version == "1.1"
    finally:
        await device.stop()
