"""Coiote v3 data model of a device: cached values and instantiated resources.

``parameters`` (repeatable) are readable paths such as ``Device.0.Manufacturer``, numeric
ones (``3.0.0``, ``/3/0/0``), or prefixes ending in ``.`` for a subtree (``Location.``);
without any, everything is returned.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from meadowlark.api.deps import RuntimeDep, SessionDep, require
from meadowlark.api.schemas.coiote_data_model import (
    DeviceDataEntry,
    ObjectDefinition,
    ResourceData,
)
from meadowlark.auth.principal import Principal
from meadowlark.core import data_model
from meadowlark.lwm2m.path import ROOT

router = APIRouter(prefix="/api/coiotedm/v3", tags=["dataModel"])

Parameters = Annotated[list[str], Query(max_length=data_model.MAX_PARAMETERS)]


@router.get("/cachedDataModels/{deviceId}")
async def get_cached_data_model(
    deviceId: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET cachedDataModels/{deviceId}")],
    parameters: Parameters = [],  # noqa: B006 - FastAPI copies defaults
) -> list[DeviceDataEntry]:
    """Last known values of the device, by readable path."""
    model = await data_model.visible_device_data_model(
        session, principal, deviceId, runtime.object_models, runtime.lwm2m
    )
    selection = data_model.select_paths(parameters, model.models)
    values = await runtime.lwm2m.cached_values(model.device.endpoint_name, ROOT)
    return [DeviceDataEntry.of(e) for e in data_model.cached_entries(model, values, selection)]


@router.get("/instantiatedResources/dataModelDefinition/{deviceId}")
async def get_data_model_definition(
    deviceId: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[
        Principal, require("GET instantiatedResources/dataModelDefinition/{deviceId}")
    ],
    parameters: Parameters = [],  # noqa: B006 - FastAPI copies defaults
) -> list[ObjectDefinition]:
    """Definitions of the objects the device registered, at its object versions."""
    model = await data_model.visible_device_data_model(
        session, principal, deviceId, runtime.object_models, runtime.lwm2m
    )
    selection = data_model.select_paths(parameters, model.models)
    return [ObjectDefinition.of(d) for d in data_model.object_definitions(model, selection)]


@router.get("/instantiatedResources/resourcesData/{deviceId}")
async def get_resources_data(
    deviceId: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET instantiatedResources/resourcesData/{deviceId}")],
    parameters: Parameters = [],  # noqa: B006 - FastAPI copies defaults
) -> list[ResourceData]:
    """The device's instantiated resources with their definitions and cached values."""
    model = await data_model.visible_device_data_model(
        session, principal, deviceId, runtime.object_models, runtime.lwm2m
    )
    selection = data_model.select_paths(parameters, model.models)
    values = await runtime.lwm2m.cached_values(model.device.endpoint_name, ROOT)
    return [ResourceData.of(d) for d in data_model.resources_data(model, values, selection)]
