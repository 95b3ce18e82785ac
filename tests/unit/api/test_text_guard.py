"""TextGuard as ASGI middleware: what it refuses, what it passes on untouched, and that
its byte-level pre-scan never lets through what the full parse would refuse."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meadowlark.api.json_input import MAX_DEPTH, loads
from meadowlark.api.text_guard import TextGuard, body_problem
from meadowlark.core.errors import InvalidInput


def _call(
    body_chunks: list[bytes] | None,
    content_type: bytes | None = b"application/json",
    path: str = "/x",
    query: bytes = b"",
):
    """Status, response body, and what the app received (None when it was not called)."""
    seen: dict[str, object] = {}
    incoming = [
        {"type": "http.request", "body": chunk, "more_body": i < len(body_chunks) - 1}
        for i, chunk in enumerate(body_chunks or [])
    ]

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def app(scope, app_receive, send):
        seen["receive_is_original"] = app_receive is receive
        body = b""
        while True:
            message = await app_receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen["body"] = body
        seen["next"] = (await app_receive())["type"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    headers = []
    if content_type is not None:
        headers.append((b"content-type", content_type))
    if body_chunks is not None:
        headers.append((b"content-length", str(sum(map(len, body_chunks))).encode()))
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST" if body_chunks is not None else "GET",
        "path": path,
        "query_string": query,
        "headers": headers,
    }
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    asyncio.run(TextGuard(app)(scope, receive, send))
    response = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], response, seen or None


def test_requests_without_a_body_keep_their_receive():
    status, _, seen = _call(None, content_type=None)
    assert status == 200 and seen["receive_is_original"]


@pytest.mark.parametrize(
    ("path", "query"),
    [("/users/a\x00b", b""), ("/x", b"a=%00"), ("/x", b"a=1&b=x%00y"), ("/x\ud800", b"")],
)
def test_nul_in_path_or_query_is_400_before_the_app(path, query):
    status, response, seen = _call(None, path=path, query=query)
    assert status == 400 and seen is None
    body = json.loads(response)
    assert set(body) == {"error", "message", "code"} and body["code"] == 400


def test_percent_encoded_text_that_is_no_nul_passes():
    assert _call(None, query=b"a=%25%30%30&b=%ED%A0%80&c=%C3%A9")[0] == 200


@pytest.mark.parametrize(
    ("chunks", "content_type"),
    [
        ([b'{"a": "x\\ud800y"}'], b"application/json"),
        ([b'{"a": "x\\', b'ud800y"}'], b"application/json; charset=utf-8"),
        ([b'{"a": "x\\udc00y"}'], b"application/merge-patch+json"),
        ([b'{"a": "\\u0000"}'], None),
        (['{"a": "x\udbff"}'.encode("utf-8", "surrogatepass")], b"application/json"),
        ([b'{"a": NaN}'], b"application/json"),
        ([b'{"a": 1e999}'], b"application/json"),
        ([b'{"a": 99999999999999999999999}'], b"application/json"),
        ([b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)], b"application/json"),
        ([b"[" * 5000], b"application/json"),
        ([b"a=1&b=%00"], b"application/x-www-form-urlencoded"),
        ([b"a=NaN&b=%00"], None),
        ([b"a=1&b", b"=x%00"], None),
        ([b"a=\xed\xa0\x80"], b"application/x-www-form-urlencoded"),
    ],
)
def test_refused_bodies_are_400_before_the_app(chunks, content_type):
    status, response, seen = _call(chunks, content_type)
    assert status == 400 and seen is None, response
    assert json.loads(response)["code"] == 400


@pytest.mark.parametrize(
    ("chunks", "content_type"),
    [
        ([b'{"a": "caf\\u00e9 \\ud83d\\ude00", "n": 12345678901234567890}'], b"application/json"),
        ([b'{"a": "\\\\ud800 is how you write it"}'], b"application/json"),
        ([b'{"a":', b' [1, 2, {"b": null}]}'], b"application/json"),
        ([b"grant_type=password&username=a%40b"], b"application/x-www-form-urlencoded"),
        ([b'{"discount": "100%00 off"}'], None),
        ([b"a=Infinity"], None),
        ([b"\x00\xed\xa0\x80 firmware \\ud800"], b"application/octet-stream"),
        ([b"--b\r\n\r\n\x00\r\n--b--"], b"multipart/form-data; boundary=b"),
        ([b"<a>\\u0000</a>"], b"text/xml"),
        ([b""], b"application/json"),
    ],
)
def test_other_bodies_reach_the_app_unchanged(chunks, content_type):
    status, _, seen = _call(chunks, content_type)
    assert status == 200
    assert seen["body"] == b"".join(chunks)
    assert seen["next"] == "http.disconnect"  # after the replayed body: the server's receive


def test_a_client_that_leaves_while_sending_is_passed_on():
    async def receive():
        return {"type": "http.disconnect"}

    seen = []

    async def app(scope, app_receive, send):
        seen.append((await app_receive())["type"])

    scope = {
        "type": "http",
        "path": "/",
        "query_string": b"",
        "headers": [(b"content-length", b"10"), (b"content-type", b"application/json")],
    }
    asyncio.run(TextGuard(app)(scope, receive, None))
    assert seen == ["http.disconnect"]


def test_non_http_scopes_pass_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(TextGuard(app)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


SPECIAL = ["\ud800", "\udbff", "\udc00", "\udfff", "\x00", "\\", '"', "\U0001f600", "a", "é"]
ANY_TEXT = st.text(st.sampled_from(SPECIAL), max_size=6) | st.text(
    st.characters(exclude_categories=()), max_size=6
)
"""Any code points, lone surrogates and NUL included."""
NUMBER_TOKENS = (
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1E+999", "2e-400", "1" + "0" * 25])
    | st.integers().map(str)
    | st.floats().map(json.dumps)
)
ANY_JSON_TEXT = st.recursive(
    st.just("null") | NUMBER_TOKENS | ANY_TEXT.map(json.dumps),
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda items: "[" + ",".join(items) + "]")
        | st.lists(st.tuples(ANY_TEXT.map(json.dumps), inner), max_size=3).map(
            lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"
        )
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(ANY_JSON_TEXT, st.integers(0, 80), st.booleans())
def test_the_pre_scan_misses_nothing_the_parser_refuses(text, nesting, raw_utf8):
    """Of the bodies FastAPI would parse (``json.loads(bytes)``), the guard refuses exactly
    those ``loads`` refuses: its cheap scan never skips one."""
    text = "[" * nesting + text + "]" * nesting
    if raw_utf8:  # the same document with its strings unescaped
        text = json.dumps(json.loads(text), ensure_ascii=False)
    body = text.encode("utf-8", "surrogatepass")
    json.loads(body)  # what FastAPI does: it takes every one of these
    try:
        loads(body)
    except InvalidInput:
        assert body_problem("json", body) is not None
    else:
        assert body_problem("json", body) is None
