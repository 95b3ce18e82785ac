"""CoRE Link Format (RFC 6690, content format 40) and its LwM2M uses.

The parser follows the RFC 6690 §2 grammar (``<uri>;name=value;name,...``, values as
ptoken or quoted-string) and tolerates whitespace around separators, which
constrained clients emit. Parameter names are case-insensitive (RFC 8288 §3) and
are returned in lower case.

On top of it: the Register/Update payload (OMA-TS-LightweightM2M-Core 1.1 §6.2.1)
and Discover responses (Core 1.1 §5.4.x "Discover").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.path import InvalidPathError, LwM2mPath

ParamValue: TypeAlias = str | None | list[str | None]
"""A parameter's value: ``None`` when given without ``=``, a list when repeated."""

_WHITESPACE = " \t\r\n"
_PARMNAME = re.compile(r"[A-Za-z0-9!#$&+\-.^_`|~]+\*?")
_PTOKEN = re.compile(r"[!#$%&'()*+\-./0-9:<=>?@A-Za-z\[\]^_`{|}~]+")
_FORBIDDEN_IN_URI = re.compile(r"[\x00-\x20\x7f<>\"]")
_ALWAYS_QUOTED = frozenset({"rt", "if", "rel", "rev", "anchor", "title"})
"""Parameters written as quoted-string even when a token would do (RFC 6690 §2)."""

LWM2M_RESOURCE_TYPE = "oma.lwm2m"


@dataclass(frozen=True, slots=True)
class Link:
    uri: str
    params: dict[str, ParamValue] = field(default_factory=dict)

    def values(self, name: str) -> list[str | None]:
        """All values of parameter ``name`` (empty when absent)."""
        value = self.params.get(name, [])
        return list(value) if isinstance(value, list) else [value]


def parse_links(text: str) -> list[Link]:
    """Parse a link-format document; malformed input raises ``DecodeError``."""
    return _LinkParser(text).parse()


def decode_links(payload: bytes) -> list[Link]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"link format is not valid UTF-8: {exc.reason}") from None
    return parse_links(text)


class _LinkParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> list[Link]:
        links: list[Link] = []
        self._skip_whitespace()
        if self._at_end():
            return links
        while True:
            links.append(self._link())
            self._skip_whitespace()
            if self._at_end():
                return links
            self._expect(",")
            self._skip_whitespace()

    def _link(self) -> Link:
        self._expect("<")
        end = self.text.find(">", self.pos)
        if end < 0:
            raise self._error("unterminated <uri>")
        uri = self.text[self.pos : end]
        if _FORBIDDEN_IN_URI.search(uri):
            raise self._error(f"invalid character in uri {uri!r}")
        self.pos = end + 1
        params: dict[str, ParamValue] = {}
        self._skip_whitespace()
        while not self._at_end() and self.text[self.pos] == ";":
            self.pos += 1
            self._skip_whitespace()
            name, value = self._param()
            _add_param(params, name, value)
            self._skip_whitespace()
        return Link(uri, params)

    def _param(self) -> tuple[str, str | None]:
        match = _PARMNAME.match(self.text, self.pos)
        if match is None:
            raise self._error("expected a parameter name")
        self.pos = match.end()
        self._skip_whitespace()
        if self._at_end() or self.text[self.pos] != "=":
            return match[0].lower(), None
        self.pos += 1
        self._skip_whitespace()
        if not self._at_end() and self.text[self.pos] == '"':
            return match[0].lower(), self._quoted_string()
        token = _PTOKEN.match(self.text, self.pos)
        if token is None:
            raise self._error(f"expected a value for parameter {match[0]!r}")
        self.pos = token.end()
        return match[0].lower(), token[0]

    def _quoted_string(self) -> str:
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        while not self._at_end():
            char = self.text[self.pos]
            self.pos += 1
            if char == '"':
                return "".join(chars)
            if char == "\\":
                if self._at_end():
                    break
                char = self.text[self.pos]
                self.pos += 1
            chars.append(char)
        self.pos = start
        raise self._error("unterminated quoted string")

    def _expect(self, char: str) -> None:
        if self._at_end() or self.text[self.pos] != char:
            raise self._error(f"expected {char!r}")
        self.pos += 1

    def _skip_whitespace(self) -> None:
        while not self._at_end() and self.text[self.pos] in _WHITESPACE:
            self.pos += 1

    def _at_end(self) -> bool:
        return self.pos >= len(self.text)

    def _error(self, message: str) -> DecodeError:
        found = repr(self.text[self.pos : self.pos + 20]) if not self._at_end() else "end"
        return DecodeError(f"link format, at character {self.pos} ({found}): {message}")


def _add_param(params: dict[str, ParamValue], name: str, value: str | None) -> None:
    if name not in params:
        params[name] = value
        return
    existing = params[name]
    if isinstance(existing, list):
        existing.append(value)
    else:
        params[name] = [existing, value]


def format_links(links: Iterable[Link]) -> str:
    """Serialize links; ``parse_links(format_links(links))`` gives them back."""
    return ",".join(_format_link(link) for link in links)


def encode_links(links: Iterable[Link]) -> bytes:
    try:
        return format_links(links).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"link text is not encodable as UTF-8: {exc.reason}") from exc


