# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""Hostile text and numbers in any input of any operation: a 4xx with the error body,
never a 5xx.

Regression tests for the defects an outside test found (lone surrogates in credentials,
device ids and LwM2M values; JSON nested 1,000 levels deep; NUL reaching PostgreSQL),
then a class-wide property: the operations, their body fields and query parameters come
from the running server's ``/openapi.json``, and every one of them gets lone surrogates,
NUL, a 1 MB string, JSON nested 1,000 levels deep, numbers at the limits of their types
and wrongly typed values; once each in a deterministic sweep, and in combinations that
hypothesis chooses.

The server also speaks CoAP with a simulated device registered, so that the LwM2M
routes get past "no such client" and hand the hostile values to the device codecs.
test_malformed_input.py has the malformed-syntax cases and the schemathesis run.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m_harness import devices, server  # noqa: F401 - fixtures

LWM2M = "/api/lwm2m/v1/clients"
JSON = {"content-type": "application/json"}
GUARD_MESSAGES = ("surrogate", "NUL", "nested", "number", "UTF-8")
"""Words of the messages the input guard answers with (the DataError handler's is not)."""


@pytest.fixture
def device(devices) -> str:
    """A registered LwM2M 1.1 device (the simulator's Device object has /3/0/14)."""
    endpoint = f"hostile-{secrets.token_hex(4)}"
    devices(endpoint)
    return endpoint


def _json_bytes(value: Any) -> bytes:
    """JSON with lone surrogates escaped as ``\\udXXX`` (what json.dumps writes)."""
    return json.dumps(value).encode()


def _refused_by_guard(response: httpx.Response, error_body) -> None:
    body = error_body(response, 400)
    assert any(word in body["message"] for word in GUARD_MESSAGES), body
    assert "database" not in body["message"], body


# --- regressions ----------------------------------------------------------------------------

SURROGATES = ["x\ud800y", "x\udfffy", "\udbff", "\udc00tail"]
IAM_TOKEN = "/iam/realms/r/protocol/openid-connect/token"


@pytest.mark.parametrize("surrogate", SURROGATES, ids=ascii)
@pytest.mark.parametrize(
    ("path", "fields", "target"),
    [
        ("/api/auth/oauth_password", {"username": "admin", "password": "p"}, "username"),
        ("/api/auth/oauth_password", {"username": "admin", "password": "p"}, "password"),
        (IAM_TOKEN, {"grant_type": "client_credentials", "client_secret": "s"}, "client_id"),
        (IAM_TOKEN, {"grant_type": "client_credentials", "client_id": "c"}, "client_secret"),
        ("/Auth", {"UserName": "admin", "Password": "p"}, "UserName"),
        ("/Auth", {"UserName": "admin", "Password": "p"}, "Password"),
    ],
)
def test_lone_surrogate_in_credentials_is_400(server, error_body, surrogate, path, fields, target):
    body = _json_bytes({**fields, target: surrogate})
    with server.client() as http:
        _refused_by_guard(http.post(path, content=body, headers=JSON), error_body)


@pytest.mark.parametrize("surrogate", SURROGATES, ids=ascii)
def test_lone_surrogate_in_a_batch_device_id_is_400(server, error_body, surrogate):
    body = _json_bytes([{"id": surrogate}, {"id": f"fine-{secrets.token_hex(3)}"}])
    with server.admin() as http:
        response = http.post("/api/coiotedm/v3/devices/batch", content=body, headers=JSON)
    _refused_by_guard(response, error_body)


def test_utf8_encoded_surrogates_in_a_json_body_are_400(server, error_body):
    """``json.loads(bytes)`` decodes them with surrogatepass: they must not get through."""
    body = '{"username": "x\ud800y", "password": "p"}'.encode("utf-8", "surrogatepass")
    with server.client() as http:
        response = http.post("/api/auth/oauth_password", content=body, headers=JSON)
    _refused_by_guard(response, error_body)


