"""ASGI middleware refusing, before any route or database sees it, input text that no
route can use: a 400 with the usual error body.

Checked, for every route at once:

- the path and the query string: NUL (``%00``; PostgreSQL refuses it in text, SQLite
  would store it). Percent-encoded surrogates cannot get in: they decode to U+FFFD;
- JSON bodies (``application/json``, ``application/*+json``, and bodies without a
  content type, which FastAPI reads as JSON): what ``json_input.loads`` refuses: lone
  surrogates (escaped, or UTF-8-encoded, which ``json.loads(bytes)`` would decode),
  NUL, nesting deeper than ``json_input.MAX_DEPTH``, numbers JSON cannot carry;
- form-urlencoded bodies, and bodies without a content type that are no JSON (the
  credential routes read those as forms): NUL.

Other bodies (multipart, octet-stream, text, XML...) pass untouched; their routes
decode them strictly.

Normal traffic pays little. A request without a body only has its path and query string
searched for NUL. A body is read whole (``BodySizeLimit``, outside this middleware,
bounds it) and scanned at byte level for anything that might decode to refused input
(``\\uD8..``-``\\uDF..`` and ``\\u0000`` escapes, NUL bytes, UTF-8-encoded surrogates,
``%00``, ``NaN``/``Infinity``, 19 or more digits, 3-digit exponents, and more ``{``
and ``[`` than the depth limit); only then is it parsed and walked.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meadowlark.api.json_input import MAX_DEPTH, MalformedJson, loads, text_problem
from meadowlark.api.limits import send_error
from meadowlark.core.errors import InvalidInput

_JSON_SUSPECT = re.compile(
    rb"\\u[dD][89a-fA-F]|\\u0000|\x00|\xed[\xa0-\xbf]|NaN|Infinity|[0-9]{19}|[eE][+-]?[0-9]{3}"
)
_FORM_SUSPECT = re.compile(rb"%00|\x00|\xed[\xa0-\xbf]")
_JSON, _FORM, _JSON_OR_FORM = "json", "form", "json or form"


def _body_kind(scope: Scope) -> str | None:
    """How the body is read by routes, if it is one this guard checks."""
    content_type = length = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            chunked = True
    if length == b"0" or (length is None and not chunked and scope.get("http_version") != "2"):
        return None
    if content_type is None:
        return _JSON_OR_FORM
    media_type = content_type.split(b";", 1)[0].strip().lower()
    if media_type == b"application/json" or (
        media_type.startswith(b"application/") and media_type.endswith(b"+json")
    ):
        return _JSON
    if media_type == b"application/x-www-form-urlencoded":
        return _FORM
    return None


def body_problem(kind: str, body: bytes) -> str | None:
    """Why the body is refused, else None."""
    if kind == _FORM:
        return _form_problem(body)
    if _JSON_SUSPECT.search(body) or body.count(b"{") + body.count(b"[") > MAX_DEPTH:
        try:
            loads(body)
        except MalformedJson as exc:
            if kind == _JSON:
                return exc.message
        except InvalidInput as exc:
            return exc.message
        else:
            return None
    elif kind == _JSON or not _FORM_SUSPECT.search(body) or _is_json(body):
        return None
    # No content type, and no JSON: read_fields takes it for a form.
    return _form_problem(body)


def _form_problem(body: bytes) -> str | None:
    if not _FORM_SUSPECT.search(body):
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "malformed form body: not valid UTF-8"
    for name, value in parse_qsl(text, keep_blank_values=True):
        problem = text_problem(name) or text_problem(value)
        if problem:
            return f"invalid form field: {problem}"
    return None


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return False
    return True


class TextGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = self._target_problem(scope)
        if problem:
            await send_error(send, 400, problem)
            return
        kind = _body_kind(scope)
        if kind is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                await self.app(scope, _replay(message, receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = body_problem(kind, body)
        if problem:
            await send_error(send, 400, problem)
            return
        await self.app(scope, _replay({"type": "http.request", "body": body}, receive), send)

    @staticmethod
    def _target_problem(scope: Scope) -> str | None:
        path: str = scope["path"]
        if "\x00" in path or (not path.isascii() and text_problem(path)):
            return f"invalid path: {text_problem(path)}"
        query: bytes = scope.get("query_string", b"")
        if b"%00" in query or b"\x00" in query:
            return "invalid query string: NUL characters are not allowed in text"
        return None


def _replay(first: Message, receive: Receive) -> Receive:
    """``receive`` that gives ``first`` once, then whatever the server sends next."""
    pending: list[Message] = [first]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay
