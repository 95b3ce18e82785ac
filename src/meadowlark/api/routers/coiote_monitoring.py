"""Coiote v3 monitoring: ``deviceMonitoring`` (per-device and per-group switches, URL
aliases, a resource's samples) and the legacy ``monitoring`` (named configurations) and
``monitoringData`` (samples with a cursor, numerical and textual aggregates).

LwM2M URLs keep their slashes when URL-encoded (``.../resourceUrl//3303/0/5700``). A
caller without the permission gets 403 with code 4030.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from meadowlark.api.deps import RuntimeDep, require
from meadowlark.api.schemas.coiote_monitoring import (
    AliasEntry,
    AliasRequest,
    MonitoringConfigurationBody,
    MonitoringConfigurationView,
    MonitoringDataPage,
    MonitoringEnabled,
    NumericalAggregate,
    SamplesBatch,
    TextualAggregate,
)
from meadowlark.auth.principal import Principal
from meadowlark.core.errors import InvalidInput
from meadowlark.core.monitoring import (
    BAD_LIMIT_CODE,
    BAD_PAYLOAD_CODE,
    MAX_LIMIT,
    NO_PERMISSION_CODE,
    iso_ms,
)

router = APIRouter(prefix="/api/coiotedm/v3", tags=["monitoring"])

TimeParam = Annotated[str | None, Query(max_length=64)]
LimitParam = Annotated[str | None, Query(max_length=32)]


def guard(name: str) -> Any:
    return require(name, forbidden_code=NO_PERMISSION_CODE)


def parse_limit(text: str | None) -> int:
    if text is None:
        return MAX_LIMIT
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidInput(f"limit must be 1..{MAX_LIMIT}", code=BAD_LIMIT_CODE) from None


def parse_interval(text: str | None) -> int:
    """Bucket length in seconds (default one hour)."""
    if text is None:
        return 3600
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidInput("interval must be a number of seconds", code=BAD_PAYLOAD_CODE) from None


# --- deviceMonitoring/configuration ------------------------------------------------------


@router.post("/deviceMonitoring/configuration/device/{deviceId}/enable")
async def enable_device_monitoring(
    deviceId: str,
    runtime: RuntimeDep,
    principal: Annotated[
        Principal, guard("POST deviceMonitoring/configuration/device/{deviceId}/enable")
    ],
) -> MonitoringEnabled:
    """Sample every value the device reports (overrides its groups' setting)."""
    await runtime.monitoring.set_device(principal, deviceId, True)
    return MonitoringEnabled(enabled=True)


@router.post("/deviceMonitoring/configuration/device/{deviceId}/disable")
async def disable_device_monitoring(
    deviceId: str,
    runtime: RuntimeDep,
    principal: Annotated[
        Principal, guard("POST deviceMonitoring/configuration/device/{deviceId}/disable")
    ],
) -> MonitoringEnabled:
    """Stop sampling the device's values (overrides its groups' setting)."""
    await runtime.monitoring.set_device(principal, deviceId, False)
    return MonitoringEnabled(enabled=False)


@router.post("/deviceMonitoring/configuration/group/{groupId}/enable")
async def enable_group_monitoring(
    groupId: str,
    runtime: RuntimeDep,
    principal: Annotated[
        Principal, guard("POST deviceMonitoring/configuration/{group_groupId}/enable/")
    ],
) -> MonitoringEnabled:
    """Sample every value reported by the devices of the group and of its sub-groups."""
    await runtime.monitoring.set_group(principal, groupId, True)
    return MonitoringEnabled(enabled=True)


@router.post("/deviceMonitoring/configuration/group/{groupId}/disable")
async def disable_group_monitoring(
    groupId: str,
    runtime: RuntimeDep,
    principal: Annotated[
        Principal, guard("POST deviceMonitoring/configuration/group/{groupId}/disable")
    ],
) -> MonitoringEnabled:
    """Stop sampling the group's devices (a device's own setting still wins)."""
    await runtime.monitoring.set_group(principal, groupId, False)
    return MonitoringEnabled(enabled=False)


@router.get("/deviceMonitoring/configuration/device/{deviceId}/enabled")
async def device_monitoring_enabled(
    deviceId: str,
    runtime: RuntimeDep,
    principal: Annotated[
        Principal, guard("GET deviceMonitoring/configuration/device/{deviceId}/enabled")
    ],
) -> MonitoringEnabled:
    """Whether the device's values are sampled (its own setting, else its groups')."""
    return MonitoringEnabled(enabled=await runtime.monitoring.device_enabled(principal, deviceId))


@router.post("/deviceMonitoring/configuration/device/{deviceId}/alias", status_code=201)
async def set_monitoring_alias(
    deviceId: str,
    body: AliasRequest,
    runtime: RuntimeDep,
    principal: Annotated[
        Principal, guard("POST deviceMonitoring/configuration/device/{deviceId}/alias")
    ],
) -> AliasEntry:
    """Name an LwM2M URL of the device (an alias is unique on the device)."""
    await runtime.monitoring.set_alias(principal, deviceId, body.lwm2mUrl, body.alias)
    aliases = dict(await runtime.monitoring.aliases(principal, deviceId))
    url = next(url for url, alias in aliases.items() if alias == body.alias.strip())
    return AliasEntry(lwm2mUrl=url, alias=aliases[url])


@router.get("/deviceMonitoring/configuration/device/{deviceId}/aliases")
async def list_monitoring_aliases(
    deviceId: str,
    runtime: RuntimeDep,
    principal: Annotated[
        Principal, guard("GET deviceMonitoring/configuration/device/{deviceId}/aliases")
    ],
) -> list[AliasEntry]:
    """The device's aliases, by URL."""
    return [
        AliasEntry(lwm2mUrl=url, alias=alias)
        for url, alias in await runtime.monitoring.aliases(principal, deviceId)
    ]


@router.delete(
    "/deviceMonitoring/configuration/device/{deviceId}/resourceUrl/{lwm2mUrl:path}",
    status_code=204,
    response_class=Response,
)
async def delete_monitoring_alias(
    deviceId: str,
    lwm2mUrl: str,
    runtime: RuntimeDep,
    principal: Annotated[
        Principal,
        guard("DELETE deviceMonitoring/configuration/device/{deviceId}/resourceUrl/{lwm2mUrl}"),
    ],
) -> Response:
    """Remove the alias of an LwM2M URL of the device."""
    await runtime.monitoring.delete_alias(principal, deviceId, lwm2mUrl)
    return Response(status_code=204)


# --- deviceMonitoring data ---------------------------------------------------------------


async def _data(
    runtime: RuntimeDep,
    principal: Principal,
    device_id: str,
    start: str | None,
    end: str | None,
    limit: str | None,
    **resource: str,
) -> MonitoringDataPage:
    page = await runtime.monitoring.device_data(
        principal, device_id, start=start, end=end, limit=parse_limit(limit), **resource
    )
    return MonitoringDataPage.of(page)


@router.get("/deviceMonitoring/data/{deviceId}/resourceUrl/{lwm2mUrl:path}")
async def monitoring_data_by_url(
    deviceId: str,
    lwm2mUrl: str,
    runtime: RuntimeDep,
    principal: Annotated[
        Principal, guard("GET deviceMonitoring/{data_deviceId}/resourceUrl/{lwm2mUrl}")
    ],
    timeRangeStart: TimeParam = None,
    timeRangeEnd: TimeParam = None,
    limit: LimitParam = None,
) -> MonitoringDataPage:
    """Samples of a resource in ``(timeRangeStart, timeRangeEnd]``, oldest first."""
    return await _data(
        runtime, principal, deviceId, timeRangeStart, timeRangeEnd, limit, url=lwm2mUrl
    )


@router.get("/deviceMonitoring/data/{deviceId}/alias/{alias}")
async def monitoring_data_by_alias(
    deviceId: str,
    alias: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, guard("GET deviceMonitoring/{data_deviceId}/alias/{alias}")],
    timeRangeStart: TimeParam = None,
    timeRangeEnd: TimeParam = None,
    limit: LimitParam = None,
) -> MonitoringDataPage:
    """Samples of the resource the alias names, in ``(timeRangeStart, timeRangeEnd]``."""
    return await _data(
        runtime, principal, deviceId, timeRangeStart, timeRangeEnd, limit, alias=alias
    )