def test_paired_surrogate_escapes_are_ordinary_text(server):
    """``\\ud83d\\ude00`` is one character (an emoji), not a lone surrogate."""
    body = b'{"username": "nobody-\\ud83d\\ude00", "password": "p"}'
    with server.client() as http:
        response = http.post("/api/auth/oauth_password", content=body, headers=JSON)
    assert response.status_code == 401, response.text


@pytest.mark.parametrize("surrogate", SURROGATES, ids=ascii)
def test_lone_surrogate_written_to_a_device_is_400(server, device, error_body, surrogate):
    with server.admin() as http:
        fine = http.put(f"{LWM2M}/{device}/3/0/14", json={"value": "+02:00"})
        assert fine.status_code == 200, fine.text
        response = http.put(
            f"{LWM2M}/{device}/3/0/14", content=_json_bytes({"value": surrogate}), headers=JSON
        )
    _refused_by_guard(response, error_body)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_deeply_nested_json_to_create_is_400(server, device, error_body, content_type, opener):
    closer = b"]" if opener == b"[" else b"}"
    body = opener * 1000 + b"1" + closer * 1000
    headers = {"content-type": content_type} if content_type else {}
    with server.admin() as http:
        response = http.post(f"{LWM2M}/{device}/3", content=body, headers=headers)
    error_body(response, 400)
    assert "nested" in response.json()["message"]


def test_json_at_the_depth_limit_reaches_the_route(server, device, error_body):
    """64 levels are accepted (the route then finds no instance node in it)."""
    from meadowlark.api.json_input import MAX_DEPTH

    body = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    with server.admin() as http:
        response = http.post(f"{LWM2M}/{device}/3", content=body, headers=JSON)
        deeper = http.post(f"{LWM2M}/{device}/3", content=b"[" + body + b"]", headers=JSON)
    assert "nested" not in error_body(response, 400)["message"]
    assert "nested" in error_body(deeper, 400)["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/coiotedm/v3/users/a%00b",
        "/api/coiotedm/v3/devices/a%00b",
        "/api/coiotedm/v3/groups/%00",
        "/api/admin/roles/%00",
        "/api/coiotedm/v3/users/search/usernames?username=a%00b",
        "/api/admin/audit?event=%00",
        "/api/admin/users?after=%00",
        "/api/coiotedm/v3/devices?searchCriteria=%00",
        "/api/coiotedm/v3/cachedDataModels/x?parameters=a%00",
    ],
)
def test_nul_in_path_or_query_is_refused_before_the_database(server, error_body, path):
    """On PostgreSQL (which refuses NUL in text with a DataError) and SQLite alike."""
    with server.admin() as http:
        _refused_by_guard(http.get(path), error_body)


def test_nul_in_form_fields_is_400(server, error_body):
    form = {"content-type": "application/x-www-form-urlencoded"}
    with server.client() as http:
        for body in (
            b"grant_type=password&username=adm%00in&password=p",
            b"grant_type=client_credentials&client_id=%00&client_secret=s",
            b"UserName=admin&Password=%00",
        ):
            for path in ("/api/auth/oauth_password", IAM_TOKEN, "/Auth"):
                _refused_by_guard(http.post(path, content=body, headers=form), error_body)


@pytest.mark.parametrize(
    "number",
    [
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e400",
        b"-1e400",
        b"1" + b"0" * 4301,
        b"18446744073709551616",
    ],
)
def test_numbers_json_cannot_carry_are_400(server, error_body, number):
    body = b'{"name": "t", "expiresInDays": ' + number + b"}"
    with server.admin() as http:
        response = http.post("/api/auth/tokens", content=body, headers=JSON)
    _refused_by_guard(response, error_body)


