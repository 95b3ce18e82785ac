"""Devices talking to the real CoAP server: registration, operations, queue mode."""

from __future__ import annotations

import asyncio

import pytest
from aiocoap import Code, Context, Message
from fake_device import FakeDevice
from sqlalchemy import select

from meadowlark.lwm2m.node import ResourceType, SingleResource, time_from_epoch
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.errors import DeviceErrorResponse, RequestQueuedError
from meadowlark.server.service import ServerListener
from meadowlark.store.device_models import Device, ResourceValue

pytestmark = pytest.mark.anyio
OBJECTS = b'</>;rt="oma.lwm2m";ct=0,</1/0>,</3/0>'
MANUFACTURER = LwM2mPath(3, 0, 0)
TIME = LwM2mPath(3, 0, 13)


@pytest.fixture
async def device():
    fake = FakeDevice()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


async def register(lwm2m, device, query: str = "ep=dev1&lt=60&lwm2m=1.1") -> Message:
    response = await device.request(Code.POST, f"{lwm2m.rd}?{query}", OBJECTS)
    assert response.code == Code.CREATED, response.payload
    return response


async def eventually(check, within: float = 2.0):
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.02)


async def test_can_register_update_and_deregister(lwm2m, device):
    response = await register(lwm2m, device)
    location = "/".join(response.opt.location_path)
    assert location.startswith("rd/")
    base = f"coap://127.0.0.1:{lwm2m.port}/{location}"
    assert (await device.request(Code.POST, f"{base}?lt=120", b"")).code == Code.CHANGED
    registration = await lwm2m.server.get_registration("dev1")
    assert registration is not None and registration.lifetime == 120
    async with lwm2m.db.session() as session:
        stored = await session.get(Device, "dev1")
    assert stored is not None and stored.domain_id == "/root/" and stored.lifetime == 120
    assert (await device.request(Code.DELETE, base)).code == Code.DELETED
    assert (await device.request(Code.DELETE, base)).code == Code.NOT_FOUND
    assert await lwm2m.server.get_registration("dev1") is None


async def test_reregistration_invalidates_the_old_location(lwm2m, device):
    old = "/".join((await register(lwm2m, device)).opt.location_path)
    await register(lwm2m, device)
    update = await device.request(Code.POST, f"coap://127.0.0.1:{lwm2m.port}/{old}", b"")
    assert update.code == Code.NOT_FOUND


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("lt=60", Code.BAD_REQUEST),
        ("ep=dev1&lt=zero", Code.BAD_REQUEST),
        ("ep=dev1&lwm2m=1.3", Code.PRECONDITION_FAILED),
        ("ep=dev1&lwm2m=2.0", Code.PRECONDITION_FAILED),
    ],
)
async def test_refuses_bad_registrations(lwm2m, device, query, code):
    response = await device.request(Code.POST, f"{lwm2m.rd}?{query}", OBJECTS)
    assert response.code == code


async def test_refuses_blacklisted_devices_with_4_03(lwm2m, device):
    await register(lwm2m, device)
    async with lwm2m.db.transaction() as session:
        (await session.get(Device, "dev1")).blacklisted = True
    response = await device.request(Code.POST, f"{lwm2m.rd}?ep=dev1", OBJECTS)
    assert response.code == Code.FORBIDDEN


async def test_reassembles_a_registration_sent_in_32_byte_blocks(lwm2m, device):
    objects = b'</>;rt="oma.lwm2m";ct=0,' + b",".join(
        f"</{object_id}/0>".encode() for object_id in range(3300, 3330)
    )
    message = Message(code=Code.POST, uri=f"{lwm2m.rd}?ep=blocky&lwm2m=1.1", payload=objects)
    message.opt.content_format = 40
    assert device.context is not None
    await device.context.find_remote_and_interface(message)
    message.remote.maximum_block_size_exp = 1  # 32-byte blocks
    response = await device.context.request(message).response
    assert response.code == Code.CREATED
    registration = await lwm2m.server.get_registration("blocky")
    assert registration is not None and len(registration.objects.objects) == 30


async def test_can_read_write_and_execute(lwm2m, device):
    await register(lwm2m, device)
    server = lwm2m.server
    node = await server.read("dev1", MANUFACTURER)
    assert node == SingleResource(0, ResourceType.STRING, "Meadowlark Labs")
    await server.write("dev1", LwM2mPath(1, 0, 1), SingleResource(1, ResourceType.INTEGER, 600))
    assert device.lifetime.value == "600"
    await server.execute("dev1", LwM2mPath(3, 0, 4), "0='now'")
    assert device.reboot.calls == [b"0='now'"]
    with pytest.raises(DeviceErrorResponse) as caught:
        await server.read("dev1", LwM2mPath(3, 0, 99))
    assert caught.value.http_status == 404

    async def manufacturer_stored():
        async with lwm2m.db.session() as session:
            device_row = await session.get(Device, "dev1")
            return device_row is not None and device_row.manufacturer == "Meadowlark Labs"

    assert await eventually(manufacturer_stored)


