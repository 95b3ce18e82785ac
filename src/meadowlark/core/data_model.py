"""A device's data model as Coiote shows it: cached values under readable names, the
definitions of the objects it registered, and its instantiated resources with values.

Everything here works on what the server already knows (the value cache and the object
list of the device's registration, or of its last one when it is offline); nothing is
sent to the device.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth.principal import Principal
from meadowlark.core.devices import get_device
from meadowlark.core.errors import InvalidInput
from meadowlark.core.object_models import ModelCatalog
from meadowlark.lwm2m.codec.errors import DecodeError
from meadowlark.lwm2m.codec.link_format import ObjectEntry, parse_registration_links
from meadowlark.lwm2m.codec.text import float_to_text
from meadowlark.lwm2m.model import (
    ObjectModel,
    Operations,
    ReadablePathError,
    ResourceModel,
    VersionedModels,
    from_readable,
    to_readable,
)
from meadowlark.lwm2m.node import ObjectLink, ResourceType, Value
from meadowlark.lwm2m.path import ROOT, LwM2mPath
from meadowlark.server.service import LwM2mServer
from meadowlark.server.values import CachedValue
from meadowlark.store.device_models import Device

MAX_PARAMETERS = 200
MAX_PARAMETER_LENGTH = 1024

COIOTE_TYPES: Mapping[ResourceType, str] = {
    ResourceType.STRING: "String",
    ResourceType.INTEGER: "Integer",
    ResourceType.UNSIGNED_INTEGER: "UnsignedInteger",
    ResourceType.FLOAT: "Float",
    ResourceType.BOOLEAN: "Boolean",
    ResourceType.OPAQUE: "Opaque",
    ResourceType.TIME: "Time",
    ResourceType.OBJLNK: "Objlnk",
    ResourceType.CORELNK: "Corelnk",
    ResourceType.NONE: "None",
}
"""LwM2M data types by the names Coiote uses (python-coiote's ``Lwm2mResourceType``)."""


@dataclass(frozen=True, slots=True)
class CacheEntry:
    name: str
    value: str
    update_time: datetime
    type: str


@dataclass(frozen=True, slots=True)
class ResourceDefinition:
    id: int
    name: str
    operations: list[str]
    instance_type: str
    mandatory: bool
    type: str
    range: str
    units: str
    description: str


@dataclass(frozen=True, slots=True)
class ObjectDefinition:
    id: int
    name: str
    object_version: str
    instance_type: str
    mandatory: bool
    resource_definitions: list[ResourceDefinition]


@dataclass(frozen=True, slots=True)
class ResourceData:
    """One instantiated resource: ``value`` for a single one, ``values`` for a multiple one."""

    path: str
    definition: ResourceDefinition
    value: str | None
    values: list[str] | None


@dataclass(frozen=True, slots=True)
class DeviceDataModel:
    """What the server knows of one device's data model."""

    device: Device
    models: VersionedModels
    objects: Mapping[int, ObjectEntry]
    """Registered objects: of the current registration, else of the last one."""


async def device_data_model(
    device: Device, catalog: ModelCatalog, server: LwM2mServer
) -> DeviceDataModel:
    """The device's models (its domain's, at the object versions it registered)."""
    registration = await server.get_registration(device.endpoint_name)
    if registration is not None:
        objects: Mapping[int, ObjectEntry] = registration.objects.objects
    else:
        objects = _stored_objects(device.registered_objects)
    versions = {object_id: entry.version for object_id, entry in objects.items() if entry.version}
    models = catalog.registry_for(device.domain_id).with_versions(versions)
    return DeviceDataModel(device, models, objects)


async def visible_device_data_model(
    session: AsyncSession,
    principal: Principal,
    device_id: str,
    catalog: ModelCatalog,
    server: LwM2mServer,
) -> DeviceDataModel:
    """``device_data_model`` of one of the caller's devices (404 for any other)."""
    device = await get_device(session, principal, device_id)
    return await device_data_model(device, catalog, server)


def _stored_objects(links: str | None) -> Mapping[int, ObjectEntry]:
    if not links:
        return {}
    try:
        return parse_registration_links(links.encode("utf-8")).objects
    except DecodeError:
        return {}


def select_paths(parameters: Sequence[str], models: VersionedModels) -> list[LwM2mPath]:
    """The numeric paths that ``parameters`` name (readable, numeric or slash paths; a
    trailing dot asks for a subtree). No parameters select everything."""
    if len(parameters) > MAX_PARAMETERS:
        raise InvalidInput(f"at most {MAX_PARAMETERS} parameters")
    paths = []
    for parameter in parameters:
        if len(parameter) > MAX_PARAMETER_LENGTH:
            raise InvalidInput(f"a parameter is longer than {MAX_PARAMETER_LENGTH} characters")
        try:
            paths.append(from_readable(parameter, models))
        except ReadablePathError as exc:
            raise InvalidInput(f"invalid parameter {parameter[:120]!r}: {exc}") from None
    return paths or [ROOT]


def _selected(path: LwM2mPath, selection: Iterable[LwM2mPath]) -> bool:
    return any(path.starts_with(prefix) for prefix in selection)


def render_value(value: Value) -> str:
    """A cached value as Coiote shows it: text, numbers in decimal, booleans ``true``/
    ``false``, Opaque in base64, Time in ISO 8601 (UTC), Objlnk as ``3:0``."""
    match value:
        case None:
            return ""
        case bool():
            return "true" if value else "false"
        case int():
            return str(value)
        case float():
            return float_to_text(value) if math.isfinite(value) else str(value)
        case bytes():
            return base64.b64encode(value).decode("ascii")
        case datetime():
            return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        case ObjectLink():
            return str(value)
    return str(value)


def cached_entries(
    data_model: DeviceDataModel,
    values: Mapping[LwM2mPath, CachedValue],
    selection: Sequence[LwM2mPath],
) -> list[CacheEntry]:
    """Cached values under the selected paths, named by readable path, in path order."""
    return [
        CacheEntry(
            name=to_readable(path, data_model.models),
            value=render_value(cached.value),
            update_time=cached.updated_at,
            type=COIOTE_TYPES[cached.type],
        )
        for path, cached in sorted(values.items())
        if _selected(path, selection)
    ]


def operation_names(operations: Operations) -> list[str]:
    names = []
    if operations.readable:
        names.append("Read")
    if operations.writable:
        names.append("Write")
    if operations.executable:
        names.append("Execute")
    return names


def resource_definition(resource: ResourceModel) -> ResourceDefinition:
    return ResourceDefinition(
        id=resource.id,
        name=resource.name,
        operations=operation_names(resource.operations),
        instance_type="Multiple" if resource.multiple else "Single",
        mandatory=resource.mandatory,
        type=COIOTE_TYPES[resource.type],
        range=resource.range_enumeration,
        units=resource.units,
        description=resource.description,
    )


def object_definition(model: ObjectModel) -> ObjectDefinition:
    return ObjectDefinition(
        id=model.id,
        name=model.name,
        object_version=model.version,
        instance_type="Multiple" if model.multiple else "Single",
        mandatory=model.mandatory,
        resource_definitions=[
            resource_definition(resource)
            for resource in sorted(model.resources.values(), key=lambda r: r.id)
        ],
    )


def _registered_models(
    data_model: DeviceDataModel, selection: Sequence[LwM2mPath]
) -> list[ObjectModel]:
    """Known models of the registered objects that the selection touches."""
    found = []
    for object_id in sorted(data_model.objects):
        model = data_model.models.get_object(object_id)
        if model is None:
            continue
        if any(path.is_root or path.object_id == object_id for path in selection):
            found.append(model)
    return found


def object_definitions(
    data_model: DeviceDataModel, selection: Sequence[LwM2mPath]
) -> list[ObjectDefinition]:
    """Definitions of the registered objects (at the registered versions) the selection
    names; objects without a known model are left out."""
    return [object_definition(model) for model in _registered_models(data_model, selection)]


def resources_data(
    data_model: DeviceDataModel,
    values: Mapping[LwM2mPath, CachedValue],
    selection: Sequence[LwM2mPath],
) -> list[ResourceData]:
    """Resources of the registered object instances with their cached values.

    A resource counts as instantiated when its model makes it mandatory or the cache
    holds a value of it; uncached values are empty.
    """
    found = []
    for model in _registered_models(data_model, selection):
        cached_instances = {
            path.ids[1] for path in values if path.depth >= 2 and path.ids[0] == model.id
        }
        instances = set(data_model.objects[model.id].instances) | cached_instances
        for instance_id in sorted(instances):
            cached_resources = {
                path.resource_id
                for path in values
                if path.depth >= 3 and path.ids[:2] == (model.id, instance_id)
            }
            for resource in sorted(model.resources.values(), key=lambda r: r.id):
                path = LwM2mPath(model.id, instance_id, resource.id)
                if not (resource.mandatory or resource.id in cached_resources):
                    continue
                if not any(
                    path.starts_with(wanted) or wanted.starts_with(path) for wanted in selection
                ):
                    continue
                found.append(_resource_data(path, resource, values, data_model.models))
    return found


def _resource_data(
    path: LwM2mPath,
    resource: ResourceModel,
    values: Mapping[LwM2mPath, CachedValue],
    models: VersionedModels,
) -> ResourceData:
    definition = resource_definition(resource)
    name = to_readable(path, models)
    if resource.multiple:
        instances = sorted(
            (cached_path, cached)
            for cached_path, cached in values.items()
            if cached_path.is_resource_instance and cached_path.parent == path
        )
        return ResourceData(name, definition, None, [render_value(c.value) for _, c in instances])
    cached = values.get(path)
    return ResourceData(name, definition, render_value(cached.value if cached else None), None)
