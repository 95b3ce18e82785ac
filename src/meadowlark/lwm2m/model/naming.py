"""Readable data-model paths in the style of Coiote IoT DM: ``Device.0.Manufacturer``.

A readable path is ``<object>.<instance>[.<resource>[.<resource instance>]]`` where the
object and resource are written with their DDF names (spaces kept, e.g.
``Connectivity Monitoring.0.Radio Signal Strength``, ``Portfolio.11.Identity.1``) and the
instance levels are numbers. Any object or resource level may also be written as its
number (``3.0.1``, ``Device.0.1``); slash paths (``/3/0/1``) are accepted too. A trailing
dot (``Location.``, ``Device.0.``) asks for a subtree and resolves to the prefix's path.

Names are not unique (IPSO object 3336 and OMA object 6 are both "Location"; some
objects repeat a resource name): the lowest id owns a name, and ``to_readable`` writes
the others as numbers, so every readable path maps back to exactly one numeric path.
Matching is case-sensitive first; failing that, a match ignoring case and whitespace
runs is accepted when it is unambiguous.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Protocol

from meadowlark.lwm2m.model.registry import fold_name
from meadowlark.lwm2m.model.types import ObjectModel
from meadowlark.lwm2m.path import MAX_ID, InvalidPathError, LwM2mPath

_SLASH_PATH = re.compile(r"/?\d+(?:/\d+)*/?")
_DOTTED_NUMBERS = re.compile(r"\d{1,5}(\.\d{1,5}){0,3}\.?")


class ReadablePathError(ValueError):
    """A readable path that names nothing, or more than one thing."""


class NamedModels(Protocol):
    """What path naming needs: ``ModelRegistry`` and its versioned views provide it."""

    def get_object(self, object_id: int) -> ObjectModel | None: ...

    def objects_named(self, name: str, *, loose: bool = False) -> list[ObjectModel]: ...


def to_readable(path: LwM2mPath, models: NamedModels) -> str:
    """The readable form of ``path``; numbers stand in for unknown or ambiguous names."""
    if path.is_root:
        return ""
    object_id = path.ids[0]
    model = models.get_object(object_id)
    segments = [str(value) for value in path.ids]
    if model is not None and _owns_object_name(model, models):
        segments[0] = model.name
    if model is not None and path.resource_id is not None:
        resource_name = _owned_resource_name(model, path.resource_id)
        if resource_name is not None:
            segments[2] = resource_name
    readable = ".".join(segments)
    numeric = ".".join(str(value) for value in path.ids)
    if readable == numeric or _reads_back_as(readable, path, models):
        return readable
    return numeric


def _reads_back_as(readable: str, path: LwM2mPath, models: NamedModels) -> bool:
    """Guards against names that read back differently: dotted names in a contrived
    catalog (object ``A.0`` next to object ``A``), names like ``.`` or ``1/2``."""
    try:
        return from_readable(readable, models) == path
    except ReadablePathError:
        return False


def from_readable(text: str, models: NamedModels) -> LwM2mPath:
    """The numeric path a readable (or numeric) path designates."""
    stripped = text.strip()
    if stripped in ("", "/", "."):
        return LwM2mPath()
    if _SLASH_PATH.fullmatch(stripped):
        try:
            return LwM2mPath.parse(stripped)
        except InvalidPathError as exc:
            raise ReadablePathError(str(exc)) from None
    if _DOTTED_NUMBERS.fullmatch(stripped):
        # All numbers: always numeric, even where an object is named like "1.1".
        try:
            return LwM2mPath.of(*(int(part) for part in stripped.rstrip(".").split(".")))
        except InvalidPathError as exc:
            raise ReadablePathError(str(exc)) from None
    path = _resolve(stripped, models)
    if path is None:
        raise ReadablePathError(f"no object or resource of the data model matches {text!r}")
    return path


def _resolve(text: str, models: NamedModels) -> LwM2mPath | None:
    """Exact names first; else the single loose match (``ReadablePathError`` if several)."""
    body = text[:-1] if text.endswith(".") else text
    exact = next(_parses(body, models, loose=False), None)
    if exact is not None:
        return exact
    loose_matches = set(_parses(body, models, loose=True))
    if len(loose_matches) > 1:
        listed = ", ".join(str(path) for path in sorted(loose_matches))
        raise ReadablePathError(
            f"{text!r} is ambiguous when case and spacing are ignored: {listed}"
        )
    return loose_matches.pop() if loose_matches else None


def _parses(text: str, models: NamedModels, loose: bool) -> Iterator[LwM2mPath]:
    """Every reading of ``text``, longest object name first.

    Object and resource names may contain dots, so each dot is tried as the end of the
    object name; instance levels are plain numbers.
    """
    dots = [index for index, char in enumerate(text) if char == "."]
    for end in reversed([*dots, len(text)]):
        object_part, rest = text[:end], text[end + 1 :] if end < len(text) else None
        for object_id in _object_ids(object_part, models, loose):
            if rest is None:
                yield _path(object_id)
                continue
            instance_part, separator, resource_text = rest.partition(".")
            instance_id = _number(instance_part)
            if instance_id is None:
                continue
            if not separator:
                yield _path(object_id, instance_id)
                continue
            model = models.get_object(object_id)
            for resource_part, instance_text in _resource_splits(resource_text):
                resource_instance_id = None
                if instance_text is not None:
                    resource_instance_id = _number(instance_text)
                    if resource_instance_id is None:
                        continue
                for resource_id in _resource_ids(resource_part, model, loose):
                    ids = [object_id, instance_id, resource_id]
                    if resource_instance_id is not None:
                        ids.append(resource_instance_id)
                    yield _path(*ids)


def _resource_splits(text: str) -> list[tuple[str, str | None]]:
    """``Error Code.1`` is a resource instance of ``Error Code``, unless a resource is
    itself named ``Error Code.1``: the whole text as a resource name is tried first."""
    splits: list[tuple[str, str | None]] = [(text, None)]
    head, dot, tail = text.rpartition(".")
    if dot and head:
        splits.append((head, tail))
    return splits


def _object_ids(segment: str, models: NamedModels, loose: bool) -> list[int]:
    number = _number(segment)
    if number is not None:
        return [number]
    owners: dict[str, int] = {}
    for model in models.objects_named(segment, loose=loose):
        owners.setdefault(model.name, model.id)
    return [
        owner for owner in owners.values() if _owns_object_name(models.get_object(owner), models)
    ]


def _resource_ids(segment: str, model: ObjectModel | None, loose: bool) -> list[int]:
    number = _number(segment)
    if number is not None:
        return [number]
    if model is None:
        return []
    wanted = fold_name(segment) if loose else segment
    owners: dict[str, int] = {}
    for resource in sorted(model.resources.values(), key=lambda r: r.id):
        if (fold_name(resource.name) if loose else resource.name) == wanted:
            owners.setdefault(resource.name, resource.id)
    return [owner for owner in owners.values() if _owned_resource_name(model, owner) is not None]


def _owns_object_name(model: ObjectModel | None, models: NamedModels) -> bool:
    """True when ``model``'s name can stand for it: usable, and no lower id shares it."""
    if model is None or not _usable_name(model.name):
        return False
    same_name = models.objects_named(model.name)
    return bool(same_name) and same_name[0].id == model.id


def _owned_resource_name(model: ObjectModel, resource_id: int) -> str | None:
    resource = model.resources.get(resource_id)
    if resource is None or not _usable_name(resource.name):
        return None
    for other in model.resources.values():
        if other.name == resource.name and other.id < resource_id:
            return None
    return resource.name


def _usable_name(name: str) -> bool:
    """Names that read back as themselves: not empty, not a number, no outer spaces."""
    return bool(name) and name == name.strip() and not (name.isascii() and name.isdigit())


def _number(segment: str) -> int | None:
    """A path level written as a number (canonical decimal, no sign or leading zero)."""
    if not (segment.isascii() and segment.isdigit()):
        return None
    if len(segment) > 1 and segment[0] == "0":
        return None
    value = int(segment)
    if value > MAX_ID:
        raise ReadablePathError(f"path id out of range 0..{MAX_ID}: {value}")
    return value


def _path(*ids: int) -> LwM2mPath:
    try:
        return LwM2mPath.of(*ids)
    except InvalidPathError as exc:
        raise ReadablePathError(str(exc)) from None