async def test_large_values_travel_block_wise_both_ways(lwm2m, device):
    """A 3 KB value: the Write goes out in Block1 blocks, the Read comes back in Block2."""
    await register(lwm2m, device)
    large = "".join(chr(ord("a") + i % 26) for i in range(3000))
    timezone = LwM2mPath(3, 0, 15)
    await lwm2m.server.write("dev1", timezone, SingleResource(15, ResourceType.STRING, large))
    assert device.timezone.value == large
    assert await lwm2m.server.read("dev1", timezone) == SingleResource(
        15, ResourceType.STRING, large
    )


async def test_notifications_update_the_cache_and_active_cancel_works(lwm2m, device):
    await register(lwm2m, device)
    seen: list[object] = []

    class Collect(ServerListener):
        def on_notification(self, registration, paths, nodes):
            seen.append(nodes[TIME])

    lwm2m.server.add_listener(Collect())
    assert (await lwm2m.server.observe("dev1", TIME)).value == time_from_epoch(1700000000)
    device.time.set("1700000005")

    async def stored_value():
        async with lwm2m.db.session() as session:
            row = await session.get(ResourceValue, ("dev1", "/3/0/13"))
            return row is not None and row.value == 1700000005

    assert await eventually(stored_value)
    assert seen and seen[-1].value == time_from_epoch(1700000005)
    assert lwm2m.server.observed_paths("dev1") == [(TIME,)]
    assert await lwm2m.server.cancel_observation("dev1", TIME, active=True)
    await eventually(lambda: _no_observers(device))
    assert not device.time._observations


async def _no_observers(device) -> bool:
    return not device.time._observations


async def test_observation_survives_an_update(lwm2m, device):
    location = "/".join((await register(lwm2m, device)).opt.location_path)
    await lwm2m.server.observe("dev1", TIME)
    await device.request(Code.POST, f"coap://127.0.0.1:{lwm2m.port}/{location}?lt=90", b"")
    device.time.set("1700000009")

    async def cached():
        values = await lwm2m.server.cached_values("dev1", TIME)
        return TIME in values and values[TIME].value == time_from_epoch(1700000009)

    assert await eventually(cached)


async def test_observation_is_reestablished_after_a_reregistration(lwm2m, device):
    """A device that reboots comes back from a new port with no observers; the server
    observes again what it observed before (``reobserve``)."""
    await register(lwm2m, device)
    await lwm2m.server.observe("dev1", TIME, reobserve=True)
    rebooted = FakeDevice()
    await rebooted.start()
    try:
        await register(lwm2m, rebooted)
        assert await eventually(lambda: _has_observers(rebooted))
        rebooted.time.set("1700000042")

        async def cached():
            values = await lwm2m.server.cached_values("dev1", TIME)
            return TIME in values and values[TIME].value == time_from_epoch(1700000042)

        assert await eventually(cached)
        assert lwm2m.server.observed_paths("dev1") == [(TIME,)]
        assert await lwm2m.server.cancel_observation("dev1", TIME, active=True)
    finally:
        await rebooted.stop()


async def _has_observers(device) -> bool:
    return bool(device.time._observations)


async def test_queue_mode_delivers_on_next_update(lwm2m, device):
    response = await register(lwm2m, device, "ep=sleepy&lwm2m=1.1&lt=60&Q")
    location = "/".join(response.opt.location_path)
    await asyncio.sleep(0.7)  # the awake window (0.5 s) ends
    registration = await lwm2m.server.get_registration("sleepy")
    assert registration is not None and not lwm2m.server.is_awake(registration)
    with pytest.raises(RequestQueuedError):
        await lwm2m.server.read("sleepy", MANUFACTURER, wait=False)
    waiting = asyncio.ensure_future(lwm2m.server.read("sleepy", MANUFACTURER, timeout=5))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await device.request(Code.POST, f"coap://127.0.0.1:{lwm2m.port}/{location}", b"")
    node = await asyncio.wait_for(waiting, 5)
    assert node == SingleResource(0, ResourceType.STRING, "Meadowlark Labs")


async def test_send_updates_the_cache(lwm2m, device):
    await register(lwm2m, device)
    payload = b'[{"bn":"/3/0/","n":"13","v":1700000100}]'
    response = await device.request(
        Code.POST, f"coap://127.0.0.1:{lwm2m.port}/dp", payload, content_format=110
    )
    assert response.code == Code.CHANGED
    values = await lwm2m.server.cached_values("dev1", TIME)
    assert values[TIME].value == time_from_epoch(1700000100)


async def test_unknown_paths_and_methods_get_proper_codes(lwm2m):
    client = await Context.create_client_context()
    try:
        for method, path, code in (
            (Code.GET, "rd", Code.METHOD_NOT_ALLOWED),
            (Code.GET, "nothing", Code.NOT_FOUND),
            (Code.PUT, "rd/abc", Code.METHOD_NOT_ALLOWED),
            (Code.POST, "rd/abc", Code.NOT_FOUND),
        ):
            message = Message(code=method, uri=f"coap://127.0.0.1:{lwm2m.port}/{path}")
            assert (await client.request(message).response).code == code
    finally:
        await client.shutdown()
    async with lwm2m.db.session() as session:
        assert (await session.scalars(select(Device))).all() == []
