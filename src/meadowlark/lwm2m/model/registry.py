"""Object models by (object id, version), and the built-in catalog shipped with the package."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cache
from importlib.resources import files
from typing import Any

from meadowlark.lwm2m.model.ddf import frozen_resources
from meadowlark.lwm2m.model.types import ObjectModel, Operations, ResourceModel
from meadowlark.lwm2m.node import ResourceType

CATALOG_FORMAT = 1
"""Version of the JSON layout written by ``models_to_json``."""

_BUILTIN_PACKAGE = "meadowlark.lwm2m.model"
_BUILTIN_FILE = ("builtin", "objects.json")


def fold_name(name: str) -> str:
    """The key under which names match loosely: case and whitespace runs ignored."""
    return " ".join(name.split()).casefold()


def version_key(version: str) -> tuple[int, ...]:
    """Sort key of an object version: ``"1.10"`` is newer than ``"1.2"``."""
    parts = version.split(".")
    if len(parts) < 2 or not all(part.isascii() and part.isdigit() for part in parts):
        raise ValueError(f"not an object version like 1.0: {version!r}")
    return tuple(int(part) for part in parts)


class ModelRegistry:
    """Object models keyed by (object id, object version).

    Lookups without a version resolve to the newest version known. ``get_resource``
    makes a registry a ``ModelLookup`` for the codecs.
    """

    def __repr__(self) -> str:
        shown = {
            m.id: (m.name, {r.id: r.name for r in m.resources.values()})
            for m in self._newest.values()
        }
        return f"ModelRegistry({shown})"

    def __init__(self, models: Iterable[ObjectModel] = ()) -> None:
        self._by_id: dict[int, dict[str, ObjectModel]] = {}
        self._newest: dict[int, ObjectModel] = {}
        # Every name any version of an object had; lookups re-check the resolved model, so
        # a name left behind by a replaced model does no harm.
        self._ids_by_name: dict[str, set[int]] = {}
        self._ids_by_folded_name: dict[str, set[int]] = {}
        for model in models:
            self.add(model)

    def add(self, model: ObjectModel) -> None:
        """Add a model, replacing any model with the same id and version."""
        new_key = version_key(model.version)
        versions = self._by_id.setdefault(model.id, {})
        versions[model.version] = model
        newest = self._newest.get(model.id)
        if newest is None or new_key >= version_key(newest.version):
            self._newest[model.id] = model
        self._ids_by_name.setdefault(model.name, set()).add(model.id)
        self._ids_by_folded_name.setdefault(fold_name(model.name), set()).add(model.id)

    def get_object(self, object_id: int, version: str | None = None) -> ObjectModel | None:
        """The model at exactly ``version``, or the newest one when ``version`` is None."""
        if version is None:
            return self._newest.get(object_id)
        return self._by_id.get(object_id, {}).get(version)

    def get_resource(
        self, object_id: int, resource_id: int, version: str | None = None
    ) -> ResourceModel | None:
        model = self.get_object(object_id, version)
        return None if model is None else model.resources.get(resource_id)

    def objects(self) -> list[ObjectModel]:
        """The newest model of every known object, by object id."""
        return [self._newest[object_id] for object_id in sorted(self._newest)]

    def versions(self, object_id: int) -> list[str]:
        """Known versions of an object, oldest first."""
        return sorted(self._by_id.get(object_id, {}), key=version_key)

    def all_models(self) -> list[ObjectModel]:
        """Every model of every version, by object id then version."""
        return [
            self._by_id[object_id][version]
            for object_id in sorted(self._by_id)
            for version in self.versions(object_id)
        ]

    def objects_named(self, name: str, *, loose: bool = False) -> list[ObjectModel]:
        """Newest models named ``name`` (``loose``: equal under ``fold_name``), by object id."""
        return _objects_named(self, self._candidate_ids(name, loose), name, loose)

    def with_versions(self, versions: Mapping[int, str]) -> VersionedModels:
        """A view resolving each object at the version a device registered with."""
        return VersionedModels(self, versions)

    def copy(self) -> ModelRegistry:
        """An independent registry with the same models (e.g. a tenant's, over the base)."""
        return ModelRegistry(self.all_models())

    def _candidate_ids(self, name: str, loose: bool) -> set[int]:
        if loose:
            return self._ids_by_folded_name.get(fold_name(name), set())
        return self._ids_by_name.get(name, set())


class VersionedModels:
    """A read-only view of a registry at the object versions one device registered.

    Objects the device did not announce a version for, or announced at a version the
    registry does not know, resolve to the newest known version.
    """

    def __init__(self, registry: ModelRegistry, versions: Mapping[int, str]) -> None:
        self._registry = registry
        self._versions = dict(versions)

    def get_object(self, object_id: int) -> ObjectModel | None:
        version = self._versions.get(object_id)
        if version is not None:
            model = self._registry.get_object(object_id, version)
            if model is not None:
                return model
        return self._registry.get_object(object_id)

    def get_resource(self, object_id: int, resource_id: int) -> ResourceModel | None:
        model = self.get_object(object_id)
        return None if model is None else model.resources.get(resource_id)

    def objects(self) -> list[ObjectModel]:
        """The resolved model of every known object, by object id."""
        resolved = (self.get_object(model.id) for model in self._registry.objects())
        return [model for model in resolved if model is not None]

    def objects_named(self, name: str, *, loose: bool = False) -> list[ObjectModel]:
        """Resolved models named ``name`` (``loose``: equal under ``fold_name``), by object id."""
        candidates = self._registry._candidate_ids(name, loose)
        return _objects_named(self, candidates, name, loose)


def _objects_named(
    source: ModelRegistry | VersionedModels,
    candidate_ids: Iterable[int],
    name: str,
    loose: bool,
) -> list[ObjectModel]:
    wanted = fold_name(name) if loose else name
    found = []
    for object_id in sorted(candidate_ids):
        model = source.get_object(object_id)
        if model is not None:
            actual = fold_name(model.name) if loose else model.name
            if actual == wanted:
                found.append(model)
    return found


def models_to_json(models: Iterable[ObjectModel], source: str = "") -> str:
    """The catalog JSON for ``models``: facts only, descriptions are left out.

    One object header per line and one resource per line, keys sorted, so that
    regenerated files diff well.
    """
    lines = ["{", f' "format": {CATALOG_FORMAT},']
    if source:
        lines.append(f' "source": {json.dumps(source)},')
    lines.append(' "objects": [')
    ordered = sorted(models, key=lambda m: (m.id, version_key(m.version)))
    for index, model in enumerate(ordered):
        header = {
            "id": model.id,
            "lwm2m_version": model.lwm2m_version,
            "mandatory": model.mandatory,
            "multiple": model.multiple,
            "name": model.name,
            "urn": model.urn,
            "version": model.version,
        }
        lines.append("  " + json.dumps(header, sort_keys=True)[:-1] + ', "resources": [')
        resources = sorted(model.resources.values(), key=lambda r: r.id)
        for position, resource in enumerate(resources):
            separator = "," if position < len(resources) - 1 else ""
            lines.append("   " + json.dumps(_resource_facts(resource), sort_keys=True) + separator)
        lines.append("  ]}" + ("," if index < len(ordered) - 1 else ""))
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def models_from_json(text: str) -> list[ObjectModel]:
    """Models from catalog JSON written by ``models_to_json``."""
    document = json.loads(text)
    if document.get("format") != CATALOG_FORMAT:
        raise ValueError(f"unsupported model catalog format {document.get('format')!r}")
    return [_model_from_facts(entry) for entry in document["objects"]]


def builtin_registry() -> ModelRegistry:
    """A new registry holding the packaged catalog (OMA core objects and IPSO objects).

    The catalog is read once; each call returns a fresh registry, so callers may add
    models without affecting other callers.
    """
    return ModelRegistry(_builtin_models())


@cache
def _builtin_models() -> tuple[ObjectModel, ...]:
    resource = files(_BUILTIN_PACKAGE).joinpath(*_BUILTIN_FILE)
    return tuple(models_from_json(resource.read_text(encoding="utf-8")))


def _resource_facts(resource: ResourceModel) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "id": resource.id,
        "mandatory": resource.mandatory,
        "multiple": resource.multiple,
        "name": resource.name,
        "operations": resource.operations.value,
        "type": resource.type.value,
    }
    if resource.range_enumeration:
        facts["range_enumeration"] = resource.range_enumeration
    if resource.units:
        facts["units"] = resource.units
    return facts


def _model_from_facts(entry: Mapping[str, Any]) -> ObjectModel:
    resources = {
        facts["id"]: ResourceModel(
            id=facts["id"],
            name=facts["name"],
            operations=Operations(facts["operations"]),
            multiple=facts["multiple"],
            mandatory=facts["mandatory"],
            type=ResourceType(facts["type"]),
            range_enumeration=facts.get("range_enumeration", ""),
            units=facts.get("units", ""),
        )
        for facts in entry["resources"]
    }
    return ObjectModel(
        id=entry["id"],
        name=entry["name"],
        version=entry["version"],
        lwm2m_version=entry["lwm2m_version"],
        urn=entry["urn"],
        multiple=entry["multiple"],
        mandatory=entry["mandatory"],
        resources=frozen_resources(resources),
    )
