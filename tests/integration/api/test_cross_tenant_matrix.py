# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""Tenants never see each other: a cross-tenant matrix over every route of the OpenAPI document.

Two sibling domains, A and B, each have an administrator. Administrators hold every
permission, so whatever A's administrator is refused can only be refused by tenancy.
B's administrator builds one of everything in B (a user, a sub-domain, a registered
device with a group and observations, a role, a service account, an API token); then:

- every GET operation without a path parameter is a list, or is named in ``NOT_LISTS``;
  no list or event feed shows A anything of B (B's names and ids appear nowhere).
- requests of A's whose body names one of B's objects (a group to join, a domain to
  create in...) are refused exactly as if it did not exist; B's custom object definitions
  do not exist for A; a device never joins a group beside or below its domain.
- every operation whose path has a parameter is called as A's administrator against B's
  object, and against an id that does not exist. Both must be refused alike (403 or 404,
  same body up to the id the message names), and B's objects must be left as they were.
  ``FIXTURES`` says how to aim each operation at B's object; an operation of the live
  OpenAPI document without an entry fails ``test_every_parameterised_route_has_a_fixture``
  until it gets one.

The tests share B's objects and run in file order, the matrix last and its DELETEs at the
very end, so that a request that got through where it must not cannot hide another leak.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from lwm2m_harness import Lwm2mTestServer, eventually, server  # noqa: F401 - fixture
from meadowlark.simulator import SimulatedDevice

COIOTE = "/api/coiotedm/v3"
LWM2M = "/api/lwm2m/v1"
SENSOR_NAME = "Temperature.0.Sensor Value"
SENSOR_URL = "/3303/0/5700"
APPLICATION_TYPE = "3303/0/5750"
"""A writable resource of the simulated device: a write that got through would show here."""
REFUSED = frozenset({403, 404})
CUSTOM_OBJECT = """<?xml version="1.0" encoding="utf-8"?>
<LWM2M><Object ObjectType="MODefinition">
  <Name>Sibling Meter</Name><Description1>Defined by both tenants</Description1>
  <ObjectID>33077</ObjectID><ObjectURN>urn:oma:lwm2m:x:33077</ObjectURN>
  <LWM2MVersion>1.1</LWM2MVersion><ObjectVersion>1.0</ObjectVersion>
  <MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory>
  <Resources><Item ID="0"><Name>Reading</Name><Operations>R</Operations>
    <MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory>
    <Type>Integer</Type><RangeEnumeration></RangeEnumeration><Units></Units>
    <Description>Latest reading</Description></Item></Resources>
</Object></LWM2M>
"""
NO_KEEP_ALIVE = httpx.Limits(max_keepalive_connections=0)
"""A new connection per request: on loopback a reused one waits ~40 ms (delayed ACK) here."""
VOLATILE = frozenset({"lastContactTime", "lastSessionTime", "lastUpdate", "sleeping", "lastUsedAt"})
"""Fields that change with time or with the snapshot's own reads, not with A's requests."""


# --- the two tenants -----------------------------------------------------------------------


@dataclass
class Tenant:
    """A domain with its administrator's token; ``tag`` is part of every name made in it."""

    tag: str
    domain: str
    token: str

    def client(self, server: Lwm2mTestServer) -> httpx.Client:
        return server.client(self.token, limits=NO_KEEP_ALIVE)


@dataclass
class World:
    """Tenant A (the caller), tenant B (the owner) and B's objects."""

    server: Lwm2mTestServer
    a: Tenant
    b: Tenant
    user: str
    user_id: str
    subdomain: str
    device: str
    group: str
    role_id: str
    role_name: str
    client_id: str
    client_secret: str
    realm: str
    token_id: str
    api_token: str
    simulated: SimulatedDevice
    markers: frozenset[str] = field(default_factory=frozenset)
    """Every name and id of B's objects: none may appear in what A is shown."""
    connectivity: dict[str, str] = field(default_factory=dict)
    """B's console objects (``_connectivity_objects``)."""
    tasks: dict[str, str] = field(default_factory=dict)
    """B's task, report cursor, template and setting (``_task_objects``)."""
    own_tasks: dict[str, str] = field(default_factory=dict)
    """A's equivalents (``_own_task_objects``)."""

    def as_a(self) -> httpx.Client:
        return self.a.client(self.server)

    def as_b(self) -> httpx.Client:
        return self.b.client(self.server)

    def snapshot(self) -> dict[str, Any]:
        """B's objects as B's administrator sees them: status and body, volatile fields left
        out. (A status, not an assertion: an object lost to one case fails that case only.)"""
        device_path = f"{COIOTE}/observations/device/{self.device}/{quote(SENSOR_NAME)}"
        reads = {
            "user": f"{COIOTE}/users/{self.user}",
            "domain": f"{COIOTE}/domains{self.b.domain}",
            "subdomain": f"{COIOTE}/domains{self.subdomain}",
            "device": f"{COIOTE}/devices/{self.device}",
            "group": f"{COIOTE}/groups/{self.group}",
            "groups": f"{COIOTE}/groups",
            "devices": f"{COIOTE}/devices",
            "observations": f"{COIOTE}/observations",
            "device observation": device_path,
            "role": f"/api/admin/roles/{self.role_id}",
            "service accounts": "/api/admin/service-accounts",
            "tokens": "/api/auth/tokens",
            "registration": f"{LWM2M}/clients/{self.device}",
            "device value": f"{LWM2M}/clients/{self.device}/{APPLICATION_TYPE}",
            **_connectivity_reads(self),
            **_task_reads(self),
            **_alert_reads(self),
            **_monitoring_reads(self),
        }
        with self.as_b() as http:
            answers = {name: http.get(url) for name, url in reads.items()}
        return _flat(
            {name: {"status": a.status_code, "body": a.json()} for name, a in answers.items()}
        )


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves by dotted path (``device.body.description``), volatile fields left out."""
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items() if k not in VOLATILE]
    elif isinstance(value, list):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(_flat(item, f"{prefix}.{key}" if prefix else key))
    return flat


def _changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {
        leaf: (before.get(leaf), after.get(leaf))
        for leaf in before.keys() | after.keys()
        if before.get(leaf) != after.get(leaf)
    }


def _created(response: httpx.Response, status: int = 201) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def _tenant(server: Lwm2mTestServer, given: Any, prefix: str) -> Tenant:
    tag = f"{prefix}{secrets.token_hex(4)}"
    domain = given.domain(f"/root/{tag}/")
    admin = given.user(f"{tag}-admin", domain=domain, roles=["Admin"], account_type="admin")
    return Tenant(tag=tag, domain=domain, token=given.token(admin))


@pytest.fixture(scope="module")
def world(server: Lwm2mTestServer, given: Any) -> Iterator[World]:
    a = _tenant(server, given, "ta")
    b = _tenant(server, given, "tb")
    tag = b.tag
    user = given.user(f"{tag}-user", domain=b.domain, token=b.token)
    subdomain = given.domain(f"{b.domain}sub/", token=b.token)
    device, group = f"{tag}-device", f"{tag}-group"
    with b.client(server) as http:
        _created(http.post(f"{COIOTE}/groups", json={"id": group}))
        _created(http.post(f"{COIOTE}/devices", json={"properties": {"endpointName": device}}))
    simulated = server.call(_registered(device, server.server_uri))
    try:
        with b.client(server) as http:
            # The owner's reads of the Device object fill in the record's details (the
            # composite read of a GET case does): read it now, and let the record settle.
            assert http.get(f"{LWM2M}/clients/{device}/3/0").is_success
            eventually(lambda: http.get(f"{COIOTE}/devices/{device}").json()["manufacturer"])
            user_id = http.get(f"{COIOTE}/users/{user}").json()["userId"]
            assert http.put(f"{COIOTE}/devices/{device}", json={"addGroups": [group]}).is_success
            observe = {"attributes": [{"name": "pmin", "value": "5"}]}
            _created(
                http.post(f"{COIOTE}/observations/device/{device}/{SENSOR_NAME}", json=observe)
            )
            _created(
                http.post(
                    f"{COIOTE}/observations/group/resourcePath/{group}/{SENSOR_NAME}",
                    json={"minPeriod": 7},
                )
            )
            role = _created(
                http.post(
                    "/api/admin/roles", json={"name": f"{tag}-role", "permissions": ["GET devices"]}
                )
            )
            realm = f"{tag}-realm"
            account = _created(
                http.post(
                    "/api/admin/service-accounts",
                    json={"clientId": f"{tag}-client", "realm": realm, "login": user},
                )
            )
            api_token = _created(http.post("/api/auth/tokens", json={"name": f"{tag}-token"}))
        _own_objects(server, a)
        connectivity = _connectivity_objects(server, b, device)
        tasks = _task_objects(server, b, device, group)
        own_tasks = _own_task_objects(server, a)
        yield World(
            server=server,
            a=a,
            b=b,
            user=user,
            user_id=user_id,
            subdomain=subdomain,
            device=device,
            group=group,
            role_id=role["id"],
            role_name=role["name"],
            client_id=account["clientId"],
            client_secret=account["clientSecret"],
            realm=realm,
            token_id=api_token["id"],
            api_token=api_token["token"],
            simulated=simulated,
            markers=frozenset({tag, user_id, role["id"], api_token["id"], tasks["task_id"]})
            | {value for key, value in connectivity.items() if key.endswith("_id")},
            connectivity=connectivity,
            tasks=tasks,
            own_tasks=own_tasks,
        )
    finally:
        server.call(simulated.stop())


async def _registered(endpoint: str, server_uri: str) -> SimulatedDevice:
    device = SimulatedDevice(endpoint, server_uri)
    await device.start()
    return device


def _own_objects(server: Lwm2mTestServer, a: Tenant) -> None:
    """A few objects of A's own, so that A's lists are not empty by accident."""
    with a.client(server) as http:
        _created(http.post(f"{COIOTE}/groups", json={"id": f"{a.tag}-group"}))
        _created(
            http.post(f"{COIOTE}/devices", json={"properties": {"endpointName": f"{a.tag}-dev"}})
        )
        _created(http.post("/api/auth/tokens", json={"name": f"{a.tag}-token"}))
        _created(http.post("/api/admin/roles", json={"name": f"{a.tag}-role", "permissions": []}))
        _created(
            http.post(
                f"{COIOTE}/users",
                json={
                    "login": f"{a.tag}-user",
                    "password": "User-Test-Pa55word!",
                    "domain": a.domain,
                    "accountType": "developer",
                },
            )
        )


@pytest.fixture(scope="module")
def openapi(server: Lwm2mTestServer) -> dict[str, Any]:
    """The live server's OpenAPI document."""
    with server.client() as http:
        response = http.get("/openapi.json")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _operations(openapi: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), route)
        for route, operations in openapi["paths"].items()
        for method in operations
    }


