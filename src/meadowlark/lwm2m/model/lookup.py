"""What the codecs need to know of the object model: a resource's type and multiplicity."""

from __future__ import annotations

from typing import Protocol

from meadowlark.lwm2m.model.types import ResourceModel


class ModelLookup(Protocol):
    """Resolves resource definitions; returns ``None`` for resources it does not know."""

    def get_resource(self, object_id: int, resource_id: int) -> ResourceModel | None: ...