@pytest.mark.parametrize("number", [2**63, 2**64, 10**30])
def test_integers_beyond_64_bits_in_a_query_are_never_5xx(server, error_body, number):
    """Found by the sweep below: SQLite's driver cannot bind them (OverflowError). PostgreSQL
    may compare them or refuse them (DataError). A bound on the parameter would be better."""
    with server.admin() as http:
        response = http.get(f"/api/admin/audit?beforeId={number}")
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        error_body(response, 400)


def test_ordinary_bodies_pass_the_guard_untouched(server):
    """Emoji (raw or as an escaped pair), quotes, backslashes, numbers in the 64-bit range."""
    group = f"g-{secrets.token_hex(4)}"
    description = 'a "quoted" \\ \U0001f600 ✓ \U0001f600'
    body = (
        b'{"id": "'
        + group.encode()
        + b'", "description": "a \\"quoted\\" \\\\ '
        + "\U0001f600 ✓".encode()
        + b' \\ud83d\\ude00"}'
    )
    with server.admin() as http:
        created = http.post("/api/coiotedm/v3/groups", content=body, headers=JSON)
        assert created.status_code == 201, created.text
        assert http.get(f"/api/coiotedm/v3/groups/{group}").json()["description"] == description
        numbers = b'{"name": "t", "expiresInDays": 9223372036854775807}'
        refused = http.post("/api/auth/tokens", content=numbers, headers=JSON)
        assert refused.status_code == 400 and "expiresInDays" in refused.text


# --- the class-wide property -----------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A JSON token written as is (numbers json.dumps cannot or would not write)."""

    token: str


@dataclass(frozen=True)
class Hostile:
    name: str
    value: Any
    """What goes into JSON bodies (``Raw`` tokens verbatim)."""
    refused: bool = False
    """The input guard refuses it anywhere in a JSON body: the answer is 400 exactly."""
    raw_utf8: bool = False
    """Strings go UTF-8-encoded (surrogates with surrogatepass), not as ``\\u`` escapes."""
    number: bool = False

    @property
    def text(self) -> str:
        """The value in a query string, a path, a form field or as an object key."""
        if isinstance(self.value, Raw):
            return self.value.token
        if isinstance(self.value, str):
            return self.value
        return json.dumps(self.value)


HUGE = "x" * (1024 * 1024 + 1)
URL_LIMIT = 60_000
"""Query and path values are cut to this: httpx refuses longer URLs, and uvicorn answers
a 1 MB request line itself, with a plain-text 400, before any application sees it."""
NUMBERS = [
    Hostile("2**63", Raw(str(2**63)), number=True),
    Hostile("2**63-1", Raw(str(2**63 - 1)), number=True),
    Hostile("-2**63-1", Raw(str(-(2**63) - 1)), refused=True, number=True),
    Hostile("2**64", Raw(str(2**64)), refused=True, number=True),
    Hostile("10**4301", Raw("1" + "0" * 4301), refused=True, number=True),
    Hostile("1e308", Raw("1e308"), number=True),
    Hostile("-1e308", Raw("-1e308"), number=True),
    Hostile("1e400", Raw("1e400"), refused=True, number=True),
    Hostile("NaN", Raw("NaN"), refused=True, number=True),
    Hostile("-Infinity", Raw("-Infinity"), refused=True, number=True),
    Hostile("0", 0, number=True),
    Hostile("-1", -1, number=True),
]
HOSTILE = [
    Hostile("high surrogate", "x\ud800y", refused=True),
    Hostile("low surrogate", "x\udc00y", refused=True),
    Hostile("high surrogate at the end", "abc\udbff", refused=True),
    Hostile("utf-8-encoded surrogate", "x\udbffy", refused=True, raw_utf8=True),
    Hostile("NUL", "a\x00b", refused=True),
    Hostile("1 MB string", HUGE),
    Hostile("1,000 levels", Raw("[" * 1000 + "]" * 1000), refused=True),
    *NUMBERS,
    Hostile("true", True),
    Hostile("null", None),
    Hostile("[]", []),
    Hostile("{}", {}),
    Hostile("number as string", "12"),
    Hostile("empty string", ""),
]
SURROGATE, NUL, DEEP = HOSTILE[0], HOSTILE[4], HOSTILE[6]