@router.get("/deviceMonitoring/{deviceId}/resourceUrl/{lwm2mUrl:path}")
async def monitoring_data_by_url_seed_form(
    deviceId: str,
    lwm2mUrl: str,
    runtime: RuntimeDep,
    principal: Annotated[
        Principal, guard("GET deviceMonitoring/{deviceId}/resourceUrl/{lwm2mUrl}")
    ],
    timeRangeStart: TimeParam = None,
    timeRangeEnd: TimeParam = None,
    limit: LimitParam = None,
) -> MonitoringDataPage:
    """``deviceMonitoring/data/{deviceId}/resourceUrl/...`` as the access document writes it."""
    return await _data(
        runtime, principal, deviceId, timeRangeStart, timeRangeEnd, limit, url=lwm2mUrl
    )


@router.get("/deviceMonitoring/{deviceId}/alias/{alias}")
async def monitoring_data_by_alias_seed_form(
    deviceId: str,
    alias: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, guard("GET deviceMonitoring/{deviceId}/alias/{alias}")],
    timeRangeStart: TimeParam = None,
    timeRangeEnd: TimeParam = None,
    limit: LimitParam = None,
) -> MonitoringDataPage:
    """``deviceMonitoring/data/{deviceId}/alias/...`` as the access document writes it."""
    return await _data(
        runtime, principal, deviceId, timeRangeStart, timeRangeEnd, limit, alias=alias
    )


# --- monitoring (named configurations) ---------------------------------------------------


@router.get("/monitoring")
async def list_monitorings(
    runtime: RuntimeDep,
    principal: Annotated[Principal, guard("GET monitoring")],
) -> list[MonitoringConfigurationView]:
    """The named monitorings of your domains."""
    rows = await runtime.monitoring.configurations(principal)
    return [MonitoringConfigurationView.of(row) for row in rows]


