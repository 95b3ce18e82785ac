"""``LwM2mServer`` against a fake transport: formats, queue mode, expiry, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.node import ResourceType, SingleResource
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.errors import (
    DeviceErrorResponse,
    DeviceNotRegisteredError,
    InvalidRequestError,
    RequestQueuedError,
    RequestTimeoutError,
)
from meadowlark.server.operations import QueuedRequest, QueuedRequestState
from meadowlark.server.ports import Admission, InMemoryDeviceRegistry
from meadowlark.server.service import LwM2mServer, ServerListener, ServerOptions
from meadowlark.server.transport import (
    CONTENT,
    CREATED,
    FORBIDDEN,
    NOT_FOUND,
    SERVICE_UNAVAILABLE,
    DownlinkRequest,
    DownlinkResponse,
    Peer,
    ResponseCode,
    TransportTimeout,
)

pytestmark = pytest.mark.anyio
PEER = Peer("192.0.2.1", 40000)
MANUFACTURER = LwM2mPath(3, 0, 0)


class FakeEndpoint:
    """Answers every request with ``answer(request)`` and records what was sent."""

    def __init__(self, answer: Callable[[DownlinkRequest], DownlinkResponse]) -> None:
        self.answer = answer
        self.sent: list[DownlinkRequest] = []

    async def send(self, peer, request, timeout):  # noqa: ASYNC109 - mirrors the Protocol
        self.sent.append(request)
        return self.answer(request)

    async def observe(self, peer, request, on_notify, on_end, timeout):  # noqa: ASYNC109
        raise AssertionError("not used here")


def text_answer(request: DownlinkRequest) -> DownlinkResponse:
    return DownlinkResponse(CONTENT, b"ACME", request.accept)


class Events(ServerListener):
    def __init__(self) -> None:
        self.names: list[str] = []
        self.done: list[QueuedRequest] = []

    def on_registered(self, registration, replaced):
        self.names.append("registered")

    def on_deregistered(self, registration, *, expired):
        self.names.append("expired" if expired else "deregistered")

    def on_awake(self, registration):
        self.names.append("awake")

    def on_sleeping(self, registration):
        self.names.append("sleeping")

    def on_queued_request_done(self, request, result, error):
        self.done.append(request)


async def started(options: ServerOptions | None = None, **stores) -> LwM2mServer:
    server = LwM2mServer(options, **stores)
    await server.start()
    return server


async def register(server: LwM2mServer, *query: str, payload: bytes = b"</3/0>") -> str:
    result = await server.on_register(PEER, ("ep=dev", *query), payload, None)
    assert result.code == CREATED, result
    return result.location_path[1]


async def test_reads_a_1_0_device_in_tlv_and_single_values_as_text():
    server = await started()
    tlv_manufacturer = bytes([0xC4, 0x00]) + b"ACME"
    endpoint = FakeEndpoint(lambda request: DownlinkResponse(CONTENT, tlv_manufacturer, 11542))
    server.attach(endpoint)
    await register(server, "lwm2m=1.0")
    node = await server.read("dev", MANUFACTURER)
    assert node == SingleResource(0, ResourceType.STRING, "ACME")  # decodes what it gets
    assert endpoint.sent[0].accept == ContentFormat.TEXT
    assert endpoint.sent[0].uri_path == ("3", "0", "0")
    endpoint.answer = lambda request: DownlinkResponse(
        CONTENT, bytes([0x04 | 0xC0, 0x00]) + b"ACME", 11542
    )
    await server.read("dev", LwM2mPath(3, 0))
    assert endpoint.sent[1].accept == ContentFormat.TLV
    await server.stop()


async def test_reads_with_the_format_announced_in_ct_and_updates_the_cache():
    server = await started()
    endpoint = FakeEndpoint(text_answer)
    server.attach(endpoint)
    await register(server, "lwm2m=1.1", payload=b'</>;rt="oma.lwm2m";ct=112,</3/0>')
    await server.read("dev", MANUFACTURER, format=ContentFormat.TEXT)
    assert endpoint.sent[0].accept == ContentFormat.TEXT
    cached = await server.cached_values("dev")
    assert cached[MANUFACTURER].value == "ACME"
    endpoint.answer = lambda request: DownlinkResponse(ResponseCode(4, 4))
    with pytest.raises(DeviceErrorResponse) as caught:
        await server.read("dev", LwM2mPath(3, 0))
    assert endpoint.sent[1].accept == ContentFormat.SENML_CBOR
    assert caught.value.http_status == 404
    await server.stop()


async def test_requests_go_under_the_alternate_root_path():
    server = await started()
    endpoint = FakeEndpoint(text_answer)
    server.attach(endpoint)
    await register(server, "lwm2m=1.1", payload=b'</lwm2m>;rt="oma.lwm2m",</lwm2m/3/0>')
    await server.read("dev", MANUFACTURER, format=ContentFormat.TEXT)
    assert endpoint.sent[0].uri_path == ("lwm2m", "3", "0", "0")
    await server.stop()


async def test_unknown_device_and_composite_on_1_0_are_refused():
    server = await started()
    server.attach(FakeEndpoint(text_answer))
    with pytest.raises(DeviceNotRegisteredError):
        await server.read("nobody", MANUFACTURER)
    await register(server, "lwm2m=1.0")
    with pytest.raises(InvalidRequestError):
        await server.read_composite("dev", [MANUFACTURER])
    await server.stop()


async def test_transport_timeout_becomes_a_504_error():
    def silent(request: DownlinkRequest) -> DownlinkResponse:
        raise TransportTimeout("no answer")

    server = await started()
    server.attach(FakeEndpoint(silent))
    await register(server)
    with pytest.raises(RequestTimeoutError) as caught:
        await server.read("dev", MANUFACTURER)
    assert caught.value.http_status == 504
    await server.stop()


async def test_blacklisted_device_gets_4_03_and_flooding_address_5_03():
    devices = InMemoryDeviceRegistry(refused={"dev": Admission.BLACKLISTED})
    server = await started(
        ServerOptions(max_registrations_per_address_per_minute=2), devices=devices
    )
    assert (await server.on_register(PEER, ("ep=dev",), b"", None)).code == FORBIDDEN
    await server.on_register(PEER, ("ep=other",), b"", None)
    flooded = await server.on_register(PEER, ("ep=other",), b"", None)
    assert flooded.code == SERVICE_UNAVAILABLE and flooded.max_age
    await server.stop()


async def test_reregistration_replaces_the_old_location():
    server = await started()
    first = await register(server)
    second = await register(server)
    assert first != second
    assert (await server.on_update(PEER, first, (), b"", None)).code == NOT_FOUND
    assert (await server.on_update(PEER, second, ("lt=99",), b"", None)).code.is_success
    registration = await server.get_registration("dev")
    assert registration is not None and registration.lifetime == 99
    await server.stop()


async def test_lifetime_expiry_deregisters_after_the_grace_period():
    server = await started(ServerOptions(lifetime_grace=0.05))
    events = Events()
    server.add_listener(events)
    await register(server, "lt=1")
    await asyncio.sleep(0.5)
    assert await server.get_registration("dev") is not None
    await asyncio.sleep(0.8)
    assert await server.get_registration("dev") is None
    assert events.names == ["registered", "expired"]
    await server.stop()


async def test_queue_mode_requests_wait_for_the_next_update():
    server = await started(ServerOptions(awake_window=0.1))
    endpoint = FakeEndpoint(text_answer)
    server.attach(endpoint)
    events = Events()
    server.add_listener(events)
    location = await register(server, "lwm2m=1.1", "Q")
    await asyncio.sleep(0.3)
    assert events.names == ["registered", "awake", "sleeping"]
    with pytest.raises(RequestQueuedError) as queued:
        await server.read("dev", MANUFACTURER, format=ContentFormat.TEXT, wait=False)
    waiting = asyncio.ensure_future(server.read("dev", MANUFACTURER, format=ContentFormat.TEXT))
    await asyncio.sleep(0.05)
    assert endpoint.sent == []
    await server.on_update(PEER, location, (), b"", None)
    node = await asyncio.wait_for(waiting, 1)
    assert node == SingleResource(0, ResourceType.STRING, "ACME")
    assert len(endpoint.sent) == 2
    assert [request.id for request in events.done][0] == queued.value.request_id
    assert all(request.state is QueuedRequestState.DONE for request in events.done)
    await server.stop()


async def test_send_updates_the_cache():
    server = await started()
    await register(server, "lwm2m=1.1")
    payload = b'[{"bn":"/3/0/","n":"0","vs":"ACME","bt":1700000000}]'
    result = await server.on_send(PEER, payload, ContentFormat.SENML_JSON)
    assert result.code.is_success
    cached = await server.cached_values("dev", LwM2mPath(3))
    assert cached[MANUFACTURER].value == "ACME"
    assert cached[MANUFACTURER].updated_at.year == 2023
    bad = await server.on_send(PEER, b"{", ContentFormat.SENML_JSON)
    assert bad.code == ResponseCode(4, 0)
    stranger = await server.on_send(Peer("198.51.100.1", 1), payload, ContentFormat.SENML_JSON)
    assert stranger.code == NOT_FOUND
    await server.stop()


async def test_one_address_may_register_many_devices_by_default():
    server = await started()
    for index in range(500):
        result = await server.on_register(PEER, (f"ep=nat-{index}",), b"", None)
        assert result.code == CREATED
    await server.stop()


class HeldRegistry(InMemoryDeviceRegistry):
    """Admits a registration only when ``release`` is set: requests pile up meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def admit_registration(self, registration):
        await self.release.wait()
        return await super().admit_registration(registration)