FREE_FORM_FIELDS = {
    "grant_type": "password",
    "username": "nobody",
    "password": "not-the-password",
    "client_id": "no-such-client",
    "client_secret": "not-the-secret",
    "refresh_token": "not-a-token",
    "subject_token": "not-a-token",
    "UserName": "nobody",
    "Password": "not-the-password",
    "refreshToken": "not-a-token",
}
"""Objects of string fields without named properties are credential forms (read_fields):
the OpenAPI document cannot name their fields, these are the ones the routes read."""
GRANTS = ["password", "client_credentials"]
OPEN_OBJECT_KEYS = ["value", "id", "kind"]
"""Keys tried in objects of any fields, and in values of any type (LwM2M nodes have
``value``, Coiote devices of a batch ``id``)."""
SKIPPED = {
    ("POST", "/api/auth/logout"),  # would end the admin session the test runs on
    ("PUT", "/api/auth/password"),  # could end it too
}
KEY = "<key>"
"""In a pointer: the hostile text becomes the name of a new key of the object."""


@dataclass(frozen=True)
class Target:
    """A place for a hostile value: a body field, the whole body, a query or path parameter."""

    where: str  # "body", "whole body", "query" or "path"
    pointer: tuple[Any, ...] = ()
    """Body: keys and indexes down to the field; parameters: (name,)."""
    kind: str = "string"
    """The JSON schema type there; "any" where the schema has none; "key" at ``KEY``."""


@dataclass
class Operation:
    method: str
    path: str
    path_params: list[str]
    required_query: dict[str, Any]
    """Name to a plausible value, of the required query parameters."""
    media_types: list[str]
    body: Any = None
    """A plausible body: required fields filled; a hostile value replaces one field."""
    targets: list[Target] = field(default_factory=list)


