"""Object models per domain: the built-in catalog plus custom objects (``dialects/addObject``).

A domain sees the custom objects of its own domain and of every domain above it; a
definition in a deeper domain wins over one above it for the same object id and version.
The catalog is loaded from ``custom_object_models`` at start-up and updated in place when
an object is added, so the LwM2M server decodes device data with it at once.
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from meadowlark.auth.principal import Principal
from meadowlark.core import audit
from meadowlark.core.errors import Conflict, InvalidInput
from meadowlark.lwm2m.model import (
    CUSTOM_OBJECT_IDS,
    DdfError,
    ModelRegistry,
    ObjectModel,
    builtin_registry,
    parse_ddf,
    to_ddf_xml,
)
from meadowlark.store.coiote_models import CustomObjectModel
from meadowlark.store.db import Database

_log = structlog.get_logger("meadowlark.models")

INVALID_OBJECT_CODE = 4042
"""Coiote's error code for an object definition it refuses (bad XML, id outside 1..65534)."""


def parse_custom_object(document: bytes) -> ObjectModel:
    """The one object a ``dialects/addObject`` body defines; ``InvalidInput`` (4042) if unusable."""
    try:
        models = parse_ddf(document)
    except DdfError as exc:
        raise InvalidInput(f"invalid object definition: {exc}", code=INVALID_OBJECT_CODE) from None
    if len(models) != 1:
        raise InvalidInput(
            f"the document defines {len(models)} objects; send one <Object> per request",
            code=INVALID_OBJECT_CODE,
        )
    model = models[0]
    if model.id not in CUSTOM_OBJECT_IDS:
        raise InvalidInput(
            f"object id {model.id} is outside 1..{CUSTOM_OBJECT_IDS.stop - 1}",
            code=INVALID_OBJECT_CODE,
        )
    return model


def _ancestry(domain_id: str) -> list[str]:
    """``/root/a/b/`` -> ``["/root/", "/root/a/", "/root/a/b/"]``."""
    segments = [segment for segment in domain_id.split("/") if segment]
    return ["/" + "/".join(segments[:depth]) + "/" for depth in range(1, len(segments) + 1)]


class ModelCatalog:
    """Model registries by domain, built lazily and shared until a custom object changes."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._builtin = builtin_registry()
        self._custom: dict[str, dict[tuple[int, str], ObjectModel]] = {}
        self._registries: dict[str, ModelRegistry] = {}

    @property
    def builtin(self) -> ModelRegistry:
        return self._builtin

    async def load(self) -> None:
        """Read every stored custom object (start-up); unparsable rows are logged and skipped."""
        async with self._db.session() as session:
            rows = (await session.execute(select(CustomObjectModel))).scalars().all()
        custom: dict[str, dict[tuple[int, str], ObjectModel]] = {}
        for row in rows:
            try:
                model = parse_ddf(row.ddf_xml)[0]
            except DdfError as exc:
                _log.error("custom_object_unreadable", dialect_id=row.id, error=str(exc))
                continue
            custom.setdefault(row.domain_id, {})[(model.id, model.version)] = model
        self._custom = custom
        self._registries.clear()

    def registry_for(self, domain_id: str) -> ModelRegistry:
        """The models a device or caller of ``domain_id`` sees."""
        registry = self._registries.get(domain_id)
        if registry is None:
            registry = self._builtin.copy()
            for ancestor in _ancestry(domain_id):
                for model in self._custom.get(ancestor, {}).values():
                    registry.add(model)
            self._registries[domain_id] = registry
        return registry

    def _remember(self, domain_id: str, model: ObjectModel) -> None:
        self._custom.setdefault(domain_id, {})[(model.id, model.version)] = model
        for cached in [key for key in self._registries if key.startswith(domain_id)]:
            del self._registries[cached]

    async def add_custom_object(
        self, principal: Principal, document: bytes, *, overwrite: bool
    ) -> str:
        """Store the object of a DDF document in the caller's domain; returns its dialect id.

        Built-in object ids are never redefined. Without ``overwrite`` an object the domain
        already sees at that version is a ``Conflict``; with it, the domain's own
        definition is replaced (or one inherited from above is shadowed).
        """
        model = parse_custom_object(document)
        domain_id = principal.domain_id
        if self._builtin.get_object(model.id) is not None:
            raise Conflict(f"object {model.id} is a built-in object and cannot be redefined")
        if not overwrite and self.registry_for(domain_id).get_object(model.id, model.version):
            raise Conflict(f"object {model.id} version {model.version} is already defined")
        ddf_xml = to_ddf_xml(model).decode("utf-8")
        try:
            dialect_id = await self._store(principal, model, ddf_xml)
        except IntegrityError:  # a concurrent request stored the same object first
            raise Conflict(
                f"object {model.id} version {model.version} is already defined"
            ) from None
        self._remember(principal.domain_id, model)
        _log.info(
            "custom_object_defined", domain=domain_id, object_id=model.id, version=model.version
        )
        return dialect_id

    async def _store(self, principal: Principal, model: ObjectModel, ddf_xml: str) -> str:
        domain_id = principal.domain_id
        async with self._db.transaction() as session:
            row = await session.scalar(
                select(CustomObjectModel).where(
                    CustomObjectModel.domain_id == domain_id,
                    CustomObjectModel.object_id == model.id,
                    CustomObjectModel.version == model.version,
                )
            )
            if row is None:
                row = CustomObjectModel(
                    id=uuid.uuid4().hex,
                    domain_id=domain_id,
                    object_id=model.id,
                    version=model.version,
                    name=model.name,
                    ddf_xml=ddf_xml,
                )
                session.add(row)
            else:
                row.name = model.name
                row.ddf_xml = ddf_xml
            audit.record(
                session,
                "dialect.object_defined",
                actor=principal.login,
                subject=f"{model.id}:{model.version}",
                domain_id=domain_id,
            )
            return row.id
