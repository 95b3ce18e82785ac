"""Registrations: parsing Register/Update requests, the registration store, rate limiting.

Register and Update parameters are those of OMA-TS-LightweightM2M-Core 1.1 §6.2.1 and
Transport 1.1 §6.4 (``ep lt lwm2m sms b Q``); the response codes are those of the
Transport spec's Register/Update tables (4.00 Bad Request, 4.03 Forbidden, 4.04 Not
Found, 4.12 Precondition Failed).
"""

from __future__ import annotations

import re
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from meadowlark.lwm2m.codec.errors import DecodeError
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.codec.link_format import (
    RegisteredObjects,
    format_links,
    parse_registration_links,
)
from meadowlark.server.transport import (
    BAD_REQUEST,
    PRECONDITION_FAILED,
    UNSUPPORTED_CONTENT_FORMAT,
    Peer,
    ResponseCode,
)

DEFAULT_LIFETIME = 86400
"""Core 1.1 §6.2.1: ``lt`` defaults to 86400 seconds."""
MAX_ENDPOINT_NAME_LENGTH = 150
MAX_LIFETIME = 2**32 - 1
REGISTRATION_ID_BYTES = 8
"""Random bytes in a registration id: its location ``/rd/{id}`` is all an Update or
De-register needs over plain UDP, so it must not be guessable (64 bits, 16 hex digits)."""
_VERSION = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}")
_BINDING_1_0 = frozenset({"U", "UQ", "S", "SQ", "US", "UQS"})
"""The only binding values LwM2M 1.0 defines (Core 1.0 §5.3.1.1)."""
_BINDING_LETTERS = frozenset("USTNQ")
"""Binding letters of 1.1+ (Core 1.1 §6.2.1.1: U, S, T, N; Q kept for 1.0-style clients)."""


