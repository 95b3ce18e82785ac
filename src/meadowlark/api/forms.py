"""Lenient reading of small request bodies: form-urlencoded, multipart or JSON objects.

Real clients disagree on encodings (python-coiote posts forms, some Monogoto clients post
forms where the docs say JSON), so credential endpoints accept all three. JSON goes
through ``json_input.loads``; no field name or value holds NUL or an unpaired surrogate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request

from meadowlark.api.json_input import check_text, loads
from meadowlark.core.errors import InvalidInput

FORM_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "additionalProperties": {"type": "string"}}
            },
            "application/json": {
                "schema": {"type": "object", "additionalProperties": {"type": "string"}}
            },
        }
    }
}


async def read_fields(request: Request) -> dict[str, str]:
    """Top-level string fields of the body; anything else is a 400."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if content_type == "multipart/form-data":
        form = await request.form()
        return _checked((k, v) for k, v in form.items() if isinstance(v, str))
    text = _decode(body)
    if content_type == "application/json" or (not content_type and text.lstrip().startswith("{")):
        data = loads(text) if text.strip() else {}
        if not isinstance(data, dict):
            raise InvalidInput("JSON body must be an object")
        return {str(k): _as_text(k, v) for k, v in data.items() if v is not None}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError as exc:
        raise InvalidInput("malformed form body") from exc
    return _checked(pairs)


def _checked(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {check_text(name): check_text(value) for name, value in pairs}


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("body is not valid UTF-8") from exc


def _as_text(key: object, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    raise InvalidInput(f"field {key!s} must be a string")


def required(fields: dict[str, str], *names: str) -> str:
    """The first present, non-empty field among ``names`` (aliases), else a 400."""
    for name in names:
        value = fields.get(name)
        if value:
            return value
    raise InvalidInput(f"missing field: {names[0]}")


async def read_object(request: Request) -> dict[str, Any]:
    """The body as an object: JSON (values of any type) or a form (string values)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        text = _decode(await request.body())
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"malformed JSON body: {exc.msg} at position {exc.pos}") from exc
        except RecursionError as exc:
            raise InvalidInput("malformed JSON body: nested too deeply") from exc
        if not isinstance(data, dict):
            raise InvalidInput("JSON body must be an object")
        return data
    return dict(await read_fields(request))