# --- aiming a route at an object -------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request: the route's path parameters and what else it needs to be valid;
    ``names`` are the ids its body refers to."""

    params: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)
    json: Any = None
    data: dict[str, str] | None = None
    names: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """How a route reaches B's object (``sibling``) and an object that does not exist
    (``missing``); ``refused`` are the acceptable answers, ``still_works`` checks as B
    that the object still does its job afterwards."""

    sibling: Callable[[World], Call]
    missing: Callable[[World], Call]
    refused: frozenset[int] = REFUSED
    still_works: Callable[[World], None] | None = None


def _nobody(prefix: str = "nobody") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _by(
    name: str,
    sibling_value: Callable[[World], str],
    missing_value: Callable[[], str] = _nobody,
    **extra: Any,
) -> Target:
    """A target addressed by one path parameter, plus fixed parameters and body."""
    fixed = extra.pop("params", {})
    return Target(
        sibling=lambda w: Call({name: sibling_value(w), **fixed}, **extra),
        missing=lambda w: Call({name: missing_value(), **fixed}, **extra),
    )


def _user(**extra: Any) -> Target:
    return _by("login", lambda w: w.user, **extra)


def _domain(**extra: Any) -> Target:
    # The empty sub-domain: a DELETE that got through would succeed, not meet a conflict.
    return _by(
        "domain_id",
        lambda w: w.subdomain.strip("/"),
        lambda: f"root/{_nobody('td')}/sub",
        **extra,
    )


def _device(name: str = "device_id", **extra: Any) -> Target:
    return _by(name, lambda w: w.device, **extra)


def _group(name: str = "group_id", **extra: Any) -> Target:
    return _by(name, lambda w: w.group, **extra)


def _client(**extra: Any) -> Target:
    return _device("ep", **extra)


def _role(**extra: Any) -> Target:
    return _by("role_id", lambda w: w.role_id, lambda: str(uuid.uuid4()), **extra)


def _b_token_still_works(world: World) -> None:
    with world.server.client(world.api_token) as http:
        assert http.get("/api/auth/me").status_code == 200


def _b_client_still_works(world: World) -> None:
    with world.server.client() as http:
        response = http.post(
            f"/iam/realms/{world.realm}/protocol/openid-connect/token",
            data={
                "grant_type": "client_credentials",
                "client_id": world.client_id,
                "client_secret": world.client_secret,
            },
        )
    assert response.status_code == 200, response.text


def _client_credentials(client_id: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": "guess"}


# --- the console's connectivity objects (Things, groups, tags, reports) ----------------------
# Kept in one block: B gets a SIM linked to its registered device, a Things group, a tag and
# a generated usage report; A gets one of each of its own.


VOLATILE = VOLATILE | {"ActualUsage"}
"""B's own reads of its device (the snapshot's) are traffic of its SIM too."""


def _thing_of(tenant: Tenant, n: int) -> str:
    from meadowlark.connectivity.identifiers import with_check_digit

    return with_check_digit(f"8933{int(tenant.tag[2:], 16) % 10**8:08d}{n:06d}")


def _console_objects(server: Lwm2mTestServer, tenant: Tenant, n: int) -> dict[str, str]:
    """A SIM, a group, a tag and a generated report of ``tenant``, all named after it."""
    iccid = _thing_of(tenant, n)
    with tenant.client(server) as http:
        group = _created(http.post("/thingsgroup", json={"ThingsGroupName": f"{tenant.tag}-tg"}))
        thing = _created(
            http.post(
                "/thing",
                json={
                    "ICCID": iccid,
                    "ThingName": f"{tenant.tag}-sim",
                    "MSISDN": "4915550001",
                    "ThingsGroupId": group["ThingsGroupId"],
                },
            )
        )
        tag = _created(http.post("/tag", json={"Name": f"{tenant.tag}-tag"}))
        template = _created(
            http.post(
                "/report-template",
                json={
                    "Name": f"{tenant.tag}-report",
                    "ReportPeriod": {"startDate": 0, "endDate": 4_102_444_800_000},
                },
            ),
            200,
        )
        history = _created(http.post(f"/report-history/{template}"), 200)
        csv_path = http.get("/report-history/byTemplate").json()["dbResponse"][0]["csvPath"]
        login = http.post(
            "/Auth", json={"UserName": f"{tenant.tag}-admin", "Password": "User-Test-Pa55word!"}
        )
    return {
        "thing_id": thing["ThingId"],
        "group_id": group["ThingsGroupId"],
        "tag_id": tag["TagId"],
        "template_id": template,
        "history_id": history,
        "csv_path": csv_path,
        "customer": login.json()["CustomerId"],
    }


def _connectivity_objects(server: Lwm2mTestServer, b: Tenant, device: str) -> dict[str, str]:
    objects = _console_objects(server, b, 1)
    with b.client(server) as http:
        thing = objects["thing_id"]
        assert http.put(f"/thing/{thing}/device", json={"Endpoint": device}).is_success
        assert http.put(f"/thing/{thing}/state", json={"state": "ACTIVE"}).is_success
    return objects


def _connectivity_reads(world: World) -> dict[str, str]:
    objects = world.connectivity
    return {
        "thing": f"/thing/{objects['thing_id']}",
        "things group": f"/thingsgroup/{objects['group_id']}",
        "tags": "/tags",
        "report histories": "/report-history/byTemplate",
    }


_A_CONSOLE: dict[str, dict[str, str]] = {}


def _a_console(world: World) -> dict[str, str]:
    """A's own console objects (made once, on first use)."""
    if world.a.tag not in _A_CONSOLE:
        _A_CONSOLE[world.a.tag] = _console_objects(world.server, world.a, 2)
    return _A_CONSOLE[world.a.tag]


def _a_apikey(world: World) -> dict[str, str]:
    return {"apikey": _a_console(world)["customer"]}


def _b_thing(**extra: Any) -> Target:
    headers = extra.pop("apikey", False)
    fixed = extra.pop("params", {})
    return Target(
        sibling=lambda w: Call(
            {"ThingId": w.connectivity["thing_id"], **fixed},
            headers=_a_apikey(w) if headers else {},
            **extra,
        ),
        missing=lambda w: Call(
            {"ThingId": f"ThingId_ICCID_{_thing_of(w.b, 999)}", **fixed},
            headers=_a_apikey(w) if headers else {},
            **extra,
        ),
    )


def _b_console(name: str, key: str, missing: Callable[[], str], **extra: Any) -> Target:
    return _by(name, lambda w: w.connectivity[key], missing, **extra)


CONNECTIVITY_FIXTURES: dict[tuple[str, str], Target] = {
    ("GET", "/thing/{ThingId}"): _b_thing(),
    ("DELETE", "/thing/{ThingId}"): _b_thing(),
    ("GET", "/thing/{ThingId}/state"): _b_thing(),
    ("PUT", "/thing/{ThingId}/state"): _b_thing(json={"state": "SUSPENDED"}),
    ("PUT", "/thing/{ThingId}/device"): _b_thing(json={"Endpoint": ""}),
    ("GET", "/thing/{ThingId}/refreshConnection"): _b_thing(),
    ("POST", "/thing/{ThingId}/ping"): _b_thing(apikey=True, json={}),
    ("POST", "/thing/{ThingId}/sms"): _b_thing(json={"Message": "from A", "From": "A"}),
    ("GET", "/thingsgroup/{ThingsGroupId}"): _b_console(
        "ThingsGroupId", "group_id", lambda: f"ThingsGroupId_{uuid.uuid4()}"
    ),
    ("PUT", "/thingsgroup/{ThingsGroupId}"): _b_console(
        "ThingsGroupId",
        "group_id",
        lambda: f"ThingsGroupId_{uuid.uuid4()}",
        json={"ThingsGroupName": "changed by A", "IMEIPrefix": "35", "LockMasterImei": True},
    ),
    ("DELETE", "/thingsgroup/{ThingsGroupId}"): _b_console(
        "ThingsGroupId", "group_id", lambda: f"ThingsGroupId_{uuid.uuid4()}"
    ),
    ("DELETE", "/tag/{TagId}"): _b_console("TagId", "tag_id", lambda: f"TagId_{uuid.uuid4()}"),
    ("POST", "/report-history/{ReportTemplateId}"): _b_console(
        "ReportTemplateId", "template_id", lambda: f"ReportTemplateId_{uuid.uuid4()}"
    ),
    ("GET", "/report-history/downloadReport/csv/{csvPath}"): _b_console(
        "csvPath", "csv_path", lambda: f"/efs/reports/csv/2026/1/1/Report_{_nobody()}.csv"
    ),
}