class Schemas:
    """Plausible values and the fields of JSON schemas in one OpenAPI document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def resolve(self, schema: Any) -> dict[str, Any]:
        while isinstance(schema, dict) and "$ref" in schema:
            node: Any = self.document
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            schema = node
        return schema if isinstance(schema, dict) else {}

    def alternatives(self, schema: dict[str, Any]) -> list[dict[str, Any]]:
        options = schema.get("anyOf") or schema.get("oneOf") or schema.get("allOf")
        if not options:
            return [schema]
        resolved = [self.resolve(option) for option in options]
        return [option for option in resolved if option.get("type") != "null"] or resolved

    def kind(self, schema: Any) -> str:
        return str(self.alternatives(self.resolve(schema))[0].get("type", "any"))

    def example(self, schema: Any) -> Any:
        """A plausible value: required properties, defaults, first enum member."""
        schema = self.alternatives(self.resolve(schema))[0]
        if schema.get("default") is not None:
            return schema["default"]
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            additional = self.resolve(schema.get("additionalProperties"))
            if not schema.get("properties") and additional.get("type") == "string":
                return dict(FREE_FORM_FIELDS)
            return {
                name: self.example(schema["properties"][name])
                for name in schema.get("required", [])
            }
        if kind == "array":
            return [self.example(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
        if kind == "integer":
            return max(schema.get("minimum", 1), 1)
        if kind == "number":
            return 1.5
        if kind == "boolean":
            return False
        if kind == "string":
            if schema.get("format") == "date-time":
                return "2024-01-01T00:00:00Z"
            return "hostile-" + "x" * max(0, schema.get("minLength", 0) - 8)
        return "x"

    def fields(self, schema: Any, pointer: tuple[Any, ...] = ()) -> Iterator[Target]:
        """Every field under ``schema``, nested objects and arrays included."""
        if len(pointer) > 8:
            return
        for option in self.alternatives(self.resolve(schema)):
            kind = option.get("type")
            if kind == "object" or "properties" in option:
                for name, sub in option.get("properties", {}).items():
                    yield from self.fields(sub, (*pointer, name))
                additional = option.get("additionalProperties")
                if option.get("properties") and not additional:
                    continue
                yield Target("body", (*pointer, KEY), "key")
                values = self.resolve(additional)
                names = FREE_FORM_FIELDS if values.get("type") == "string" else OPEN_OBJECT_KEYS
                for name in names:
                    yield from self.fields(values, (*pointer, name))
            elif kind == "array":
                yield from self.fields(option.get("items", {}), (*pointer, 0))
            elif kind in ("string", "integer", "number", "boolean"):
                yield Target("body", pointer, kind)
            else:
                yield Target("body", pointer, "any")
                for name in OPEN_OBJECT_KEYS:  # it may well be an object
                    yield Target("body", (*pointer, name), "any")


@cache
def _operations(url: str) -> tuple[Operation, ...]:
    """The operations of the server's OpenAPI document, with their targets."""
    document = httpx.get(f"{url}/openapi.json", timeout=30).json()
    schemas = Schemas(document)
    operations = []
    for path, item in document["paths"].items():
        for method, spec in item.items():
            if (method.upper(), path) in SKIPPED:
                continue
            parameters = [schemas.resolve(p) for p in spec.get("parameters", [])]
            query = [p for p in parameters if p["in"] == "query"]
            content = spec.get("requestBody", {}).get("content", {})
            operation = Operation(
                method=method.upper(),
                path=path,
                path_params=[p["name"] for p in parameters if p["in"] == "path"],
                required_query={
                    p["name"]: schemas.example(p.get("schema", {}))
                    for p in query
                    if p.get("required")
                },
                media_types=[m for m in content if "json" in m or "form-urlencoded" in m],
            )
            if operation.media_types:
                schema = content[operation.media_types[0]].get("schema", {})
                operation.body = schemas.example(schema)
                operation.targets += dict.fromkeys(schemas.fields(schema))
            operation.targets += [
                Target("query", (p["name"],), schemas.kind(p.get("schema", {}))) for p in query
            ]
            operation.targets += [Target("path", (name,)) for name in operation.path_params]
            if operation.method in ("POST", "PUT", "PATCH", "DELETE"):
                operation.targets.append(Target("whole body", (), "any"))
            if not operation.targets:
                operation.targets.append(Target("query", ("unexpected",)))
            operations.append(operation)
    return tuple(operations)


def _set(document: Any, pointer: tuple[Any, ...], hostile: Hostile) -> Any:
    """A copy of ``document`` with the hostile value at ``pointer`` (containers made as
    needed; at ``KEY``, its text becomes a new key)."""
    if not pointer:
        return hostile.value
    head, rest = pointer[0], pointer[1:]
    if head == KEY:
        return {**(document if isinstance(document, dict) else {}), hostile.text: "x"}
    if isinstance(head, int):
        items = list(document) if isinstance(document, list) else []
        items += [None] * (head + 1 - len(items))
        items[head] = _set(items[head], rest, hostile)
        return items
    container = dict(document) if isinstance(document, dict) else {}
    container[head] = _set(container.get(head), rest, hostile)
    return container


def _dump(value: Any, raw_utf8: bool) -> str:
    """JSON text: ``Raw`` tokens verbatim, surrogates as escapes unless ``raw_utf8``."""
    if isinstance(value, Raw):
        return value.token
    if isinstance(value, dict):
        items = (f"{_dump(k, raw_utf8)}: {_dump(v, raw_utf8)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dump(item, raw_utf8) for item in value) + "]"
    return json.dumps(value, ensure_ascii=not raw_utf8)


def _quote(text: str, limit: int = URL_LIMIT) -> str:
    return quote(text[:limit].encode("utf-8", "surrogatepass"), safe="")