def _format_link(link: Link) -> str:
    if _FORBIDDEN_IN_URI.search(link.uri):
        raise EncodeError(f"invalid character in link uri {link.uri!r}")
    parts = [f"<{link.uri}>"]
    for name in link.params:
        if _PARMNAME.fullmatch(name) is None or name != name.lower():
            raise EncodeError(f"invalid link parameter name {name!r}")
        for value in link.values(name):
            parts.append(name if value is None else f"{name}={_format_value(name, value)}")
    return ";".join(parts)


def _format_value(name: str, value: str) -> str:
    if name not in _ALWAYS_QUOTED and _PTOKEN.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# --- Register / Update payload ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    """An object the client announced: its version (``ver``) and instance ids."""

    version: str | None = None
    instances: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class RegisteredObjects:
    """What a Register or Update payload says about the client.

    ``root_path`` is ``/`` unless the client declared an alternate path with
    ``rt="oma.lwm2m"``; object paths are relative to it. ``content_formats`` are the
    optional formats the client announced with ``ct`` on the root link.
    """

    root_path: str
    content_formats: tuple[int, ...]
    objects: dict[int, ObjectEntry]
    links: tuple[Link, ...]


_VERSION = re.compile(r"[0-9]+\.[0-9]+")


def parse_registration_links(payload: bytes) -> RegisteredObjects:
    """Read the object list of a Register/Update request (Core 1.1 §6.2.1).

    The root link is the one with ``rt="oma.lwm2m"`` (alternate root path), else
    ``</>``; its ``ct`` lists optional content formats (``ct=110`` or
    ``ct="60 110"``). Other links under the root path that name an object
    (``</1>;ver=1.1``) or an object instance (``</3/0>``) fill ``objects``. Links
    outside the root path or not naming an object or instance are kept only in
    ``links``. Syntax errors, several root links, or a bad ``ct``/``ver`` raise
    ``DecodeError`` (the server answers 4.00 Bad Request).
    """
    links = decode_links(payload)
    root = _root_link(links)
    root_path = _normalized_root(root.uri) if root is not None else "/"
    content_formats = _content_formats(root) if root is not None else ()
    versions: dict[int, str] = {}
    instances: dict[int, set[int]] = {}
    for link in links:
        if link is root:
            continue
        path = _path_under_root(link.uri, root_path)
        if path is None or path.depth not in (1, 2):
            continue
        object_id = path.ids[0]
        instance_ids = instances.setdefault(object_id, set())
        if path.depth == 2:
            instance_ids.add(path.ids[1])
        version = _object_version(link)
        if version is not None:
            versions[object_id] = version
    objects = {
        object_id: ObjectEntry(versions.get(object_id), tuple(sorted(ids)))
        for object_id, ids in sorted(instances.items())
    }
    return RegisteredObjects(root_path, content_formats, objects, tuple(links))


def _root_link(links: list[Link]) -> Link | None:
    declared = [
        link
        for link in links
        if any(
            value is not None and LWM2M_RESOURCE_TYPE in value.split()
            for value in link.values("rt")
        )
    ]
    if len(declared) > 1:
        raise DecodeError(f'several links declare rt="{LWM2M_RESOURCE_TYPE}"')
    if declared:
        return declared[0]
    return next((link for link in links if link.uri == "/"), None)


def _normalized_root(uri: str) -> str:
    if not uri.startswith("/"):
        raise DecodeError(f"alternate root path must be absolute, got {uri!r}")
    return uri.rstrip("/") or "/"


def _content_formats(root: Link) -> tuple[int, ...]:
    formats: list[int] = []
    for value in root.values("ct"):
        if value is None:
            raise DecodeError("ct attribute without a value")
        for token in value.split():
            if not token.isascii() or not token.isdigit() or int(token) > 65535:
                raise DecodeError(f"ct is not a content format number: {token!r}")
            if int(token) not in formats:
                formats.append(int(token))
    return tuple(formats)


def _object_version(link: Link) -> str | None:
    values = link.values("ver")
    if not values:
        return None
    version = values[-1]
    if version is None or _VERSION.fullmatch(version) is None:
        raise DecodeError(f"object version must look like 1.0, got {version!r} on <{link.uri}>")
    return version


def _path_under_root(uri: str, root_path: str) -> LwM2mPath | None:
    if root_path != "/":
        if not uri.startswith(root_path + "/"):
            return None
        uri = uri[len(root_path) :]
    if not uri.startswith("/"):
        return None
    try:
        return LwM2mPath.parse(uri)
    except InvalidPathError:
        return None


# --- Discover -----------------------------------------------------------------------


def attributes_by_path(
    links: Iterable[Link], root_path: str = "/"
) -> dict[LwM2mPath, dict[str, ParamValue]]:
    """Map each link of a Discover response to its path and attributes.

    ``</3/0/7>;dim=2;pmin=10`` gives ``{LwM2mPath(3, 0, 7): {"dim": "2", "pmin": "10"}}``.
    A link that is not an LwM2M path, or a path listed twice, raises ``DecodeError``.
    """
    result: dict[LwM2mPath, dict[str, ParamValue]] = {}
    for link in links:
        path = _path_under_root(link.uri, root_path)
        if path is None:
            raise DecodeError(f"discover link is not an LwM2M path: <{link.uri}>")
        if path in result:
            raise DecodeError(f"discover lists {path} twice")
        result[path] = dict(link.params)
    return result


def discover_links(attributes: Mapping[LwM2mPath, Mapping[str, ParamValue]]) -> list[Link]:
    """The links of a Discover response, the inverse of :func:`attributes_by_path`."""
    return [Link(str(path), dict(params)) for path, params in attributes.items()]