def _own_console_lists(world: World) -> list[dict[str, str]]:
    _a_console(world)
    return [{}]


CONNECTIVITY_LIST_QUERIES: dict[str, Callable[[World], list[dict[str, str]]]] = {
    "/things": lambda w: [
        *_own_console_lists(w),
        {"filterBy[ThingId]": w.connectivity["thing_id"]},
        {"filterBy[ThingsGroupId]": w.connectivity["group_id"]},
    ],
    "/thing/status": lambda w: [*_own_console_lists(w), {"ThingIds": w.connectivity["thing_id"]}],
    "/thingsgroups": _own_console_lists,
    "/tags": _own_console_lists,
    "/report-templates": _own_console_lists,
    "/report-history/byTemplate": lambda w: [
        *_own_console_lists(w),
        {"ReportTemplateId": w.connectivity["template_id"]},
    ],
}
# Requests naming B's console objects join REFERENCES below, once ``_refers`` exists.

# --- end of the connectivity block -----------------------------------------------------------

SENSOR = {"params": {"path": SENSOR_URL.lstrip("/")}}
WRITE = {"params": {"path": APPLICATION_TYPE}, "json": {"value": "changed by A"}}
COMPOSITE_WRITE = {"json": {f"/{APPLICATION_TYPE}": {"value": "changed by A"}}}
COMPOSITE_PATHS = {"query": {"paths": f"/3/0/0,{SENSOR_URL}"}}
DEVICE_OBSERVATION = {"params": {"path": SENSOR_NAME}}

FIXTURES: dict[tuple[str, str], Target] = {
    # -- accounts and tenancy
    ("GET", f"{COIOTE}/users/{{login}}"): _user(),
    ("PATCH", f"{COIOTE}/users/{{login}}"): _user(
        json={"userEnabled": False, "emailVerified": False}
    ),
    ("DELETE", f"{COIOTE}/users/{{login}}"): _user(),
    ("GET", f"{COIOTE}/domains/{{domain_id}}"): _domain(),
    ("PUT", f"{COIOTE}/domains/{{domain_id}}"): _domain(json={"newDescription": "changed by A"}),
    ("DELETE", f"{COIOTE}/domains/{{domain_id}}"): _domain(),
    ("GET", "/api/admin/roles/{role_id}"): _role(),
    ("PUT", "/api/admin/roles/{role_id}"): _role(json={"permissions": ["GET groups"]}),
    ("DELETE", "/api/admin/roles/{role_id}"): _role(),
    ("DELETE", "/api/admin/service-accounts/{client_id}"): Target(
        sibling=lambda w: Call({"client_id": w.client_id}),
        missing=lambda w: Call({"client_id": _nobody()}),
        still_works=_b_client_still_works,
    ),
    # Per-user, not per-domain: A's administrator cannot revoke B's token by its id.
    ("DELETE", "/api/auth/tokens/{token_id}"): Target(
        sibling=lambda w: Call({"token_id": w.token_id}),
        missing=lambda w: Call({"token_id": uuid.uuid4().hex}),
        still_works=_b_token_still_works,
    ),
    # Public: it addresses no tenant object, but B's client cannot be used without its secret.
    ("POST", "/iam/realms/{realm}/protocol/openid-connect/token"): Target(
        sibling=lambda w: Call({"realm": w.realm}, data=_client_credentials(w.client_id)),
        missing=lambda w: Call({"realm": w.realm}, data=_client_credentials(_nobody())),
        refused=frozenset({401}),
        still_works=_b_client_still_works,
    ),
    # -- devices and groups (Coiote)
    ("GET", f"{COIOTE}/devices/{{device_id}}"): _device(),
    ("PUT", f"{COIOTE}/devices/{{device_id}}"): _device(
        json={"description": "changed by A", "blacklisted": True, "removeGroups": []}
    ),
    ("DELETE", f"{COIOTE}/devices/{{device_id}}"): _device(),
    ("GET", f"{COIOTE}/groups/{{group_id}}"): _group(),
    ("PUT", f"{COIOTE}/groups/{{group_id}}"): _group(json={"description": "changed by A"}),
    ("DELETE", f"{COIOTE}/groups/{{group_id}}"): _group(),
    ("POST", f"{COIOTE}/sessions/{{device_id}}"): _device(),
    ("POST", f"{COIOTE}/sessions/{{device_id}}/allow-deregistered"): _device(),
    ("GET", f"{COIOTE}/cachedDataModels/{{deviceId}}"): _device("deviceId"),
    ("GET", f"{COIOTE}/instantiatedResources/dataModelDefinition/{{deviceId}}"): _device(
        "deviceId"
    ),
    ("GET", f"{COIOTE}/instantiatedResources/resourcesData/{{deviceId}}"): _device("deviceId"),
    # -- observations (Coiote)
    ("GET", f"{COIOTE}/observations/device/{{deviceId}}/{{path}}"): _device(
        "deviceId", **DEVICE_OBSERVATION
    ),
    ("POST", f"{COIOTE}/observations/device/{{deviceId}}/{{path}}"): _device(
        "deviceId", **DEVICE_OBSERVATION, json={"attributes": [{"name": "pmax", "value": "9"}]}
    ),
    ("DELETE", f"{COIOTE}/observations/device/{{deviceId}}/{{path}}"): _device(
        "deviceId", **DEVICE_OBSERVATION
    ),
    ("POST", f"{COIOTE}/observations/group/resourcePath/{{groupId}}/{{path}}"): _group(
        "groupId", params={"path": SENSOR_NAME}, json={"minPeriod": 1}
    ),
    ("POST", f"{COIOTE}/observations/group/resourceUrl/{{groupId}}/{{url}}"): _group(
        "groupId", params={"url": SENSOR_URL}, json={"minPeriod": 1}
    ),
    # -- LwM2M operations (Leshan-style)
    ("GET", f"{LWM2M}/clients/{{ep}}"): _client(),
    ("GET", f"{LWM2M}/clients/{{ep}}/composite"): _client(**COMPOSITE_PATHS),
    ("PUT", f"{LWM2M}/clients/{{ep}}/composite"): _client(**COMPOSITE_WRITE),
    ("POST", f"{LWM2M}/clients/{{ep}}/composite/observe"): _client(**COMPOSITE_PATHS),
    ("DELETE", f"{LWM2M}/clients/{{ep}}/composite/observe"): _client(**COMPOSITE_PATHS),
    ("GET", f"{LWM2M}/clients/{{ep}}/{{path}}/discover"): _client(params={"path": "3303"}),
    ("PUT", f"{LWM2M}/clients/{{ep}}/{{path}}/attributes"): _client(
        **SENSOR, query={"pmin": "1", "pmax": "2"}
    ),
    ("POST", f"{LWM2M}/clients/{{ep}}/{{path}}/observe"): _client(**SENSOR),
    ("DELETE", f"{LWM2M}/clients/{{ep}}/{{path}}/observe"): _client(**SENSOR),
    ("GET", f"{LWM2M}/clients/{{ep}}/{{path}}"): _client(**SENSOR),
    ("PUT", f"{LWM2M}/clients/{{ep}}/{{path}}"): _client(**WRITE),
    ("POST", f"{LWM2M}/clients/{{ep}}/{{path}}"): _client(
        params={"path": "3303"},
        json={"kind": "instance", "resources": [{"id": 5750, "value": "made by A"}]},
    ),
    ("DELETE", f"{LWM2M}/clients/{{ep}}/{{path}}"): _client(params={"path": "3303/0"}),
}
FIXTURES.update(CONNECTIVITY_FIXTURES)


# --- firmware resources (issue 8) -------------------------------------------------------------
# B's resource (with an uploaded image) and one of A's, made on first use.

_FIRMWARE_RESOURCES: dict[tuple[int, str], str] = {}


def _firmware_resource(world: World, tenant: Tenant) -> str:
    key = (id(world), tenant.tag)
    if key not in _FIRMWARE_RESOURCES:
        resource_id = f"{tenant.tag}-fw"
        body = {
            "id": resource_id,
            "name": f"{tenant.tag} firmware",
            "location": {"InternalLocation": {"fileName": f"{tenant.tag}.bin"}},
        }
        with tenant.client(world.server) as http:
            _created(http.post(f"{COIOTE}/resources", json=body))
            uploaded = http.put(
                f"{COIOTE}/resources/{resource_id}/data",
                content=b"image of " + tenant.tag.encode(),
                headers={"Content-Type": "application/octet-stream"},
            )
            assert uploaded.status_code == 200, uploaded.text
        _FIRMWARE_RESOURCES[key] = resource_id
    return _FIRMWARE_RESOURCES[key]


def _b_resource_still_works(world: World) -> None:
    resource_id = _firmware_resource(world, world.b)
    with world.as_b() as http:
        resource = http.get(f"{COIOTE}/resources/{resource_id}")
    assert resource.status_code == 200, resource.text
    assert resource.json()["size"] == len(b"image of " + world.b.tag.encode())


def _resource(**extra: Any) -> Target:
    target = _by("resource_id", lambda w: _firmware_resource(w, w.b), **extra)
    return Target(target.sibling, target.missing, still_works=_b_resource_still_works)


FIXTURES.update(
    {
        ("GET", f"{COIOTE}/resources/{{resource_id}}"): _resource(),
        ("DELETE", f"{COIOTE}/resources/{{resource_id}}"): _resource(),
        ("PUT", f"{COIOTE}/resources/{{resource_id}}/data"): _resource(),
        ("POST", f"{COIOTE}/resources/{{resource_id}}/downloadUrl"): _resource(
            json={"protocol": "COAP"}
        ),
    }
)


# --- bootstrap configurations (issue 11) -------------------------------------------------------
# B's bootstrap device with its own configuration, and a configuration of B's group.

