"""Coiote v3 observations of devices and groups.

Paths are readable (``Temperature.0.Sensor Value``) or numeric; clients URL-encode them,
so a numeric one arrives with its slashes (``.../resourceUrl/{groupId}//3303/0/5700``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from meadowlark.api.deps import RuntimeDep, require
from meadowlark.api.schemas.coiote_data_model import (
    BasicSetObservationRequest,
    EntityObservationData,
    ObservationData,
    SetObservationRequest,
)
from meadowlark.auth.principal import Principal
from meadowlark.core.observations import parse_resource_url

router = APIRouter(prefix="/api/coiotedm/v3", tags=["observations"])


@router.get("/observations")
async def list_observations(
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("GET observations")],
    searchCriteria: Annotated[str | None, Query(max_length=4096)] = None,
) -> list[EntityObservationData]:
    """Configured observations in your domains (fields: deviceId, groupId, path, url, domain)."""
    observations = await runtime.observations.list_observations(principal, searchCriteria)
    return [EntityObservationData.of(observation) for observation in observations]


@router.get("/observations/device/{deviceId}/{path:path}")
async def get_device_observation(
    deviceId: str,
    path: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("GET observations/device/{deviceId}/{path}")],
) -> ObservationData:
    """The observation configured on the device at ``path``."""
    observation = await runtime.observations.get_for_device(principal, deviceId, path)
    return ObservationData.of(observation)


@router.post("/observations/device/{deviceId}/{path:path}", status_code=201)
async def set_device_observation(
    deviceId: str,
    path: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("POST observations/device/{deviceId}/{path}")],
    body: Annotated[SetObservationRequest | None, Body()] = None,
) -> ObservationData:
    """Observe ``path`` on the device with these attributes (replaces earlier ones)."""
    request = body or SetObservationRequest()
    attributes = [(attribute.name, attribute.text) for attribute in request.attributes]
    observation = await runtime.observations.set_for_device(principal, deviceId, path, attributes)
    return ObservationData.of(observation)


@router.delete(
    "/observations/device/{deviceId}/{path:path}", status_code=204, response_class=Response
)
async def delete_device_observation(
    deviceId: str,
    path: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("DELETE observations/device/{deviceId}/{path}")],
) -> Response:
    """Stop observing ``path`` on the device and forget the configuration."""
    await runtime.observations.delete_for_device(principal, deviceId, path)
    return Response(status_code=204)


@router.post("/observations/group/resourcePath/{groupId}/{path:path}", status_code=201)
async def set_group_observation_by_path(
    groupId: str,
    path: str,
    runtime: RuntimeDep,
    principal: Annotated[
        Principal, require("POST observations/group/resourcePath/{groupId}/{path}")
    ],
    body: Annotated[BasicSetObservationRequest | None, Body()] = None,
) -> EntityObservationData:
    """Observe a readable ``path`` on every device of the group, now and as they join."""
    request = body or BasicSetObservationRequest()
    observation = await runtime.observations.set_for_group(
        principal, groupId, path, request.minPeriod, request.maxPeriod
    )
    return EntityObservationData.of(observation)


@router.post("/observations/group/resourceUrl/{groupId}/{url:path}", status_code=201)
async def set_group_observation_by_url(
    groupId: str,
    url: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("POST observations/group/resourceUrl/{groupId}/{url}")],
    body: Annotated[BasicSetObservationRequest | None, Body()] = None,
) -> EntityObservationData:
    """Observe a numeric LwM2M URL (``/3303/0/5700``) on every device of the group."""
    request = body or BasicSetObservationRequest()
    observation = await runtime.observations.set_for_group(
        principal, groupId, parse_resource_url(url), request.minPeriod, request.maxPeriod
    )
    return EntityObservationData.of(observation)
