"""``read_fields``: lenient body parsing that only ever fails with InvalidInput."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from meadowlark.api.forms import read_fields, required
from meadowlark.core.errors import InvalidInput


def _request(body: bytes, content_type: str | None) -> Request:
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode("latin-1")))
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
    return Request(scope, receive)


def read(body: bytes, content_type: str | None) -> dict[str, str]:
    return asyncio.run(read_fields(_request(body, content_type)))


def test_form_json_and_bare_json():
    assert read(
        b"grant_type=password&username=a%40b&password=p+q", "application/x-www-form-urlencoded"
    ) == {"grant_type": "password", "username": "a@b", "password": "p q"}
    assert read(
        b'{"UserName": "u", "Password": "p", "n": 1, "b": true, "z": null}',
        "application/json; charset=utf-8",
    ) == {"UserName": "u", "Password": "p", "n": "1", "b": "true"}
    assert read(b' {"a": "b"}', None) == {"a": "b"}
    assert read(b"", "application/json") == {}
    assert read(b"", None) == {}
    assert read(b"a=", None) == {"a": ""}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'"x"', "application/json"),
        (b'{"a": {"b": 1}}', "application/json"),
        (b'{"a": [1]}', "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"\xff=1", "application/x-www-form-urlencoded"),
        (b"novalue", "application/x-www-form-urlencoded"),
        (b"[" * 100_000, "application/json"),
        (b'{"a":' * 50_000, "application/json"),
        (b"{" + b'"a":' * 3, None),
    ],
)
def test_malformed_bodies_are_invalid_input(body, content_type):
    with pytest.raises(InvalidInput):
        read(body, content_type)


def test_required_takes_the_first_present_alias():
    assert required({"userName": "x", "UserName": ""}, "UserName", "userName") == "x"
    with pytest.raises(InvalidInput, match="missing field: UserName"):
        required({"UserName": ""}, "UserName", "userName")


CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/json; charset=latin-1",
        "APPLICATION/JSON",
        "",
    ]
)
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))
"""Text as read_fields takes it: no NUL (lone surrogates st.text never makes)."""
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), CONTENT_TYPES)
@example(b"[" * 5000, "application/json")
@example(b"a=%ff&b=%zz", None)
def test_arbitrary_bytes_never_raise_anything_but_invalid_input(body, content_type):
    try:
        fields = read(body, content_type)
    except InvalidInput:
        return
    assert isinstance(fields, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_any_json_document_is_fields_or_invalid_input(value):
    body = json.dumps(value).encode()
    try:
        fields = read(body, "application/json")
    except InvalidInput:
        assert not isinstance(value, dict) or any(
            isinstance(v, list | dict) for v in value.values()
        )
        return
    assert isinstance(value, dict)
    assert set(fields) == {k for k, v in value.items() if v is not None}


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(TEXT.filter(bool), TEXT, min_size=1, max_size=5))
def test_form_round_trip(fields):
    body = urlencode(fields).encode()
    assert read(body, "application/x-www-form-urlencoded") == fields


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"username=a%00b&password=p", "application/x-www-form-urlencoded"),
        (b"user%00name=a&password=p", None),
        (b'{"username": "a\\u0000b"}', "application/json"),
        (b'{"username": "x\\ud800y"}', "application/json"),
        (b'{"username": "\\udc00"}', None),
        ('{"username": "x\ud800y"}'.encode("utf-8", "surrogatepass"), "application/json"),
        (b'{"username": "a", "n": NaN}', "application/json"),
        (b'{"username": "a", "n": 1e400}', "application/json"),
        (b'{"username": "a", "n": 18446744073709551616}', "application/json"),
        (b'{"a":' * 65 + b"1" + b"}" * 65, "application/json"),
    ],
)
def test_nul_surrogates_and_unusable_numbers_are_invalid_input(body, content_type):
    with pytest.raises(InvalidInput):
        read(body, content_type)


def test_multipart_fields_are_checked_too():
    body = b'--b\r\nContent-Disposition: form-data; name="username"\r\n\r\na\x00b\r\n--b--\r\n'
    with pytest.raises(InvalidInput, match="NUL"):
        read(body, "multipart/form-data; boundary=b")


def test_paired_surrogate_escapes_are_one_character():
    assert read(b'{"username": "\\ud83d\\ude00"}', "application/json") == {"username": "\U0001f600"}