@router.post("/monitoring", status_code=201)
async def create_monitoring(
    body: MonitoringConfigurationBody,
    runtime: RuntimeDep,
    principal: Annotated[Principal, guard("POST monitoring")],
) -> MonitoringConfigurationView:
    """Sample resources of a group's devices, from notifications or by periodic reads."""
    row = await runtime.monitoring.create_configuration(principal, body.to_new())
    return MonitoringConfigurationView.of(row)


@router.get("/monitoring/{monitoringName}")
async def get_monitoring(
    monitoringName: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, guard("GET monitoring/{monitoringName}")],
) -> MonitoringConfigurationView:
    """One named monitoring."""
    row = await runtime.monitoring.configuration(principal, monitoringName)
    return MonitoringConfigurationView.of(row)


@router.put("/monitoring/{monitoringName}")
async def update_monitoring(
    monitoringName: str,
    body: MonitoringConfigurationBody,
    runtime: RuntimeDep,
    principal: Annotated[Principal, guard("PUT monitoring/{monitoringName}")],
) -> MonitoringConfigurationView:
    """Replace a named monitoring's group, resources and source (its samples stay)."""
    row = await runtime.monitoring.update_configuration(principal, monitoringName, body.to_new())
    return MonitoringConfigurationView.of(row)


@router.delete("/monitoring/{monitoringName}", status_code=204, response_class=Response)
async def delete_monitoring(
    monitoringName: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, guard("DELETE monitoring/{monitoringName}")],
) -> Response:
    """Stop a named monitoring (samples already taken stay until they expire)."""
    await runtime.monitoring.delete_configuration(principal, monitoringName)
    return Response(status_code=204)


# --- monitoringData ----------------------------------------------------------------------


@router.get("/monitoringData/samples/{monitoringName}/{deviceId}")
async def monitoring_samples(
    monitoringName: str,
    deviceId: str,
    runtime: RuntimeDep,
    principal: Annotated[
        Principal, guard("GET monitoringData/samples/{monitoringName}/{deviceId}")
    ],
    timeRangeStart: TimeParam = None,
    timeRangeEnd: TimeParam = None,
    limit: LimitParam = None,
) -> SamplesBatch:
    """The device's samples of the monitoring's resources, oldest first; pass
    ``nextCursor`` to ``moreSamples`` for the rest."""
    page = await runtime.monitoring.samples(
        principal, monitoringName, deviceId, timeRangeStart, timeRangeEnd, parse_limit(limit)
    )
    return SamplesBatch.of(page)


@router.get("/monitoringData/moreSamples")
async def more_monitoring_samples(
    runtime: RuntimeDep,
    principal: Annotated[Principal, guard("GET monitoringData/moreSamples")],
    cursor: Annotated[str, Query(min_length=1, max_length=2048)],
) -> SamplesBatch:
    """The samples after a ``nextCursor``."""
    return SamplesBatch.of(await runtime.monitoring.more_samples(principal, cursor))


@router.get("/monitoringData/aggregates/numerical/{monitoringName}/{groupId}/{resourceName:path}")
async def numerical_aggregates(
    monitoringName: str,
    groupId: str,
    resourceName: str,
    runtime: RuntimeDep,
    principal: Annotated[
        Principal,
        guard("GET monitoringData/aggregates/numerical/{monitoringName}/{groupId}/{resourceName}"),
    ],
    timeRangeStart: TimeParam = None,
    timeRangeEnd: TimeParam = None,
    interval: Annotated[str | None, Query(max_length=20)] = None,
) -> list[NumericalAggregate]:
    """Min, max, average and count of a numeric resource over the group's devices, per
    ``interval`` seconds (intervals without samples are left out)."""
    rows = await runtime.monitoring.aggregates(
        principal,
        "numerical",
        monitoringName,
        groupId,
        resourceName,
        timeRangeStart,
        timeRangeEnd,
        parse_interval(interval),
    )
    return [
        NumericalAggregate(
            from_=iso_ms(first), to=iso_ms(last), min=low, max=high, avg=mean, count=count
        )
        for first, last, (low, high, mean, count) in rows
    ]


@router.get("/monitoringData/aggregates/textual/{monitoringName}/{groupId}/{resourceName:path}")
async def textual_aggregates(
    monitoringName: str,
    groupId: str,
    resourceName: str,
    runtime: RuntimeDep,
    principal: Annotated[
        Principal,
        guard("GET monitoringData/aggregates/textual/{monitoringName}/{groupId}/{resourceName}"),
    ],
    timeRangeStart: TimeParam = None,
    timeRangeEnd: TimeParam = None,
    interval: Annotated[str | None, Query(max_length=20)] = None,
) -> list[TextualAggregate]:
    """How many samples of a textual resource had each value, per ``interval`` seconds."""
    rows = await runtime.monitoring.aggregates(
        principal,
        "textual",
        monitoringName,
        groupId,
        resourceName,
        timeRangeStart,
        timeRangeEnd,
        parse_interval(interval),
    )
    return [
        TextualAggregate(from_=iso_ms(first), to=iso_ms(last), counts=counts)
        for first, last, counts in rows
    ]