class RegistrationRejected(Exception):
    """The request must be refused with ``code``; ``message`` becomes the diagnostic."""

    def __init__(self, code: ResponseCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Registration:
    """One device's current registration; replaced (never mutated) on Update."""

    registration_id: str
    endpoint: str
    lwm2m_version: str
    binding: str
    lifetime: int
    queue_mode: bool
    sms_number: str | None
    objects: RegisteredObjects
    peer: Peer
    registered_at: datetime
    last_update: datetime
    object_versions: dict[int, str] = field(init=False, repr=False, compare=False)
    """Object id -> version the device registered; derived once, read per notification."""

    def __post_init__(self) -> None:
        # Few distinct values among many devices: one string object each.
        object.__setattr__(self, "lwm2m_version", sys.intern(self.lwm2m_version))
        object.__setattr__(self, "binding", sys.intern(self.binding))
        object.__setattr__(self, "object_versions", _SHARED_OBJECTS.versions(self.objects))

    @property
    def location_path(self) -> tuple[str, str]:
        return ("rd", self.registration_id)

    @property
    def root_path(self) -> str:
        return self.objects.root_path

    @property
    def content_formats(self) -> tuple[int, ...]:
        return self.objects.content_formats

    @property
    def is_1_0(self) -> bool:
        return version_tuple(self.lwm2m_version) <= (1, 0)


@dataclass(frozen=True, slots=True)
class RegisterParams:
    endpoint: str
    lwm2m_version: str
    binding: str
    lifetime: int
    queue_mode: bool
    sms_number: str | None
    objects: RegisteredObjects


@dataclass(frozen=True, slots=True)
class UpdateParams:
    """What an Update changes; ``None`` fields stay as they were."""

    lifetime: int | None = None
    binding: str | None = None
    queue_mode: bool | None = None
    sms_number: str | None = None
    objects: RegisteredObjects | None = None

    def applied_to(self, registration: Registration, peer: Peer, now: datetime) -> Registration:
        return replace(
            registration,
            lifetime=self.lifetime if self.lifetime is not None else registration.lifetime,
            binding=self.binding if self.binding is not None else registration.binding,
            queue_mode=(
                self.queue_mode if self.queue_mode is not None else registration.queue_mode
            ),
            sms_number=self.sms_number if self.sms_number is not None else registration.sms_number,
            objects=self.objects if self.objects is not None else registration.objects,
            peer=peer,
            last_update=now,
        )


def new_registration_id() -> str:
    """A fresh, unguessable registration id (from ``secrets``, lowercase hex)."""
    return secrets.token_hex(REGISTRATION_ID_BYTES)


def version_tuple(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    return int(major), int(minor)


def parse_register(
    query: Sequence[str],
    payload: bytes,
    content_format: int | None,
    supported_versions: Iterable[str],
) -> RegisterParams:
    """Validate a Register request; raises ``RegistrationRejected`` with the code to answer."""
    params = _query_params(query)
    endpoint = _single(params, "ep")
    if not endpoint:
        raise RegistrationRejected(BAD_REQUEST, "missing endpoint name (ep)")
    if len(endpoint) > MAX_ENDPOINT_NAME_LENGTH:
        raise RegistrationRejected(
            BAD_REQUEST, f"endpoint name longer than {MAX_ENDPOINT_NAME_LENGTH} characters"
        )
    if not endpoint.isprintable():
        raise RegistrationRejected(BAD_REQUEST, "endpoint name has control characters")
    version = _single(params, "lwm2m") or "1.0"
    if _VERSION.fullmatch(version) is None:
        raise RegistrationRejected(BAD_REQUEST, f"malformed LwM2M version {version!r}")
    if version not in set(supported_versions):
        raise RegistrationRejected(PRECONDITION_FAILED, f"LwM2M version {version} not supported")
    binding = _binding(_single(params, "b") or "U", version)
    lifetime_text = _single(params, "lt")
    lifetime = DEFAULT_LIFETIME if lifetime_text is None else _lifetime(lifetime_text)
    queue_mode = "Q" in binding or _flag(params, "Q")
    return RegisterParams(
        endpoint=endpoint,
        lwm2m_version=version,
        binding=binding,
        lifetime=lifetime,
        queue_mode=queue_mode,
        sms_number=_single(params, "sms"),
        objects=_objects(payload, content_format),
    )


def parse_update(
    query: Sequence[str], payload: bytes, content_format: int | None, lwm2m_version: str
) -> UpdateParams:
    """Validate an Update request (Core 1.1 §6.2.2); the payload, if any, replaces the objects."""
    params = _query_params(query)
    lifetime_text = _single(params, "lt")
    binding_text = _single(params, "b")
    binding = _binding(binding_text, lwm2m_version) if binding_text is not None else None
    queue_mode: bool | None = None
    if binding is not None and ("Q" in binding or version_tuple(lwm2m_version) <= (1, 0)):
        # In 1.0 the binding alone says whether queue mode is on; 1.1+ sets it with Q.
        queue_mode = "Q" in binding
    return UpdateParams(
        lifetime=_lifetime(lifetime_text) if lifetime_text is not None else None,
        binding=binding,
        queue_mode=queue_mode,
        sms_number=_single(params, "sms"),
        objects=_objects(payload, content_format) if payload else None,
    )


def _query_params(query: Sequence[str]) -> dict[str, list[str | None]]:
    params: dict[str, list[str | None]] = {}
    for option in query:
        name, sep, value = option.partition("=")
        params.setdefault(name, []).append(value if sep else None)
    return params


def _single(params: dict[str, list[str | None]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise RegistrationRejected(BAD_REQUEST, f"query parameter {name!r} given twice")
    value = values[0]
    if value is None:
        raise RegistrationRejected(BAD_REQUEST, f"query parameter {name!r} needs a value")
    return value


def _flag(params: dict[str, list[str | None]], name: str) -> bool:
    values = params.get(name)
    if not values:
        return False
    if values != [None]:
        raise RegistrationRejected(BAD_REQUEST, f"{name!r} is a flag and takes no value")
    return True


def _lifetime(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_LIFETIME:
        raise RegistrationRejected(BAD_REQUEST, f"lifetime must be a positive integer: {text!r}")
    return int(text)


def _binding(text: str, version: str) -> str:
    if version_tuple(version) <= (1, 0):
        if text not in _BINDING_1_0:
            raise RegistrationRejected(BAD_REQUEST, f"invalid LwM2M 1.0 binding {text!r}")
        return text
    if not text or set(text) - _BINDING_LETTERS or len(set(text)) != len(text):
        raise RegistrationRejected(BAD_REQUEST, f"invalid binding {text!r}")
    return text


def _objects(payload: bytes, content_format: int | None) -> RegisteredObjects:
    if content_format not in (None, ContentFormat.LINK_FORMAT):
        raise RegistrationRejected(
            UNSUPPORTED_CONTENT_FORMAT, "the object list must be in CoRE Link Format (40)"
        )
    try:
        return shared_object_list(payload)
    except DecodeError as exc:
        raise RegistrationRejected(BAD_REQUEST, str(exc)) from None


def shared_object_list(payload: bytes) -> RegisteredObjects:
    """The parsed object list of a Register payload (CoRE Link Format), shared with the
    registrations that sent the same one when it is small; raises ``DecodeError``."""
    if len(payload) <= MAX_SHARED_LINKS_SIZE:
        return _SHARED_OBJECTS.parse(payload)
    return parse_registration_links(bytes(payload))


MAX_SHARED_LINKS_SIZE = 2048
"""Object lists up to this size are parsed once and shared (see ``SharedObjectLists``)."""


class SharedObjectLists:
    """Object lists shared by the registrations that sent the same links.

    Devices of one model and firmware register the same payload: it is parsed once and
    its ``RegisteredObjects`` (and the object versions derived from it) is held once
    for all of them, instead of per device. Both are read-only once made. At most
    ``capacity`` distinct lists are remembered (oldest forgotten first); a forgotten
    list stays alive in the registrations that hold it.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._parsed: dict[bytes, RegisteredObjects] = {}
        # id(objects) -> (objects, versions); holding ``objects`` keeps its id unique.
        self._versions: dict[int, tuple[RegisteredObjects, dict[int, str]]] = {}
        self._texts: dict[int, tuple[RegisteredObjects, str]] = {}

    def parse(self, payload: bytes) -> RegisteredObjects:
        key = bytes(payload)
        objects = self._parsed.get(key)
        if objects is None:
            objects = parse_registration_links(key)
            self._remember(self._parsed, key, objects)
        return objects

    def versions(self, objects: RegisteredObjects) -> dict[int, str]:
        """Object id -> version registered, the same dict for the same ``objects``."""
        known = self._versions.get(id(objects))
        if known is not None and known[0] is objects:
            return known[1]
        versions = {
            object_id: entry.version
            for object_id, entry in objects.objects.items()
            if entry.version is not None
        }
        self._remember(self._versions, id(objects), (objects, versions))
        return versions

    def links_text(self, objects: RegisteredObjects) -> str:
        """The links of ``objects`` in CoRE Link Format (as stored with the device), the
        same string for the same ``objects``: formatted once per shared list."""
        known = self._texts.get(id(objects))
        if known is not None and known[0] is objects:
            return known[1]
        text = format_links(objects.links)
        self._remember(self._texts, id(objects), (objects, text))
        return text

    def _remember(self, cache: dict[Any, Any], key: object, value: object) -> None:
        if len(cache) >= self._capacity:
            del cache[next(iter(cache))]
        cache[key] = value


_SHARED_OBJECTS = SharedObjectLists()


def registered_links_text(objects: RegisteredObjects) -> str:
    """``objects`` in CoRE Link Format, formatted once for all registrations sharing it."""
    return _SHARED_OBJECTS.links_text(objects)


class RegistrationStore(Protocol):
    """Where current registrations live (in memory on one node, shared when scaled out)."""

    async def add(self, registration: Registration) -> Registration | None:
        """Store ``registration``; returns the one it replaces for the same endpoint."""

    async def replace(self, registration: Registration) -> None:
        """Store an updated registration under its existing id."""

    async def get(self, registration_id: str) -> Registration | None: ...

    async def get_by_endpoint(self, endpoint: str) -> Registration | None: ...

    async def get_by_peer(self, host: str, port: int) -> Registration | None: ...

    async def remove(self, registration_id: str) -> Registration | None: ...

    async def all(self) -> list[Registration]: ...

    def held(self) -> int:
        """How many registrations this node holds (its devices' CoAP paths end here)."""


@dataclass
class InMemoryRegistrationStore:
    """Registrations of this node, indexed by id, endpoint name and peer address."""

    _by_id: dict[str, Registration] = field(default_factory=dict)
    _id_by_endpoint: dict[str, str] = field(default_factory=dict)
    _id_by_address: dict[tuple[str, int], str] = field(default_factory=dict)

    async def add(self, registration: Registration) -> Registration | None:
        old_id = self._id_by_endpoint.get(registration.endpoint)
        replaced = await self.remove(old_id) if old_id is not None else None
        self._index(registration)
        return replaced

    async def replace(self, registration: Registration) -> None:
        old = self._by_id.get(registration.registration_id)
        if old is not None:
            self._unindex_address(old)
        self._index(registration)

    async def get(self, registration_id: str) -> Registration | None:
        return self._by_id.get(registration_id)

    async def get_by_endpoint(self, endpoint: str) -> Registration | None:
        registration_id = self._id_by_endpoint.get(endpoint)
        return None if registration_id is None else self._by_id.get(registration_id)

    async def get_by_peer(self, host: str, port: int) -> Registration | None:
        registration_id = self._id_by_address.get((host, port))
        return None if registration_id is None else self._by_id.get(registration_id)

    async def remove(self, registration_id: str) -> Registration | None:
        registration = self._by_id.pop(registration_id, None)
        if registration is not None:
            if self._id_by_endpoint.get(registration.endpoint) == registration_id:
                del self._id_by_endpoint[registration.endpoint]
            self._unindex_address(registration)
        return registration

    async def all(self) -> list[Registration]:
        return list(self._by_id.values())

    def held(self) -> int:
        return len(self._by_id)

    def _index(self, registration: Registration) -> None:
        self._by_id[registration.registration_id] = registration
        self._id_by_endpoint[registration.endpoint] = registration.registration_id
        address = (registration.peer.host, registration.peer.port)
        self._id_by_address[address] = registration.registration_id

    def _unindex_address(self, registration: Registration) -> None:
        address = (registration.peer.host, registration.peer.port)
        if self._id_by_address.get(address) == registration.registration_id:
            del self._id_by_address[address]


class RegistrationRateLimiter:
    """At most ``limit`` Registers per source host per 60-second window.

    Fixed windows keep it O(1) per request; hosts of past windows are dropped when a
    new window starts, so memory stays bounded by one window's senders.
    """

    WINDOW = 60.0

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._window_start = clock()
        self._counts: dict[str, int] = {}

    def retry_after(self, host: str) -> int | None:
        """Count one Register from ``host``; seconds to wait if over the limit, else None."""
        now = self._clock()
        if now - self._window_start >= self.WINDOW:
            self._window_start = now
            self._counts.clear()
        count = self._counts.get(host, 0) + 1
        self._counts[host] = count
        if count > self._limit:
            return max(1, int(self._window_start + self.WINDOW - now + 0.999))
        return None