_BOOTSTRAP: dict[int, str] = {}
BOOTSTRAP_CONFIG = {"lifetime": 4321, "shortServerId": 9}


def _bootstrap_objects(world: World) -> str:
    """B's bootstrap device id (made, with both configurations, on first use)."""
    if id(world) not in _BOOTSTRAP:
        endpoint = f"{world.b.tag}-bsdev"
        with world.as_b() as http:
            body = {"properties": {"endpointName": endpoint}, "connectorType": "bootstrap"}
            account_id = _created(http.post(f"{COIOTE}/devices", json=body))["id"]
            for kind, target in (("device", account_id), ("group", world.group)):
                url = f"{COIOTE}/bootstrap/configuration/{kind}/{target}"
                _created(http.put(url, json=BOOTSTRAP_CONFIG), 200)
        _BOOTSTRAP[id(world)] = account_id
    return _BOOTSTRAP[id(world)]


def _b_bootstrap_still_works(world: World) -> None:
    with world.as_b() as http:
        for kind, target in (("device", _bootstrap_objects(world)), ("group", world.group)):
            shown = http.get(f"{COIOTE}/bootstrap/configuration/{kind}/{target}")
            assert shown.status_code == 200, shown.text
            assert shown.json()["lifetime"] == BOOTSTRAP_CONFIG["lifetime"]


def _bootstrap(kind: str, **extra: Any) -> Target:
    if kind == "device":
        target = _by("device_id", _bootstrap_objects, **extra)
    else:
        target = _by("group_id", lambda w: (_bootstrap_objects(w), w.group)[1], **extra)
    return Target(target.sibling, target.missing, still_works=_b_bootstrap_still_works)


for _kind, _name in (("device", "device_id"), ("group", "group_id")):
    _route = f"{COIOTE}/bootstrap/configuration/{_kind}/{{{_name}}}"
    FIXTURES.update(
        {
            ("GET", _route): _bootstrap(_kind),
            ("PUT", _route): _bootstrap(_kind, json={"lifetime": 5}),
            ("DELETE", _route): _bootstrap(_kind),
        }
    )