async def test_a_deep_uplink_queue_gets_5_03_with_max_age_spread_over_the_window():
    devices = HeldRegistry()
    server = await started(
        ServerOptions(max_pending_uplinks=3, overload_max_age=(10, 40)), devices=devices
    )
    admitted = [
        asyncio.ensure_future(server.on_register(PEER, (f"ep=held-{index}",), b"", None))
        for index in range(3)
    ]
    await asyncio.sleep(0)
    shed = [
        await server.on_register(PEER, (f"ep=shed-{index}",), b"", None) for index in range(200)
    ]
    assert {result.code for result in shed} == {SERVICE_UNAVAILABLE}
    ages = [result.max_age for result in shed]
    assert all(age is not None and 10 <= age <= 40 for age in ages)
    assert len(set(ages)) > 10  # spread, not one wave
    location = admitted[0]
    devices.release.set()
    assert [(await request).code for request in admitted] == [CREATED] * 3
    # Once the queue is short again, requests are admitted (Update too).
    update = await server.on_update(PEER, (await location).location_path[1], (), b"", None)
    assert update.code.is_success
    assert (await server.on_register(PEER, ("ep=later",), b"", None)).code == CREATED
    await server.stop()


async def test_work_that_can_wait_waits_until_no_register_is_in_process():
    devices = HeldRegistry()
    server = await started(devices=devices)
    service = server.registration_service
    await asyncio.wait_for(service.quiet(30), 1)  # nothing in process: at once
    held = asyncio.ensure_future(server.on_register(PEER, ("ep=held",), b"", None))
    await asyncio.sleep(0)
    waiting = asyncio.ensure_future(service.quiet(30))
    await asyncio.sleep(0.05)
    assert service.pending == 1 and not waiting.done()
    devices.release.set()
    assert (await held).code == CREATED
    await asyncio.wait_for(waiting, 1)
    devices.release.clear()
    again = asyncio.ensure_future(server.on_register(PEER, ("ep=again",), b"", None))
    await asyncio.sleep(0)
    await asyncio.wait_for(service.quiet(0.05), 1)  # bounded: returns though still busy
    assert service.pending == 1
    devices.release.set()
    await again
    await server.stop()


