"""The bootstrap session against an in-memory endpoint: sequence, payloads, error codes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from meadowlark.lwm2m.codec import registry, senml_cbor
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.model.registry import builtin_registry
from meadowlark.lwm2m.node import ObjectInstance
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.bootstrap.accounts import SecurityMode, ServerAccount
from meadowlark.server.bootstrap.service import (
    BootstrapEvent,
    BootstrapOptions,
    BootstrapPlan,
    BootstrapService,
    Refusal,
    Step,
)
from meadowlark.server.transport import (
    BAD_REQUEST,
    CHANGED,
    CONTENT,
    DELETED,
    NOT_FOUND,
    SERVICE_UNAVAILABLE,
    UNSUPPORTED_CONTENT_FORMAT,
    DownlinkRequest,
    DownlinkResponse,
    Peer,
    ResponseCode,
    TransportTimeout,
)

pytestmark = pytest.mark.anyio
PEER = Peer("192.0.2.7", 40000)
MODELS = builtin_registry()
NOT_ACCEPTABLE = ResponseCode(4, 6)
DISCOVERY = b'</>;lwm2m=1.1,</0>,</0/0>,</0/3>;ssid=5;uri="coap://old",</1>,</1/0>;ssid=5,</3/0>'
ACCOUNT = ServerAccount(
    uri="coaps://lwm2m.example.com:5684",
    security_mode=SecurityMode.PSK,
    short_server_id=101,
    lifetime=300,
    binding="UQ",
    public_key_or_identity=b"dev-1:abcd",
    secret_key=bytes(range(16)),
)

Answer = Callable[[DownlinkRequest], DownlinkResponse]


class FakeDevice:
    """An ``LwM2mEndpoint`` answering as a device would, unless told otherwise."""

    def __init__(self, discovery: bytes = DISCOVERY) -> None:
        self.requests: list[DownlinkRequest] = []
        self.overrides: dict[tuple[str, str], DownlinkResponse | type[Exception]] = {}
        self.discovery = discovery
        self.server_instance: bytes = b""

    async def send(
        self,
        peer: Peer,
        request: DownlinkRequest,
        timeout: float,  # noqa: ASYNC109 - the LwM2mEndpoint signature
    ) -> DownlinkResponse:
        assert peer == PEER
        self.requests.append(request)
        key = (request.method.value, "/" + "/".join(request.uri_path))
        override = self.overrides.get(key)
        if isinstance(override, type):
            raise override("no answer")
        if override is not None:
            return override
        if request.method.value == "GET" and request.accept == ContentFormat.LINK_FORMAT:
            return DownlinkResponse(CONTENT, self.discovery, ContentFormat.LINK_FORMAT)
        if request.method.value == "GET":
            return DownlinkResponse(CONTENT, self.server_instance, request.accept)
        if request.method.value == "DELETE":
            return DownlinkResponse(DELETED)
        if request.method.value == "PUT" and request.uri_path[0] == "1":
            self.server_instance = request.payload
        return DownlinkResponse(CHANGED)

    async def ping(self, peer: Peer, timeout: float) -> None:  # noqa: ASYNC109
        raise NotImplementedError

    async def observe(self, *args: object, **kwargs: object) -> object:
        raise NotImplementedError

    def paths(self) -> list[tuple[str, str]]:
        return [(r.method.value, "/" + "/".join(r.uri_path)) for r in self.requests]


class Configurations:
    def __init__(self, plan: BootstrapPlan | Refusal | None = None) -> None:
        self.result = plan or BootstrapPlan("dev-1", ACCOUNT)
        self.provisioned_plans: list[BootstrapPlan] = []
        self.provisioned_before: list[int] = []

    async def plan(self, endpoint: str, peer: Peer) -> BootstrapPlan | Refusal:
        return self.result

    async def provisioned(self, plan: BootstrapPlan) -> None:
        self.provisioned_plans.append(plan)


class Events:
    def __init__(self) -> None:
        self.events: list[BootstrapEvent] = []

    def on_bootstrap_event(self, event: BootstrapEvent) -> None:
        self.events.append(event)

    def summary(self) -> list[tuple[str, str, str | None, bool]]:
        return [
            (e.step.value, e.path, None if e.code is None else str(e.code), e.success)
            for e in self.events
        ]


async def bootstrap(
    device: FakeDevice,
    configurations: Configurations | None = None,
    query: tuple[str, ...] = ("ep=dev-1",),
) -> tuple[ResponseCode, Events, Configurations]:
    configurations = configurations or Configurations()
    events = Events()
    service = BootstrapService(
        configurations, events, BootstrapOptions(request_timeout=1, answer_first_delay=0)
    )
    service.attach(device)
    result = await service.on_bootstrap_request(PEER, query)
    for _ in range(100):
        if any(e.final for e in events.events):
            break
        await asyncio.sleep(0.01)
    await service.stop()
    return result.code, events, configurations


async def test_the_whole_sequence_writes_the_account_where_it_fits():
    device = FakeDevice()
    code, events, configurations = await bootstrap(device, query=("ep=dev-1", "pct=11542"))
    assert code == CHANGED
    assert device.paths() == [
        ("GET", "/"),
        ("DELETE", "/0"),
        ("DELETE", "/1"),
        ("PUT", "/0/1"),  # /0/0 is the bootstrap account (no ssid): it survives the Delete
        ("PUT", "/1/0"),
        ("GET", "/1/0"),
        ("POST", "/bs"),
    ]
    assert events.summary()[0] == ("request", "", "2.04", True)
    assert events.summary()[-1] == ("finish", "/bs", "2.04", True) and events.events[-1].final
    assert configurations.provisioned_plans == [configurations.result]
    security = registry.decode(
        ContentFormat.TLV, device.requests[3].payload, LwM2mPath(0, 1), MODELS
    )
    assert isinstance(security, ObjectInstance)
    values = {rid: r.value for rid, r in security.resources.items()}  # type: ignore[union-attr]
    assert values[0] == ACCOUNT.uri and values[1] is False and values[2] == 0
    assert values[3] == b"dev-1:abcd" and values[5] == bytes(range(16)) and values[10] == 101
    read = next(e for e in events.events if e.step is Step.READ)
    assert read.success and read.detail == "verified"


@pytest.mark.parametrize(
    "fmt", [ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR, ContentFormat.LWM2M_CBOR]
)
async def test_writes_use_the_format_the_device_asked_for(fmt):
    device = FakeDevice()
    code, events, _ = await bootstrap(device, query=("ep=dev-1", f"pct={int(fmt)}"))
    assert code == CHANGED and events.events[-1].success
    writes = [r for r in device.requests if r.method.value == "PUT"]
    assert {r.content_format for r in writes} == {fmt}
    server = registry.decode(fmt, writes[1].payload, LwM2mPath(1, 0), MODELS)
    assert isinstance(server, ObjectInstance)
    assert server.resources[7].value == "UQ" and server.resources[1].value == 300  # type: ignore[union-attr]


async def test_a_device_without_discover_gets_default_ids_and_no_read_when_1_0():
    device = FakeDevice()
    device.overrides[("GET", "/")] = DownlinkResponse(BAD_REQUEST)
    code, events, _ = await bootstrap(device)
    assert code == CHANGED
    assert ("PUT", "/0/1") in device.paths() and ("GET", "/1/0") not in device.paths()
    assert events.summary()[1] == ("discover", "/", "4.00", False)
    assert events.events[-1].success
    device = FakeDevice(discovery=b"</>;lwm2m=1.0,</0/4>,</1/2>;ssid=1")
    await bootstrap(device)
    assert ("PUT", "/0/0") in device.paths() and ("GET", "/1/0") not in device.paths()


@pytest.mark.parametrize(
    ("refused", "code", "provisioned"),
    [
        (("POST", "/bs"), NOT_ACCEPTABLE, True),
        (("PUT", "/0/1"), BAD_REQUEST, False),
        (("PUT", "/1/0"), UNSUPPORTED_CONTENT_FORMAT, False),
        (("DELETE", "/0"), NOT_FOUND, False),
    ],
)
async def test_a_device_error_ends_the_bootstrap_with_its_code(refused, code, provisioned):
    device = FakeDevice()
    device.overrides[refused] = DownlinkResponse(code, b"nope\x00\x07")
    _, events, configurations = await bootstrap(device)
    last = events.events[-1]
    assert (last.path, last.code, last.success, last.final) == (refused[1], code, False, True)
    assert last.detail == "nope"  # the device's diagnostic, printable characters only
    assert device.paths()[-1] == refused  # nothing after the refusal
    assert bool(configurations.provisioned_plans) is provisioned


async def test_no_answer_is_reported():
    device = FakeDevice()
    device.overrides[("DELETE", "/1")] = TransportTimeout
    _, events, configurations = await bootstrap(device)
    assert events.summary()[-1] == ("delete", "/1", None, False)
    assert events.events[-1].detail == "no answer" and not configurations.provisioned_plans


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ((), BAD_REQUEST),
        (("ep=",), BAD_REQUEST),
        (("ep=" + "x" * 300,), BAD_REQUEST),
        (("ep=a\x00b",), BAD_REQUEST),
        (("ep=a", "ep=b"), BAD_REQUEST),
        (("ep=a", "pct=x"), BAD_REQUEST),
        (("ep=a", "pct=0"), UNSUPPORTED_CONTENT_FORMAT),
        (("ep=a", "pct=40"), UNSUPPORTED_CONTENT_FORMAT),
    ],
)
async def test_bad_requests(query, code):
    device = FakeDevice()
    result, _, configurations = await bootstrap(device, query=query)
    assert result == code and not device.requests


@pytest.mark.parametrize("refusal", list(Refusal))
async def test_refusals_answer_4_00_and_are_reported(refusal):
    device = FakeDevice()
    result, events, _ = await bootstrap(device, Configurations(refusal))
    assert result == BAD_REQUEST and not device.requests
    assert events.summary() == [("request", "", "4.00", False)]
    assert events.events[0].detail == refusal.value and events.events[0].final


async def test_pack_request_answers_the_whole_configuration():
    configurations = Configurations()
    events = Events()
    service = BootstrapService(configurations, events)
    pack = await service.on_pack_request(PEER, ("ep=dev-1",), ContentFormat.SENML_CBOR)
    assert pack.code == CONTENT and pack.content_format == ContentFormat.SENML_CBOR
    nodes = senml_cbor.decode_composite(pack.payload, MODELS)
    values = {str(path): node.value for path, node in nodes.items()}  # type: ignore[union-attr]
    assert values["/0/1/0"] == ACCOUNT.uri and values["/0/1/1"] is False
    assert values["/0/1/5"] == bytes(range(16)) and values["/1/0/0"] == 101
    assert {str(path)[:4] for path in nodes} == {"/0/1", "/1/0"}
    assert configurations.provisioned_plans and events.events[-1].success
    refused = await service.on_pack_request(PEER, ("ep=dev-1",), ContentFormat.TLV)
    assert refused.code == UNSUPPORTED_CONTENT_FORMAT
    assert (await service.on_pack_request(PEER, ("ep=dev-1", "pct=112"), None)).code == BAD_REQUEST
    unknown = BootstrapService(Configurations(Refusal.UNKNOWN_ENDPOINT), Events())
    assert (await unknown.on_pack_request(PEER, ("ep=x",), None)).code == BAD_REQUEST


def test_keys_stay_out_of_reprs():
    text = repr(BootstrapPlan("dev-1", ACCOUNT))
    assert bytes(range(16)).hex() not in text and "secret_key" not in text
    assert "dev-1:abcd" not in text


async def test_requests_over_the_per_address_limit_get_5_03_and_nothing_else():
    events = Events()
    service = BootstrapService(
        Configurations(Refusal.UNKNOWN_ENDPOINT),
        events,
        BootstrapOptions(max_requests_per_address_per_minute=2),
    )
    service.attach(FakeDevice())
    codes = [(await service.on_bootstrap_request(PEER, ("ep=x",))).code for _ in range(3)]
    assert codes == [BAD_REQUEST, BAD_REQUEST, SERVICE_UNAVAILABLE]
    assert (await service.on_pack_request(PEER, ("ep=x",), None)).code == SERVICE_UNAVAILABLE
    assert len(events.events) == 2
    other = Peer("192.0.2.8", 40000)
    assert (await service.on_bootstrap_request(other, ("ep=x",))).code == BAD_REQUEST


async def test_each_transport_sends_through_its_own_endpoint():
    plain, secure = FakeDevice(), FakeDevice()
    events = Events()
    service = BootstrapService(
        Configurations(), events, BootstrapOptions(request_timeout=1, answer_first_delay=0)
    )
    service.attach(plain)
    dtls_peer = Peer(PEER.host, PEER.port, "dtls")
    refused = await service.on_bootstrap_request(dtls_peer, ("ep=dev-1",))
    assert refused.code == SERVICE_UNAVAILABLE  # no secure transport attached
    secure.send = _as_peer(secure, dtls_peer)  # type: ignore[method-assign]
    service.attach(secure, "dtls")
    assert (await service.on_bootstrap_request(dtls_peer, ("ep=dev-1",))).code == CHANGED
    for _ in range(100):
        if any(e.final for e in events.events):
            break
        await asyncio.sleep(0.01)
    await service.stop()
    assert secure.paths()[-1] == ("POST", "/bs") and not plain.requests


def _as_peer(device: FakeDevice, expected: Peer) -> Callable[..., object]:
    send = FakeDevice.send

    async def checked(peer: Peer, request: DownlinkRequest, timeout: float) -> DownlinkResponse:  # noqa: ASYNC109
        assert peer == expected
        return await send(device, PEER, request, timeout)

    return checked


async def test_no_finish_when_the_credentials_cannot_be_stored():
    class Failing(Configurations):
        async def provisioned(self, plan: BootstrapPlan) -> None:
            raise RuntimeError("store down")

    device = FakeDevice()
    _, events, _ = await bootstrap(device, Failing())
    assert ("POST", "/bs") not in device.paths()
    last = events.events[-1]
    assert (last.step, last.success, last.final) == (Step.FINISH, False, True)
    assert last.detail == "credentials not stored"


async def test_a_new_request_replaces_the_running_session():
    class SlowDevice(FakeDevice):
        async def send(self, peer, request, timeout):  # noqa: ASYNC109
            await asyncio.sleep(0.05)
            return await super().send(peer, request, timeout)

    device = SlowDevice()
    events = Events()
    service = BootstrapService(
        Configurations(), events, BootstrapOptions(request_timeout=1, answer_first_delay=0)
    )
    service.attach(device)
    assert (await service.on_bootstrap_request(PEER, ("ep=dev-1",))).code == CHANGED
    await asyncio.sleep(0.12)  # the first session is mid-way
    assert (await service.on_bootstrap_request(PEER, ("ep=dev-1",))).code == CHANGED
    for _ in range(200):
        if any(e.final for e in events.events):
            break
        await asyncio.sleep(0.01)
    await service.stop()
    finals = [e for e in events.events if e.final]
    assert len(finals) == 1 and finals[0].step is Step.FINISH and finals[0].success
    assert device.paths().count(("POST", "/bs")) == 1
    assert [e.step for e in events.events].count(Step.REQUEST) == 2