def _url(route: str, params: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        return quote(params[match.group(1)], safe="/")

    return re.sub(r"\{(\w+)\}", fill, route)


def _send(http: httpx.Client, method: str, route: str, call: Call) -> httpx.Response:
    return http.request(
        method,
        _url(route, call.params),
        params=call.query,
        json=call.json,
        data=call.data,
        headers=call.headers,
    )


def _body(response: httpx.Response) -> Any:
    """The JSON body without an error's ``requestId`` (each request has its own); None
    for an empty one (a 204)."""
    if not response.content:
        return None
    body = response.json()
    if isinstance(body, dict):
        body.pop("requestId", None)
    return body


def _without_ids(body: Any, call: Call) -> Any:
    """The answer with the ids the request named replaced by their names."""
    text = json.dumps(body, sort_keys=True)
    named = {**call.params, **(call.data or {}), **call.names}
    for name, value in sorted(named.items(), key=lambda item: -len(item[1])):
        text = text.replace(value, f"<{name}>")
    return json.loads(text)


# --- lists -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """A list route: the queries to try as A (some aimed at B's objects), and whether A's
    own objects must show (so that an empty answer cannot pass by accident) in the first
    one, A's plain view (``{}``, or the parameters a route cannot do without)."""

    queries: Callable[[World], list[dict[str, str]]] = lambda w: [{}]
    shows_own: bool = True


def _criteria(*conditions: Callable[[World], str]) -> Callable[[World], list[dict[str, str]]]:
    return lambda w: [{}, *({"searchCriteria": condition(w)} for condition in conditions)]


LISTS: dict[str, Listing] = {
    f"{COIOTE}/users/search/usernames": Listing(
        lambda w: [{}, {"domain": w.b.domain}, {"username": w.b.tag}, {"username": w.user}]
    ),
    f"{COIOTE}/domains": Listing(_criteria(lambda w: f"id eq '{w.b.domain}'")),
    f"{COIOTE}/devices": Listing(
        _criteria(lambda w: f"id eq '{w.device}'", lambda w: f"domain eq '{w.b.domain}'")
    ),
    f"{COIOTE}/devices/find/details": Listing(
        _criteria(lambda w: f"id eq '{w.device}'", lambda w: f"directGroups eq '{w.group}'")
    ),
    f"{COIOTE}/groups": Listing(_criteria(lambda w: f"domain eq '{w.b.domain}'")),
    f"{COIOTE}/observations": Listing(
        _criteria(lambda w: f"deviceId eq '{w.device}'", lambda w: f"groupId eq '{w.group}'"),
        shows_own=False,
    ),
    "/api/admin/audit": Listing(lambda w: [{}, {"actor": f"{w.b.tag}-admin"}]),
    "/api/admin/users": Listing(),
    "/api/admin/roles": Listing(),
    "/api/admin/service-accounts": Listing(shows_own=False),
    "/api/auth/tokens": Listing(),
    f"{LWM2M}/clients": Listing(shows_own=False),
}
LISTS.update({route: Listing(q) for route, q in CONNECTIVITY_LIST_QUERIES.items()})


FEEDS = {
    f"{LWM2M}/events": ("UPDATED", "ep"),
    f"{COIOTE}/events": ("deviceUpdated", "endpointName"),
}
"""Server-Sent Events routes: the event a registration update of B's device makes, and the
query parameter that narrows the feed to one endpoint."""
NOT_LISTS = {
    "/health": "liveness, no tenant data",
    "/ready": "readiness, no tenant data",
    "/api/auth/me": "the caller itself",
    f"{COIOTE}/devices/all/count": "a number: test_device_count_counts_only_own_devices",
}


# -- firmware resources (issue 8): both tenants own one, made on first use
def _firmware_queries(world: World) -> list[dict[str, str]]:
    _firmware_resource(world, world.a)
    _firmware_resource(world, world.b)
    return [{}]


LISTS[f"{COIOTE}/resources"] = Listing(_firmware_queries)
NOT_LISTS["/fw"] = "firmware download: the token in the query is the credential"
NOT_LISTS["/metrics"] = (
    "node-wide figures (every tenant's together): refused to a tenant's administrator, "
    "test_metrics_are_refused_to_a_tenant_administrator"
)


def test_metrics_are_refused_to_a_tenant_administrator(world):
    with world.as_a() as http:
        response = http.get("/metrics")
    assert response.status_code == 403, response.text
    assert "meadowlark_" not in response.text


# --- event handlers (issue 12) ----------------------------------------------------------------
# B's webhook handler and one of A's, made on first use (their receivers are never reached:
# the handlers select a resource no device sends).

HANDLERS = f"{COIOTE}/deviceEvents/handler"
_EVENT_HANDLERS: dict[tuple[int, str], str] = {}


_HANDLER_CONNECTIONS: dict[str, dict[str, Any]] = {
    "webhook": {"uri": "http://127.0.0.1:9/hook"},
    "kafka": {"type": "custom", "value": "bootstrap.servers=127.0.0.1:9", "topic": "t"},
    "mqtt": {"uri": "mqtt://127.0.0.1:9"},
}


def _handler_body(
    tenant: Tenant, domain: str | None = None, kind: str = "webhook"
) -> dict[str, Any]:
    connection = dict(_HANDLER_CONNECTIONS[kind])
    if kind == "webhook":
        connection["auth"] = {"type": "token", "token": f"{tenant.tag}-token"}
    body: dict[str, Any] = {
        "name": f"{tenant.tag} hook",
        "filter": {"type": "telemetry", "lwm2mUrls": ["/33999/0/1"]},
        "connectionConfig": connection,
    }
    if domain is not None:
        body["domain"] = domain
    return body


def _event_handler(world: World, tenant: Tenant) -> str:
    key = (id(world), tenant.tag)
    if key not in _EVENT_HANDLERS:
        with tenant.client(world.server) as http:
            _EVENT_HANDLERS[key] = _created(
                http.post(f"{HANDLERS}/webhook", json=_handler_body(tenant))
            )
    return _EVENT_HANDLERS[key]


def _b_handler_still_works(world: World) -> None:
    handler_id = _event_handler(world, world.b)
    with world.as_b() as http:
        handler = http.get(f"{HANDLERS}/{handler_id}")
    assert handler.status_code == 200, handler.text
    shown = handler.json()
    assert shown["name"] == f"{world.b.tag} hook" and shown["enabled"] is True
    assert shown["connectionConfig"]["uri"] == "http://127.0.0.1:9/hook"


def _handler(**extra: Any) -> Target:
    target = _by(
        "id",
        lambda w: _event_handler(w, w.b),
        lambda: secrets.token_hex(12),
        **extra,
    )
    return Target(target.sibling, target.missing, still_works=_b_handler_still_works)


FIXTURES.update(
    {
        ("GET", f"{HANDLERS}/{{id}}"): _handler(),
        ("DELETE", f"{HANDLERS}/{{id}}"): _handler(),
        ("PUT", f"{HANDLERS}/webhook/{{id}}"): _handler(json={"name": "renamed by A"}),
        ("PUT", f"{HANDLERS}/kafka/{{id}}"): _handler(json={"name": "renamed by A"}),
        ("PUT", f"{HANDLERS}/mqtt/{{id}}"): _handler(json={"name": "renamed by A"}),
        ("POST", f"{HANDLERS}/test/existing/{{id}}"): _handler(),
    }
)


def _handler_queries(world: World) -> list[dict[str, str]]:
    _event_handler(world, world.a)
    _event_handler(world, world.b)
    return [{}]


LISTS[HANDLERS] = Listing(_handler_queries)


def _handlers_in_domain(domain: Callable[[World], str]) -> Target:
    """A's list of the handlers of B's domain, as if that domain did not exist."""

    def call(world: World) -> Call:
        _event_handler(world, world.b)
        named = domain(world)
        return Call({}, query={"domain": named}, names={"ref": named})

    return Target(call, _missing_handlers_call)


def _missing_handlers_call(world: World) -> Call:
    named = _missing_domain(world)
    return Call({}, query={"domain": named}, names={"ref": named})


def _handler_refs() -> dict[str, tuple[str, str, Target]]:
    refs: dict[str, tuple[str, str, Target]] = {
        "handlers of B's domain": ("GET", HANDLERS, _handlers_in_domain(lambda w: w.b.domain)),
    }
    for kind in ("webhook", "kafka", "mqtt"):
        refs[f"new {kind} handler in B's domain"] = _refers(
            "POST",
            f"{HANDLERS}/{kind}",
            lambda w, d, kind=kind: _handler_body(w.a, d, kind),
            lambda w: w.b.domain,
            _missing_domain,
        )
        refs[f"test of a {kind} handler in B's domain"] = _refers(
            "POST",
            f"{HANDLERS}/test/{kind}",
            lambda w, d, kind=kind: _handler_body(w.a, d, kind),
            lambda w: w.b.domain,
            _missing_domain,
        )
    return refs


# --- tasks, reports, templates and setting values (issue 8) ------------------------------------
# Kept in one block. B owns a read task on its registered device (with a callback, so the
# callback route has a target) and that run's finished report, a report cursor, a domain
# template and setting values (one of its domain, one secret of its group). A owns the same
# of its own (its device registers just long enough to run its task), and a group task,
# whose id names A's group, so that A's lists of ids show A's own.

READ_TASK = {"operations": [{"read": {"key": "/3/0/0"}}]}
RUN_READ_TEMPLATE = {
    "templateName": "readResource",
    "config": {"parameters": [{"name": "key", "value": "/3/0/0"}]},
}


def _template_body(tenant: Tenant) -> dict[str, Any]:
    return {"description": f"{tenant.tag} reads", **READ_TASK}


def _task_objects(
    server: Lwm2mTestServer, tenant: Tenant, device: str, group: str
) -> dict[str, str]:
    """``tenant``'s task on its registered ``device`` with its finished report, a report
    cursor, a template and setting values (its domain's, and a secret one of ``group``)."""
    tag = tenant.tag
    callback = {"name": f"{tag}-callback", "url": "http://127.0.0.1:9/reports", "secret": "s" * 20}
    definition = {"taskDefinition": {"name": f"{tag}-read", **READ_TASK, "callback": callback}}
    with tenant.client(server) as http:
        task = _created(http.post(f"{COIOTE}/tasks/configure/{device}", json=definition))
        report = f"{COIOTE}/taskReports/{quote(task, safe='')}/{device}"
        eventually(lambda: http.get(report).status_code == 200)
        template = f"{tag}-template"
        put = http.put(
            f"{COIOTE}/tasksFromTemplates/templates/{template}", json=_template_body(tenant)
        )
        assert put.status_code == 204, put.text
        for setting in (
            {"name": f"{tag}_zone", "value": f"{tag}-zone"},
            {"name": f"{tag}_key", "value": f"{tag}-secret", "groupId": group, "isSecret": True},
        ):
            assert http.put(f"{COIOTE}/settingValues", json=setting).status_code == 204
        cursor = _created(http.get(f"{COIOTE}/taskReports/findReports"), 200)
    return {
        "task_id": task,
        "device": device,
        "callback": callback["name"],
        "template": template,
        "setting": f"{tag}_zone",
        "cursor": str(cursor),
    }


def _own_task_objects(server: Lwm2mTestServer, a: Tenant) -> dict[str, str]:
    """A's equivalents; A's device registers for its task's run only."""
    device, group = f"{a.tag}-dev", f"{a.tag}-group"
    simulated = server.call(_registered(device, server.server_uri))
    try:
        objects = _task_objects(server, a, device, group)
    finally:
        server.call(simulated.stop())
    with a.client(server) as http:
        group_task = http.post(f"{COIOTE}/tasksFromTemplates/group/{group}", json=RUN_READ_TEMPLATE)
    return {**objects, "group_task_id": _created(group_task)}


def _task_reads(world: World) -> dict[str, str]:
    """For the snapshot: B's task, its report, and B's lists of templates and settings."""
    task = world.tasks["task_id"]
    return {
        "task": f"{COIOTE}/tasks/{quote(task, safe='')}",
        "task report": f"{COIOTE}/taskReports/{quote(task, safe='')}/{world.device}",
        "task templates": f"{COIOTE}/tasksFromTemplates/templates",
        "setting values": f"{COIOTE}/settingValues",
    }


def _missing_task() -> str:
    return f"d:{secrets.token_hex(8)}:1"


def _task(**extra: Any) -> Target:
    return _by("taskId", lambda w: w.tasks["task_id"], _missing_task, **extra)


def _template(**extra: Any) -> Target:
    return _by("name", lambda w: w.tasks["template"], **extra)


def _forget_a_templates(world: World) -> None:
    """A's PUT made A's own templates (one named like B's): remove them, so that the DELETE
    case meets B's name only in B's domain."""
    with world.as_a() as http:
        for name in (world.tasks["template"], f"{world.a.tag}-fresh"):
            response = http.delete(f"{COIOTE}/tasksFromTemplates/templates/{name}")
            assert response.status_code == 204, response.text


TASK_FIXTURES: dict[tuple[str, str], Target] = {
    ("GET", f"{COIOTE}/tasks/{{taskId}}"): _task(),
    ("PUT", f"{COIOTE}/tasks/{{taskId}}"): _task(
        json={"taskName": "changed by A", "isActive": False, "parameters": [], "properties": {}}
    ),
    ("DELETE", f"{COIOTE}/tasks/{{taskId}}"): _task(),
    ("DELETE", f"{COIOTE}/tasks/callback/{{taskId}}/{{callbackName}}"): Target(
        sibling=lambda w: Call({"taskId": w.tasks["task_id"], "callbackName": w.tasks["callback"]}),
        missing=lambda w: Call({"taskId": _missing_task(), "callbackName": w.tasks["callback"]}),
    ),
    ("POST", f"{COIOTE}/tasks/configure/{{deviceId}}"): _device(
        "deviceId", json={"taskDefinition": {"name": "by A", **READ_TASK}}
    ),
    ("POST", f"{COIOTE}/tasks/upgrade/{{deviceId}}/{{resourceId}}"): Target(
        sibling=lambda w: Call(
            {"deviceId": w.device, "resourceId": _firmware_resource(w, w.b)},
            query={"transferProtocol": "COAP"},
        ),
        missing=lambda w: Call(
            {"deviceId": _nobody(), "resourceId": _nobody()}, query={"transferProtocol": "COAP"}
        ),
    ),
    ("POST", f"{COIOTE}/tasksFromTemplates/device/{{deviceId}}"): _device(
        "deviceId", json=RUN_READ_TEMPLATE
    ),
    ("POST", f"{COIOTE}/tasksFromTemplates/group/{{groupId}}"): _group(
        "groupId", json=RUN_READ_TEMPLATE
    ),
    # A template's name is its domain's own: A's PUT of B's name makes A's template, exactly
    # as a name no one uses does, and leaves B's as it was (the snapshot).
    ("PUT", f"{COIOTE}/tasksFromTemplates/templates/{{name}}"): Target(
        sibling=lambda w: Call({"name": w.tasks["template"]}, json=_template_body(w.a)),
        missing=lambda w: Call({"name": f"{w.a.tag}-fresh"}, json=_template_body(w.a)),
        refused=frozenset({204}),
        still_works=_forget_a_templates,
    ),
    ("DELETE", f"{COIOTE}/tasksFromTemplates/templates/{{name}}"): _template(),
    ("GET", f"{COIOTE}/taskReports/{{taskId}}/{{deviceId}}"): Target(
        sibling=lambda w: Call({"taskId": w.tasks["task_id"], "deviceId": w.device}),
        missing=lambda w: Call({"taskId": _missing_task(), "deviceId": _nobody()}),
    ),
    ("GET", f"{COIOTE}/settingValues/deviceProfile/{{deviceId}}"): _device(
        "deviceId", query={"withDeviceProperties": "true"}
    ),
    ("GET", f"{COIOTE}/settingValues/groupProfile/{{groupId}}"): _group("groupId"),
}
FIXTURES.update(TASK_FIXTURES)

SINCE_EVER = {"lastUpdateTime": "2000-01-01T00:00:00Z"}


def _own_cursor(world: World, criteria: str | None = None) -> str:
    """A new report cursor of A's (over ``criteria``)."""
    query = {"searchCriteria": criteria} if criteria else {}
    with world.as_a() as http:
        return str(_created(http.get(f"{COIOTE}/taskReports/findReports", params=query), 200))


def _about_b_reports(world: World) -> list[str]:
    return [f"taskId eq '{world.tasks['task_id']}'", f"deviceId eq '{world.device}'"]


LISTS.update(
    {
        f"{COIOTE}/tasks": Listing(
            _criteria(
                lambda w: f"id eq '{w.tasks['task_id']}'",
                lambda w: f"domain eq '{w.b.domain}'",
                lambda w: f"targetId eq '{w.device}'",
            )
        ),
        f"{COIOTE}/tasksFromTemplates/templates": Listing(),
        f"{COIOTE}/taskReports": Listing(
            _criteria(
                lambda w: f"taskId eq '{w.tasks['task_id']}'",
                lambda w: f"deviceId eq '{w.device}'",
                lambda w: f"domain eq '{w.b.domain}'",
            )
        ),
        f"{COIOTE}/taskReports/findReports": Listing(
            lambda w: [{}, *({"searchCriteria": c} for c in _about_b_reports(w))],
            shows_own=False,  # a cursor id: moreReports reads what it shows
        ),
        f"{COIOTE}/taskReports/moreReports": Listing(
            lambda w: [
                {"cursor": _own_cursor(w)},
                *({"cursor": _own_cursor(w, c)} for c in _about_b_reports(w)),
            ]
        ),
        f"{COIOTE}/taskReports/findSince": Listing(
            lambda w: [
                SINCE_EVER,
                {**SINCE_EVER, "taskId": w.tasks["task_id"]},
                {**SINCE_EVER, "deviceId": w.device},
                {**SINCE_EVER, "taskId": w.tasks["task_id"], "deviceId": w.device},
            ]
        ),
        # Counts only; B's task id is refused as if unknown (TASK_REFERENCES).
        f"{COIOTE}/taskReports/summary": Listing(
            lambda w: [{"taskId": w.own_tasks["task_id"]}], shows_own=False
        ),
        f"{COIOTE}/settingValues": Listing(
            _criteria(
                lambda w: f"name eq '{w.tasks['setting']}'",
                lambda w: f"domain eq '{w.b.domain}'",
                lambda w: f"groupId eq '{w.group}'",
            )
        ),
    }
)


def _queried(
    method: str,
    route: str,
    name: str,
    sibling_value: Callable[[World], str],
    missing_value: Callable[[World], str],
    shown_as: str = "{}",
    params: Callable[[World], dict[str, str]] = lambda w: {},
) -> tuple[str, str, Target]:
    """A request of A's whose query parameter ``name`` names one of B's objects; the error
    message shows it as ``shown_as`` (which is what the comparison takes out)."""

    def aimed(value: Callable[[World], str]) -> Callable[[World], Call]:
        def call(world: World) -> Call:
            named = value(world)
            return Call(params(world), query={name: named}, names={name: shown_as.format(named)})

        return call

    return method, route, Target(aimed(sibling_value), aimed(missing_value))


def _bodied(
    method: str,
    route: str,
    body: Callable[[World, str], dict[str, Any]],
    sibling_ref: Callable[[World], str],
    params: Callable[[World], dict[str, str]],
) -> tuple[str, str, Target]:
    """As ``_refers`` (defined further down) does it: a body naming one of B's objects."""

    def aimed(ref: Callable[[World], str]) -> Callable[[World], Call]:
        def call(world: World) -> Call:
            named = ref(world)
            return Call(params(world), json=body(world, named), names={"ref": named})

        return call

    return (
        method,
        route,
        Target(aimed(sibling_ref), aimed(lambda w: _nobody()), refused=frozenset({400, 403, 404})),
    )


def _a_group(w: World) -> dict[str, str]:
    return {"groupId": f"{w.a.tag}-group"}


def _a_device_id(w: World) -> dict[str, str]:
    return {"deviceId": f"{w.a.tag}-dev"}


TASK_REFERENCES: dict[str, tuple[str, str, Target]] = {
    "summary of B's task": _queried(
        "GET",
        f"{COIOTE}/taskReports/summary",
        "taskId",
        lambda w: w.tasks["task_id"],
        lambda w: _missing_task(),
    ),
    "more reports of B's cursor": _queried(
        "GET",
        f"{COIOTE}/taskReports/moreReports",
        "cursor",
        lambda w: w.tasks["cursor"],
        lambda w: str(10**9 + secrets.randbelow(10**6)),
        shown_as="cursor {}",
    ),
    "session of A's device carrying B's task": _queried(
        "POST",
        f"{COIOTE}/sessions/{{device_id}}",
        "taskId",
        lambda w: w.tasks["task_id"],
        lambda w: _missing_task(),
        params=lambda w: {"device_id": f"{w.a.tag}-dev"},
    ),
    "A's device from B's template": _bodied(
        "POST",
        f"{COIOTE}/tasksFromTemplates/device/{{deviceId}}",
        lambda w, t: {"templateName": t},
        lambda w: w.tasks["template"],
        _a_device_id,
    ),
    "A's group from B's template": _bodied(
        "POST",
        f"{COIOTE}/tasksFromTemplates/group/{{groupId}}",
        lambda w, t: {"templateName": t},
        lambda w: w.tasks["template"],
        _a_group,
    ),
    "setting on B's group": _bodied(
        "PUT",
        f"{COIOTE}/settingValues",
        lambda w, g: {"name": f"{w.a.tag}_x", "value": "by A", "groupId": g},
        lambda w: w.group,
        lambda w: {},
    ),
    "setting on B's device": _bodied(
        "PUT",
        f"{COIOTE}/settingValues",
        lambda w, d: {"name": f"{w.a.tag}_x", "value": "by A", "deviceId": d},
        lambda w: w.device,
        lambda w: {},
    ),
}
# Joins REFERENCES once that exists (below).

# --- end of the tasks block ----------------------------------------------------------------------

# --- alerts (issue 12) ---------------------------------------------------------------------------
# Kept in one block. B owns a threshold rule on its group that its device's sensor always
# crosses, and the open alert a read of the sensor raised; A owns a rule of its own. Made on
# first use.

_ALERTS: dict[tuple[int, str], dict[str, str]] = {}


def _alert_objects(world: World) -> dict[str, str]:
    key = (id(world), world.b.tag)
    if key not in _ALERTS:
        rule_body = {
            "name": f"{world.b.tag}-hot",
            "type": "threshold",
            "resourceUrl": SENSOR_URL,
            "above": -1000,
            "groupId": world.group,
        }
        with world.as_b() as http:
            rule = _created(http.post(f"{COIOTE}/alerts/rules", json=rule_body))
            assert http.get(f"{LWM2M}/clients/{world.device}{SENSOR_URL}").is_success
            alert = eventually(
                lambda: http.get(f"{COIOTE}/alerts", params={"deviceId": world.device}).json()[
                    "alerts"
                ]
            )[0]
        with world.as_a() as http:
            own = _created(
                http.post(
                    f"{COIOTE}/alerts/rules",
                    json={"name": f"{world.a.tag}-failed", "type": "taskFailed"},
                )
            )
        _ALERTS[key] = {"rule_id": rule["id"], "alert_id": alert["id"], "own_rule_id": own["id"]}
    return _ALERTS[key]


def _alert_reads(world: World) -> dict[str, str]:
    objects = _alert_objects(world)
    return {
        "alert rule": f"{COIOTE}/alerts/rules/{objects['rule_id']}",
        "alert": f"{COIOTE}/alerts/{objects['alert_id']}",
    }


def _alert_rule(**extra: Any) -> Target:
    return _by(
        "rule_id", lambda w: _alert_objects(w)["rule_id"], lambda: secrets.token_hex(12), **extra
    )


def _alert(**extra: Any) -> Target:
    return _by(
        "alert_id", lambda w: _alert_objects(w)["alert_id"], lambda: secrets.token_hex(12), **extra
    )


FIXTURES.update(
    {
        ("GET", f"{COIOTE}/alerts/rules/{{rule_id}}"): _alert_rule(),
        ("PUT", f"{COIOTE}/alerts/rules/{{rule_id}}"): _alert_rule(
            json={"name": "changed by A", "enabled": False}
        ),
        ("DELETE", f"{COIOTE}/alerts/rules/{{rule_id}}"): _alert_rule(),
        ("GET", f"{COIOTE}/alerts/{{alert_id}}"): _alert(),
        ("POST", f"{COIOTE}/alerts/{{alert_id}}/acknowledge"): _alert(),
    }
)


def _alert_queries(world: World) -> list[dict[str, str]]:
    _alert_objects(world)
    return [{}, {"deviceId": world.device}, {"state": "raised"}, {"state": "open"}]


LISTS.update(
    {
        f"{COIOTE}/alerts/rules": Listing(lambda w: _alert_queries(w)[:1]),
        # A's devices have no alerts: B's must not show, whatever the filter.
        f"{COIOTE}/alerts": Listing(_alert_queries, shows_own=False),
    }
)
ALERT_REFERENCES: dict[str, tuple[str, str, Target]] = {
    "alert rule on B's group": _bodied(
        "POST",
        f"{COIOTE}/alerts/rules",
        lambda w, g: {"name": "by A", "type": "noContact", "noContactMinutes": 5, "groupId": g},
        lambda w: w.group,
        lambda w: {},
    ),
    "own alert rule moved to B's group": _bodied(
        "PUT",
        f"{COIOTE}/alerts/rules/{{rule_id}}",
        lambda w, g: {"groupId": g},
        lambda w: w.group,
        lambda w: {"rule_id": _alert_objects(w)["own_rule_id"]},
    ),
}
# Joins REFERENCES once that exists (below).

# --- end of the alerts block ------------------------------------------------------------------


# --- monitoring (issue 12) -----------------------------------------------------------------------
# Kept in one block, made on first use (the snapshot's first read makes them): B monitors its
# device, names its sensor URL with an alias and has a named monitoring on its group; A has a
# named monitoring of its own.

_MONITORING: dict[int, dict[str, str]] = {}


def _monitoring_objects(world: World) -> dict[str, str]:
    key = id(world)
    if key not in _MONITORING:
        objects = {"b_name": f"{world.b.tag}-mon", "a_name": f"{world.a.tag}-mon"}
        with world.as_b() as http:
            base = f"{COIOTE}/deviceMonitoring/configuration"
            assert http.post(f"{base}/device/{world.device}/enable").status_code == 200
            alias = {"lwm2mUrl": SENSOR_URL, "alias": f"{world.b.tag}-temperature"}
            _created(http.post(f"{base}/device/{world.device}/alias", json=alias))
            monitoring = {"name": objects["b_name"], "groupId": world.group}
            _created(http.post(f"{COIOTE}/monitoring", json={**monitoring, **MONITORED}))
        with world.as_a() as http:
            monitoring = {"name": objects["a_name"], "groupId": f"{world.a.tag}-group"}
            _created(http.post(f"{COIOTE}/monitoring", json={**monitoring, **MONITORED}))
        objects["alias"] = alias["alias"]
        _MONITORING[key] = objects
    return _MONITORING[key]


MONITORED = {"resources": [SENSOR_URL], "source": "notifications"}
SINCE_1970 = {"timeRangeStart": "0"}
SINCE_1970_BY_QUARTER = {**SINCE_1970, "interval": str(90 * 86400)}


def _monitoring_reads(world: World) -> dict[str, str]:
    """For the snapshot: B's monitoring switch, aliases and named monitoring."""
    objects = _monitoring_objects(world)
    base = f"{COIOTE}/deviceMonitoring/configuration/device/{world.device}"
    return {
        "monitoring enabled": f"{base}/enabled",
        "monitoring aliases": f"{base}/aliases",
        "named monitoring": f"{COIOTE}/monitoring/{objects['b_name']}",
    }


def _monitoring(name: str = "monitoringName", **extra: Any) -> Target:
    return _by(name, lambda w: _monitoring_objects(w)["b_name"], **extra)


def _monitoring_body(world: World) -> dict[str, Any]:
    return {"groupId": f"{world.a.tag}-group", **MONITORED}


DM = f"{COIOTE}/deviceMonitoring"
MONITORING_FIXTURES: dict[tuple[str, str], Target] = {
    ("POST", f"{DM}/configuration/device/{{deviceId}}/enable"): _device("deviceId"),
    ("POST", f"{DM}/configuration/device/{{deviceId}}/disable"): _device("deviceId"),
    ("POST", f"{DM}/configuration/group/{{groupId}}/enable"): _group("groupId"),
    ("POST", f"{DM}/configuration/group/{{groupId}}/disable"): _group("groupId"),
    ("GET", f"{DM}/configuration/device/{{deviceId}}/enabled"): _device("deviceId"),
    ("POST", f"{DM}/configuration/device/{{deviceId}}/alias"): _device(
        "deviceId", json={"lwm2mUrl": SENSOR_URL, "alias": "named by A"}
    ),
    ("GET", f"{DM}/configuration/device/{{deviceId}}/aliases"): _device("deviceId"),
    ("DELETE", f"{DM}/configuration/device/{{deviceId}}/resourceUrl/{{lwm2mUrl}}"): _device(
        "deviceId", params={"lwm2mUrl": SENSOR_URL}
    ),
    ("GET", f"{DM}/data/{{deviceId}}/resourceUrl/{{lwm2mUrl}}"): _device(
        "deviceId", params={"lwm2mUrl": SENSOR_URL}, query=SINCE_1970
    ),
    ("GET", f"{DM}/{{deviceId}}/resourceUrl/{{lwm2mUrl}}"): _device(
        "deviceId", params={"lwm2mUrl": SENSOR_URL}, query=SINCE_1970
    ),
    ("GET", f"{DM}/data/{{deviceId}}/alias/{{alias}}"): Target(
        sibling=lambda w: Call(
            {"deviceId": w.device, "alias": _monitoring_objects(w)["alias"]}, query=SINCE_1970
        ),
        missing=lambda w: Call(
            {"deviceId": _nobody(), "alias": _monitoring_objects(w)["alias"]}, query=SINCE_1970
        ),
    ),
    ("GET", f"{DM}/{{deviceId}}/alias/{{alias}}"): Target(
        sibling=lambda w: Call(
            {"deviceId": w.device, "alias": _monitoring_objects(w)["alias"]}, query=SINCE_1970
        ),
        missing=lambda w: Call(
            {"deviceId": _nobody(), "alias": _monitoring_objects(w)["alias"]}, query=SINCE_1970
        ),
    ),
    ("GET", f"{COIOTE}/monitoring/{{monitoringName}}"): _monitoring(),
    ("PUT", f"{COIOTE}/monitoring/{{monitoringName}}"): Target(
        sibling=lambda w: Call(
            {"monitoringName": _monitoring_objects(w)["b_name"]}, json=_monitoring_body(w)
        ),
        missing=lambda w: Call({"monitoringName": _nobody()}, json=_monitoring_body(w)),
    ),
    ("DELETE", f"{COIOTE}/monitoring/{{monitoringName}}"): _monitoring(),
    ("GET", f"{COIOTE}/monitoringData/samples/{{monitoringName}}/{{deviceId}}"): Target(
        sibling=lambda w: Call(
            {"monitoringName": _monitoring_objects(w)["b_name"], "deviceId": w.device},
            query=SINCE_1970,
        ),
        missing=lambda w: Call(
            {"monitoringName": _nobody(), "deviceId": _nobody()}, query=SINCE_1970
        ),
    ),
    **{
        (
            "GET",
            f"{COIOTE}/monitoringData/aggregates/{kind}/{{monitoringName}}/{{groupId}}/{{resourceName}}",
        ): Target(
            sibling=lambda w: Call(
                {
                    "monitoringName": _monitoring_objects(w)["b_name"],
                    "groupId": w.group,
                    "resourceName": SENSOR_URL,
                },
                query=SINCE_1970_BY_QUARTER,
            ),
            missing=lambda w: Call(
                {"monitoringName": _nobody(), "groupId": _nobody(), "resourceName": SENSOR_URL},
                query=SINCE_1970_BY_QUARTER,
            ),
        )
        for kind in ("numerical", "textual")
    },
}
FIXTURES.update(MONITORING_FIXTURES)
LISTS[f"{COIOTE}/monitoring"] = Listing(lambda w: (_monitoring_objects(w), [{}])[1])
NOT_LISTS[f"{COIOTE}/monitoringData/moreSamples"] = (
    "a signed cursor of the caller's own query, re-checked against its scope at each page: "
    "test_monitoring_cursor_of_a_sibling_is_refused"
)
MONITORING_REFERENCES: dict[str, tuple[str, str, Target]] = {
    "named monitoring of B's group": _bodied(
        "POST",
        f"{COIOTE}/monitoring",
        lambda w, g: {"name": _nobody("ta-mon"), "groupId": g, **MONITORED},
        lambda w: w.group,
        lambda w: {},
    ),
}
# Joins REFERENCES once that exists (below).


def test_monitoring_cursor_of_a_sibling_is_refused(world):
    """B's cursor (signed by the server) gets A nothing: its monitoring is out of A's scope."""
    objects = _monitoring_objects(world)
    route = f"{COIOTE}/monitoringData/samples/{objects['b_name']}/{world.device}"
    with world.as_b() as http:
        page = http.get(route, params={**SINCE_1970, "limit": "1"})
    assert page.status_code == 200, page.text
    cursor = page.json()["nextCursor"] or ""
    with world.as_a() as http:
        response = http.get(f"{COIOTE}/monitoringData/moreSamples", params={"cursor": cursor})
    assert response.status_code in {400, 404}, response.text
    assert world.b.tag not in response.text


# --- end of the monitoring block ---------------------------------------------------------------


def test_every_get_route_without_parameters_is_checked(openapi):
    plain = {
        route for method, route in _operations(openapi) if method == "GET" and "{" not in route
    }
    unchecked = sorted(plain - LISTS.keys() - FEEDS.keys() - NOT_LISTS.keys())
    assert not unchecked, (
        f"GET routes {unchecked} are neither in LISTS (checked for the sibling's data) nor in "
        f"NOT_LISTS of {__name__}"
    )
    assert not sorted((LISTS.keys() | FEEDS.keys() | NOT_LISTS.keys()) - plain)


def _leaks(world: World, text: str) -> list[str]:
    return sorted(marker for marker in world.markers if marker in text)


@pytest.mark.parametrize("route", sorted(LISTS))
def test_list_shows_nothing_of_the_sibling(world, route):
    listing = LISTS[route]
    with world.as_a() as http:
        for position, query in enumerate(listing.queries(world)):
            response = http.get(route, params=query)
            assert response.status_code == 200, (query, response.text)
            assert not _leaks(world, response.text), (query, response.text)
            if listing.shows_own and position == 0:
                assert world.a.tag in response.text, response.text


def test_device_count_counts_only_own_devices(world):
    with world.as_a() as http:
        own = http.get(f"{COIOTE}/devices").json()
        count = http.get(f"{COIOTE}/devices/all/count").json()
    assert own == [f"{world.a.tag}-dev"]
    assert count == {"count": 1}


class FeedReader:
    """Collects the raw lines of one Server-Sent Events stream in a background thread."""

    def __init__(
        self, world: World, route: str, token: str, params: dict[str, str] | None = None
    ) -> None:
        self.lines: list[str] = []
        self._client = world.server.client(token)
        request = self._client.build_request("GET", route, params=params)
        self._response = self._client.send(request, stream=True)
        assert self._response.status_code == 200, self._response.read()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._connected.wait(10), "the feed did not open"

    def _read(self) -> None:
        try:
            for line in self._response.iter_lines():
                if line.startswith(":"):  # a comment: connected, or a keep-alive
                    self._connected.set()
                elif line:
                    self.lines.append(line)
        except httpx.HTTPError:  # the test closed the stream
            pass

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def close(self) -> None:
        # Shut the socket down so that the reader thread's blocking read returns at once.
        stream = self._response.extensions["network_stream"]
        stream.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        self._response.close()
        self._client.close()
        self._thread.join(10)


@pytest.mark.parametrize("route", sorted(FEEDS))
def test_event_feed_shows_nothing_of_the_sibling(world, route):
    event, endpoint_filter = FEEDS[route]
    a_feeds = [
        FeedReader(world, route, world.a.token),
        FeedReader(world, route, world.a.token, {endpoint_filter: world.device}),
    ]
    b_feed = FeedReader(world, route, world.b.token)
    try:
        world.server.call(world.simulated.update())
        eventually(lambda: event in b_feed.text and world.device in b_feed.text)
        time.sleep(0.2)  # anything sent to A would have arrived with B's copy
    finally:
        for feed in [*a_feeds, b_feed]:
            feed.close()
    for feed in a_feeds:
        assert feed.lines == [], feed.text


# --- references to the sibling's objects in request bodies ------------------------------------


def _unknown(world: World) -> str:
    return _nobody()


def _refers(
    method: str,
    route: str,
    body: Callable[[World, str], dict[str, Any]],
    sibling_ref: Callable[[World], str],
    missing_ref: Callable[[World], str] = _unknown,
    params: Callable[[World], dict[str, str]] = lambda w: {},
) -> tuple[str, str, Target]:
    """A request of A's whose body names one of B's objects (``body(world, ref)``)."""

    def aimed(ref: Callable[[World], str]) -> Callable[[World], Call]:
        def call(world: World) -> Call:
            named = ref(world)
            return Call(params(world), json=body(world, named), names={"ref": named})

        return call

    target = Target(aimed(sibling_ref), aimed(missing_ref), refused=frozenset({400, 403, 404}))
    return method, route, target


def _new_device(groups: list[str] | None = None, domain: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"properties": {"endpointName": _nobody("ta-new")}}
    if groups is not None:
        body["directGroups"] = groups
    if domain is not None:
        body["domain"] = domain
    return body


def _new_user(w: World, domain: str, roles: list[str] | None = None) -> dict[str, Any]:
    return {
        "login": _nobody("ta-new"),
        "password": "User-Test-Pa55word!",
        "domain": domain,
        "roles": roles or [],
    }


def _missing_domain(world: World) -> str:
    return f"/root/{_nobody('td')}/"


def _a_device(w: World) -> dict[str, str]:
    return {"device_id": f"{w.a.tag}-dev"}


def _a_user(w: World) -> dict[str, str]:
    return {"login": f"{w.a.tag}-user"}


REFERENCES: dict[str, tuple[str, str, Target]] = {
    "new device in B's group": _refers(
        "POST", f"{COIOTE}/devices", lambda w, g: _new_device([g]), lambda w: w.group
    ),
    "new device in B's domain": _refers(
        "POST",
        f"{COIOTE}/devices",
        lambda w, d: _new_device(domain=d),
        lambda w: w.b.domain,
        _missing_domain,
    ),
    "own device into B's group": _refers(
        "PUT",
        f"{COIOTE}/devices/{{device_id}}",
        lambda w, g: {"addGroups": [g]},
        lambda w: w.group,
        params=_a_device,
    ),
    "own device out of B's group": _refers(
        "PUT",
        f"{COIOTE}/devices/{{device_id}}",
        lambda w, g: {"removeGroups": [g]},
        lambda w: w.group,
        params=_a_device,
    ),
    "sub-group of B's group": _refers(
        "POST", f"{COIOTE}/groups", lambda w, g: {"id": f"{g}.sub"}, lambda w: w.group
    ),
    "new group in B's domain": _refers(
        "POST",
        f"{COIOTE}/groups",
        lambda w, d: {"id": _nobody("ta-new"), "domain": d},
        lambda w: w.b.domain,
        _missing_domain,
    ),
    "sub-domain of B's domain": _refers(
        "POST",
        f"{COIOTE}/domains",
        lambda w, d: {"id": f"{d}new/"},
        lambda w: w.b.domain,
        _missing_domain,
    ),
    "new user in B's domain": _refers(
        "POST", f"{COIOTE}/users", _new_user, lambda w: w.b.domain, _missing_domain
    ),
    "new user with B's role": _refers(
        "POST",
        f"{COIOTE}/users",
        lambda w, r: _new_user(w, w.a.domain, [r]),
        lambda w: w.role_name,
    ),
    "own user moved into B's domain": _refers(
        "PATCH",
        f"{COIOTE}/users/{{login}}",
        lambda w, d: {"domain": d},
        lambda w: w.b.domain,
        _missing_domain,
        params=_a_user,
    ),
    "service account acting as B's user": _refers(
        "POST",
        "/api/admin/service-accounts",
        lambda w, login: {"clientId": _nobody("ta-new"), "realm": "ta-realm", "login": login},
        lambda w: w.user,
    ),
}


# -- connectivity: bodies naming B's console objects (part of the connectivity block)
REFERENCES.update(
    {
        "new SIM in B's Things group": _refers(
            "POST",
            "/thing",
            lambda w, g: {"ICCID": _thing_of(w.a, 7), "ThingsGroupId": g},
            lambda w: w.connectivity["group_id"],
            lambda w: f"ThingsGroupId_{uuid.uuid4()}",
        ),
        "update of B's SIM": _refers(
            "PUT",
            "/thing/update",
            lambda w, t: {"cas": "1", "ThingId": t, "ThingName": "changed by A"},
            lambda w: w.connectivity["thing_id"],
            lambda w: f"ThingId_ICCID_{_thing_of(w.b, 998)}",
        ),
        "own SIM linked to B's device": _refers(
            "PUT",
            "/thing/{ThingId}/device",
            lambda w, d: {"Endpoint": d},
            lambda w: w.device,
            params=lambda w: {"ThingId": _a_console(w)["thing_id"]},
        ),
    }
)

# -- tasks: requests naming B's task, cursor, template, group or device (the tasks block)
REFERENCES.update(TASK_REFERENCES)
REFERENCES.update(ALERT_REFERENCES)

# -- event handlers: requests naming B's domain (the event handlers block)
REFERENCES.update(_handler_refs())
REFERENCES.update(MONITORING_REFERENCES)


def _refused_as_if_missing(world: World, method: str, route: str, target: Target) -> Call:
    """A's request aimed at B's object is answered exactly like one aimed at nothing, and
    changes nothing of B's; returns the call aimed at B's object."""
    before = world.snapshot()
    sibling, missing = target.sibling(world), target.missing(world)
    with world.as_a() as http:
        refused = _send(http, method, route, sibling)
        unknown = _send(http, method, route, missing)

    assert refused.status_code in target.refused, (refused.status_code, refused.text)
    assert refused.status_code == unknown.status_code, (refused.text, unknown.text)
    assert _without_ids(_body(refused), sibling) == _without_ids(_body(unknown), missing)
    assert _changes(before, world.snapshot()) == {}
    return sibling


@pytest.mark.parametrize("case", sorted(REFERENCES))
def test_request_naming_a_sibling_object_is_refused_as_if_it_did_not_exist(world, case):
    _refused_as_if_missing(world, *REFERENCES[case])


def test_sibling_custom_objects_are_not_seen(world):
    """B's object definition does not exist for A: A defines the same object id itself."""
    ddf = CUSTOM_OBJECT.encode()
    xml = {"Content-Type": "application/xml"}
    with world.as_b() as http:
        assert (
            http.post(f"{COIOTE}/dialects/addObject", content=ddf, headers=xml).status_code == 201
        )
    with world.as_a() as http:
        response = http.post(f"{COIOTE}/dialects/addObject", content=ddf, headers=xml)
    assert response.status_code == 201, response.text


def test_device_joins_only_groups_of_its_domain_or_above(world, error_body):
    """Not even the root administrator, who sees both, puts A's device in B's group: B's
    group observations would then reach A's device, and A would see B's group."""
    own_device = f"{world.a.tag}-dev"
    new_device = {
        "properties": {"endpointName": _nobody("ta-new")},
        "domain": world.a.domain,
        "directGroups": [world.group],
    }
    with world.server.admin() as http:
        error_body(
            http.put(f"{COIOTE}/devices/{own_device}", json={"addGroups": [world.group]}), 400
        )
        error_body(http.post(f"{COIOTE}/devices", json=new_device), 400)
        batch = http.post(f"{COIOTE}/devices/batch", json=[new_device]).json()
    assert batch["results"][0]["success"] is False, batch
    with world.as_a() as http:
        assert http.get(f"{COIOTE}/devices/{own_device}").json()["directGroups"] == []
        assert http.get(f"{COIOTE}/devices").json() == [own_device]


# --- the matrix ------------------------------------------------------------------------------


def test_every_parameterised_route_has_a_fixture(openapi):
    parameterised = {(m, route) for m, route in _operations(openapi) if "{" in route}
    missing = sorted(parameterised - FIXTURES.keys())
    assert not missing, (
        f"no cross-tenant fixture for {missing}: add how to reach a sibling domain's object "
        f"through each to FIXTURES in {__name__}"
    )
    assert not sorted(FIXTURES.keys() - parameterised), "FIXTURES names routes that are gone"


def _destructive_last(operation: tuple[str, str]) -> tuple[bool, str, str]:
    """DELETEs run last, so that a DELETE that got through cannot hide another leak."""
    method, route = operation
    return method == "DELETE", route, method


CASES = sorted(FIXTURES, key=_destructive_last)


@pytest.mark.parametrize(("method", "route"), CASES, ids=[f"{m} {route}" for m, route in CASES])
def test_sibling_object_is_out_of_reach(world, method, route):
    target = FIXTURES[(method, route)]
    sibling = _refused_as_if_missing(world, method, route, target)
    if target.still_works is not None:
        target.still_works(world)
    if method == "GET":  # the fixture is aimed at a real object: its owner gets it
        with world.as_b() as http:
            owned = _send(http, method, route, sibling)
        assert owned.status_code == 200, owned.text
