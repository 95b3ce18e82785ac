"""The one JSON parser for request bodies: strict, depth-limited, text-checked.

``loads`` accepts what RFC 8259 calls JSON text and what the API can store and send on:

- UTF-8 only (``json.loads(bytes)`` would also guess UTF-16/32, and decode UTF-8-encoded
  surrogates with ``surrogatepass``);
- at most ``MAX_DEPTH`` nested arrays and objects (the API's own documents nest six
  levels at most: an LwM2M object, its instances, their resources, a resource's values);
- strings and keys without NUL or unpaired surrogates (``"\\ud800"`` is valid JSON but no
  Unicode text: it cannot be encoded to UTF-8, and PostgreSQL refuses NUL in text);
  paired escapes (``"\\ud83d\\ude00"``) are one character and fine;
- numbers that are finite doubles or integers in ``[-2**63, 2**64 - 1]`` (the widest
  LwM2M and database integers): no ``NaN``/``Infinity`` literals, no ``1e400``, no
  4,301-digit integers.

Anything else is ``InvalidInput``, a 400. The input guard (``api.text_guard``) applies the
same checks to every JSON body before routing; routes that parse JSON themselves
(credential forms, LwM2M Create) call ``loads``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from meadowlark.core.errors import InvalidInput

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a request body."""
MIN_INTEGER = -(2**63)
MAX_INTEGER = 2**64 - 1
_MAX_INTEGER_DIGITS = len(str(MIN_INTEGER))
_UNWANTED_TEXT = re.compile("[\x00\ud800-\udfff]")


class MalformedJson(InvalidInput):
    """Not JSON at all (or not UTF-8), as opposed to JSON carrying refused values."""


class _Refused(ValueError):
    """Raised by the decoder's hooks; carries the message of the 400."""


def _constant(name: str) -> Any:
    raise _Refused(f"number {name} is not allowed in JSON")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:20]} is out of range")
    return value


def _int(text: str) -> int:
    if len(text) <= _MAX_INTEGER_DIGITS:
        value = int(text)
        if MIN_INTEGER <= value <= MAX_INTEGER:
            return value
    raise _Refused(f"number {text[:20]}{'...' if len(text) > 20 else ''} is out of range")


_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_float, parse_int=_int)


def text_problem(text: str) -> str | None:
    """Why ``text`` is no acceptable text (NUL, an unpaired surrogate), else None."""
    found = _UNWANTED_TEXT.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "NUL characters are not allowed in text"
    return f"unpaired surrogate \\u{ord(found.group()):04x} is not allowed in text"


def check_text(text: str) -> str:
    """``text`` itself, or InvalidInput if it holds NUL or an unpaired surrogate."""
    problem = text_problem(text)
    if problem is not None:
        raise InvalidInput(f"invalid input: {problem}")
    return text


def loads(data: bytes | str) -> Any:
    """The JSON value of a request body; InvalidInput (400) for anything described above."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedJson("malformed JSON body: not valid UTF-8") from None
    try:
        value = _DECODER.decode(data)
    except json.JSONDecodeError as exc:
        raise MalformedJson(f"malformed JSON body: {exc.msg} at position {exc.pos}") from None
    except _Refused as exc:
        raise InvalidInput(f"invalid JSON body: {exc}") from None
    except RecursionError:
        raise _too_deep() from None
    check(value)
    return value


def check(value: Any) -> None:
    """InvalidInput unless the decoded ``value`` nests at most ``MAX_DEPTH`` levels and
    all its strings are acceptable text. Iterative: any depth is safe to check."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii() or "\x00" in item:
                check_text(item)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise _too_deep()
            if isinstance(item, dict):
                for key in item:
                    if not key.isascii() or "\x00" in key:
                        check_text(key)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)


def _too_deep() -> InvalidInput:
    return InvalidInput(f"invalid JSON body: nested deeper than {MAX_DEPTH} levels")