def _form(body: dict[str, Any], target: Target, hostile: Hostile) -> str:
    """A credential form with the hostile text in one field (or as a field name)."""
    fields = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
    if target.pointer == (KEY,):
        fields[hostile.text] = "x"
    elif target.where == "body":
        fields[target.pointer[0]] = hostile.text
    return "&".join(f"{_quote(k, len(HUGE))}={_quote(v, len(HUGE))}" for k, v in fields.items())


@dataclass(frozen=True)
class Case:
    operation: Operation
    target: Target
    hostile: Hostile
    media_type: str | None = None
    """Of the body (the operation's first by default)."""
    grant: str = "password"
    """The grant_type of a credential form."""
    variant: int = 0
    """Picks the LwM2M path of the LwM2M routes."""

    def __str__(self) -> str:
        where = f"{self.target.where} {'.'.join(map(str, self.target.pointer))}".strip()
        extra = f" as {self.media_type}" if self.media_type else ""
        return (
            f"{self.operation.method} {self.operation.path}: {self.hostile.name} in {where}{extra}"
        )


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None


def _path_value(case: Case, name: str, device: str) -> str:
    """Path parameters name nothing, except on the LwM2M routes: the registered device
    and a resource, object or instance of it (writes and Create reach its codecs)."""
    if case.operation.path.startswith("/api/lwm2m/"):
        if name == "ep":
            return device
        if name == "path":
            return ["3/0/14", "3", "3/0"][case.variant % 3]
    return f"no-such-{name}"


def _request(case: Case, device: str) -> Request:
    operation, target, hostile = case.operation, case.target, case.hostile
    path = operation.path
    for name in operation.path_params:
        value = (
            hostile.text if target == Target("path", (name,)) else _path_value(case, name, device)
        )
        path = path.replace("{" + name + "}", _quote(value, 4000))
    query = [f"{name}={_quote(str(value))}" for name, value in operation.required_query.items()]
    if target.where == "query":
        query.append(f"{target.pointer[0]}={_quote(hostile.text)}")
    url = path + ("?" + "&".join(query) if query else "")
    headers: dict[str, str] = {}
    content: bytes | None = None
    if target.where == "whole body":
        headers["content-type"] = "application/json"
        content = _dump(hostile.value, hostile.raw_utf8).encode("utf-8", "surrogatepass")
    elif operation.media_types:
        media_type = case.media_type or operation.media_types[0]
        headers["content-type"] = media_type
        body = operation.body
        if isinstance(body, dict) and "grant_type" in body:
            body = {**body, "grant_type": case.grant}
        if "form-urlencoded" in media_type:
            content = _form(body, target, hostile).encode("ascii")
        else:
            if target.where == "body":
                body = _set(body, target.pointer, hostile)
            content = _dump(body, hostile.raw_utf8).encode("utf-8", "surrogatepass")
    return Request(operation.method, url, headers, content)


def _send(http: httpx.Client, request: Request) -> tuple[int, bytes]:
    """Status and body (not read from an event stream: those never end)."""
    with http.stream(
        request.method, request.url, headers=request.headers, content=request.content
    ) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response.status_code, b""
        return response.status_code, response.read()


def _problem(case: Case, request: Request, status: int, body: bytes) -> str | None:
    """What is wrong with the answer, if anything."""
    if status >= 500:
        return f"{case}: {status} {body[:300]!r}"
    if 400 <= status < 500 and not (
        status == 401 and case.operation.path.startswith("/Auth") and body == b"Access denied"
    ):  # (that is the Monogoto console's own answer)
        try:
            error = json.loads(body)
        except ValueError:
            return f"{case}: {status} without a JSON error body: {body[:300]!r}"
        if not (
            isinstance(error, dict)
            and set(error) == {"error", "message", "code", "requestId"}
            and isinstance(error["message"], str)
            and isinstance(error["code"], int)
        ):
            return f"{case}: {status} with body {body[:300]!r}"
    hostile, target = case.hostile, case.target
    in_json = target.where == "whole body" or (
        target.where == "body"
        and "json" in request.headers.get("content-type", "")
        and (target.kind != "key" or isinstance(hostile.value, str))
    )
    if request.content and len(request.content) > len(HUGE):
        # 415: a route that takes no JSON (a firmware upload) refuses it unread.
        expected: tuple[int, ...] = (400, 413, 415)
    elif (hostile.refused and in_json) or hostile is NUL:
        expected = (400,)
    else:
        return None
    if status not in expected:
        return f"{case}: {status}, not {' or '.join(map(str, expected))}: {body[:200]!r}"
    return None