class ObservingEndpoint(FakeEndpoint):
    """Accepts every observation; ``notify`` plays a notification of the last one."""

    def __init__(self, answer: Callable[[DownlinkRequest], DownlinkResponse]) -> None:
        super().__init__(answer)
        self.notify: Callable[[DownlinkResponse], None] | None = None

    async def observe(self, peer, request, on_notify, on_end, timeout):  # noqa: ASYNC109
        self.notify = on_notify
        initial = self.answer(request)

        class Handle:
            initial_response = initial
            active = True

            async def cancel(self, *, active: bool) -> None:
                Handle.active = False

        return Handle()


async def test_notifications_decode_with_the_registry_the_resolver_gives_now():
    from meadowlark.lwm2m.model.registry import ModelRegistry, builtin_registry

    full = builtin_registry()
    registries = {"now": ModelRegistry()}  # no models: text is read as a plain string
    server = await started(model_resolver=lambda registration: registries["now"])
    notified: list[object] = []

    class Values(ServerListener):
        def on_notification(self, registration, paths, nodes):
            notified.append(nodes[paths[0]].value)

    server.add_listener(Values())
    temperature = LwM2mPath(3303, 0, 5700)
    endpoint = ObservingEndpoint(lambda request: DownlinkResponse(CONTENT, b"20.5", 0, observe=1))
    server.attach(endpoint)
    await register(server, "lwm2m=1.1", payload=b"</3303/0>")
    registries["now"] = full
    assert (await server.observe("dev", temperature, format=ContentFormat.TEXT)).value == 20.5
    assert endpoint.notify is not None
    endpoint.notify(DownlinkResponse(CONTENT, b"21.5", 0, observe=2))
    registries["now"] = ModelRegistry()  # e.g. the tenant's objects were replaced
    endpoint.notify(DownlinkResponse(CONTENT, b"22.5", 0, observe=3))
    registries["now"] = full
    endpoint.notify(DownlinkResponse(CONTENT, b"23.5", 0, observe=4))
    assert notified == [21.5, "22.5", 23.5]
    await server.stop()