def _run(server, device: str, cases: Iterable[Case]) -> list[str]:
    problems = []
    with server.admin() as http:
        for case in cases:
            request = _request(case, device)
            try:
                status, body = _send(http, request)
            except httpx.TransportError as exc:
                if request.content and len(request.content) > server.settings.max_body_bytes:
                    continue  # answered 413 and closed before reading it all: may be a reset
                problems.append(f"{case}: {exc!r}")  # the server dropped the connection
                continue
            if problem := _problem(case, request, status, body):
                problems.append(problem)
    return problems


def _variants(operation: Operation) -> list[tuple[str | None, str, int]]:
    """Media type, grant and LwM2M path (``Case.variant``) combinations worth trying."""
    media = operation.media_types or [None]
    credentials = isinstance(operation.body, dict) and "grant_type" in operation.body
    grants = GRANTS if credentials else GRANTS[:1]
    paths = range(3) if operation.path.startswith("/api/lwm2m/") else range(1)
    return [(m, g, v) for m in media for g in grants for v in paths]


def _sweep(operations: Iterable[Operation]) -> Iterator[Case]:
    """Every operation gets every hostile value (spread over its inputs); every input a
    lone surrogate and 1,000 levels of JSON with every media type, grant and LwM2M path,
    and NUL; every query parameter and every number or untyped body field every number."""
    for operation in operations:
        targets, variants = operation.targets, _variants(operation)
        for i, hostile in enumerate(HOSTILE):
            yield Case(operation, targets[i % len(targets)], hostile, *variants[i % len(variants)])
        for i, target in enumerate(targets):
            for variant in variants:
                yield Case(operation, target, SURROGATE, *variant)
                yield Case(operation, target, DEEP, *variant)
            yield Case(operation, target, NUL, *variants[i % len(variants)])
            if target.where == "query" or target.kind in ("integer", "number", "any"):
                for j, hostile in enumerate(NUMBERS):
                    yield Case(operation, target, hostile, *variants[(i + j) % len(variants)])


def _still_healthy(server) -> None:
    with server.client() as http:
        assert http.get("/health").status_code == 200
    with server.admin() as http:
        me = http.get("/api/auth/me")
        assert me.status_code == 200, "the admin session must outlive the run: " + me.text


def test_every_operation_survives_every_hostile_value(server, device):
    operations = _operations(server.url)
    assert len(operations) >= 75
    assert sum(len(operation.targets) for operation in operations) >= 350
    problems = _run(server, device, _sweep(operations))
    _still_healthy(server)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:50])


@st.composite
def _cases(draw: st.DrawFn, operations: tuple[Operation, ...]) -> Case:
    operation = draw(st.sampled_from(operations))
    return Case(
        operation,
        draw(st.sampled_from(operation.targets)),
        draw(st.sampled_from(HOSTILE)),
        draw(st.sampled_from(operation.media_types or [None])),
        draw(st.sampled_from(GRANTS)),
        draw(st.integers(0, 2)),
    )


def test_hostile_values_anywhere_never_give_5xx(server, device):
    """Short runs of requests, each with a hostile value in an input hypothesis picks."""
    operations = _operations(server.url)

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(_cases(operations), min_size=1, max_size=3))
    def check(cases: list[Case]) -> None:
        problems = _run(server, device, cases)
        assert not problems, "\n".join(problems)

    check()
    _still_healthy(server)
