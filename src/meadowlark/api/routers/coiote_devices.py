"""Coiote v3 devices API, as python-coiote's ``Devices`` module calls it.

Device ids may contain ``/`` (endpoint names are free text), hence ``:path``; the
fixed routes (``find/details``, ``all/count``, ``batch``) are declared first.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from pydantic import ValidationError

from meadowlark.api.deps import RuntimeDep, SessionDep, require
from meadowlark.api.responses import model_response
from meadowlark.api.schemas.coiote_devices import (
    DEVICE_FIELDS,
    DeviceAddResult,
    DeviceCount,
    DeviceCreate,
    DevicePublic,
    DevicesBatchAddResponse,
    DevicesFindResponse,
    DeviceUpdateRequest,
    SingleDeviceAddResponse,
)
from meadowlark.auth.principal import Principal
from meadowlark.core import bootstrap, devices
from meadowlark.core.errors import InvalidInput, NotFound, ServiceError
from meadowlark.runtime import Runtime

router = APIRouter(prefix="/api/coiotedm/v3", tags=["devices"])

MAX_BATCH = 100


def new_device(body: DeviceCreate) -> devices.NewDevice:
    endpoint = body.properties.get("endpointName") or body.id
    if not endpoint:
        raise InvalidInput("properties.endpointName is required")
    return devices.NewDevice(
        endpoint_name=endpoint,
        device_id=body.id,
        domain=body.domain,
        friendly_name=body.friendlyName or "",
        description=body.description or "",
        blacklisted=body.blacklisted,
        management_enabled=body.managementEnabled,
        security_mode=body.securityMode,
        dtls_identity=body.dtlsIdentity,
        dtls_psk=body.dtlsPsk,
        groups=tuple(body.directGroups),
        properties={k: v for k, v in body.properties.items() if k != "endpointName"},
    )


def new_bootstrap_account(body: DeviceCreate) -> bootstrap.NewBootstrapAccount:
    """A ``connectorType: bootstrap`` device; its id defaults to ``bs-`` and the endpoint
    name (the management device keeps the plain endpoint name)."""
    endpoint = body.properties.get("endpointName")
    if not endpoint:
        raise InvalidInput("properties.endpointName is required")
    if body.directGroups or len(body.properties) > 1:
        raise InvalidInput("a bootstrap device has no groups nor properties")
    return bootstrap.NewBootstrapAccount(
        endpoint_name=endpoint,
        account_id=body.id or f"bs-{endpoint}",
        domain=body.domain,
        friendly_name=body.friendlyName or "",
        description=body.description or "",
        security_mode=body.securityMode,
        dtls_identity=body.dtlsIdentity,
        dtls_psk_hex=devices.psk_to_hex(body.dtlsPsk) if body.dtlsPsk is not None else None,
    )


async def reconcile_observations(runtime: Runtime, device_ids: list[str]) -> None:
    """Apply group observations (and group monitoring) after memberships changed."""
    for device_id in device_ids:
        runtime.monitoring.index.changed(device_id)
        await runtime.observations.reconcile_device(device_id)


@router.get("/devices")
async def list_devices(
    session: SessionDep,
    principal: Annotated[Principal, require("GET devices")],
    searchCriteria: Annotated[str | None, Query(max_length=4096)] = None,
) -> list[str]:
    """Ids of your devices matching ``searchCriteria``, in id order."""
    return await devices.list_device_ids(session, principal, searchCriteria)


@router.get("/devices/find/details")
async def find_devices(
    session: SessionDep,
    principal: Annotated[Principal, require("GET devices/find/details")],
    searchCriteria: Annotated[str | None, Query(max_length=4096)] = None,
    fieldSelection: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query()] = 100,
    pageBookmark: Annotated[str | None, Query(max_length=1024)] = None,
) -> DevicesFindResponse:
    """A page of devices in id order; pass ``nextPageBookmark`` back for the next one."""
    selection = devices.parse_field_selection(fieldSelection, DEVICE_FIELDS)
    page = await devices.find_devices(
        session,
        principal,
        searchCriteria,
        limit=limit,
        bookmark=pageBookmark,
        with_groups=selection is None or "directGroups" in selection,
    )
    include = None if selection is None else set(selection)
    found = [
        DevicePublic.of(device, page.groups.get(device.id, [])).model_dump(
            mode="json", include=include
        )
        for device in page.devices
    ]
    return DevicesFindResponse(devices=found, nextPageBookmark=page.next_bookmark)


@router.get("/devices/all/count")
async def count_devices(
    session: SessionDep, principal: Annotated[Principal, require("GET devices/all/count")]
) -> DeviceCount:
    """How many devices you see, as ``{"count": n}`` (Coiote documents no shape)."""
    return DeviceCount(count=await devices.count_devices(session, principal))


@router.post("/devices/batch")
async def create_devices(
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST devices/batch")],
    items: Annotated[list[Any], Body()],
) -> DevicesBatchAddResponse:
    """Pre-provision up to 100 devices; each succeeds or fails on its own."""
    if len(items) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} devices per batch", code=4000)
    results: list[DeviceAddResult] = []
    grouped: list[str] = []
    for item in items:
        label = _item_label(item)
        try:
            body = DeviceCreate.model_validate(item)
            if body.connectorType == "bootstrap" or body.bootstrap:
                account = await bootstrap.create_account(
                    session, principal, new_bootstrap_account(body), psk_box=runtime.psk_box
                )
                created, created_id, in_groups = None, account.id, False
            else:
                new = new_device(body)
                created = await devices.create_device(
                    session, principal, new, psk_box=runtime.psk_box
                )
                created_id = created.id
                in_groups = bool(new.groups)
            await devices.commit_new_device(session, created_id)
        except ValidationError as exc:
            results.append(DeviceAddResult(id=label, success=False, reason=_first_error(exc)))
        except ServiceError as exc:
            await session.rollback()
            results.append(DeviceAddResult(id=label, success=False, reason=exc.message))
        else:
            results.append(DeviceAddResult(id=created_id, success=True))
            if created is not None:
                runtime.handler_outbox.lifecycle(
                    "deviceCreated", created.endpoint_name, created.domain_id
                )
            if in_groups:
                grouped.append(created_id)
    await reconcile_observations(runtime, grouped)
    succeeded = sum(result.success for result in results)
    return DevicesBatchAddResponse(
        total=len(results), succeeded=succeeded, failed=len(results) - succeeded, results=results
    )


def _item_label(item: Any) -> str:
    if not isinstance(item, dict):
        return ""
    properties = item.get("properties")
    endpoint = properties.get("endpointName") if isinstance(properties, dict) else None
    label = item.get("id") or endpoint
    return label[:255] if isinstance(label, str) else ""


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ())) or "device"
    return f"{where}: {error.get('msg', 'invalid')}"


@router.post("/devices", status_code=201)
async def create_device(
    body: DeviceCreate,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST devices")],
) -> SingleDeviceAddResponse:
    """Pre-provision a device by ``properties.endpointName`` (the id unless ``id`` is set).

    ``connectorType: bootstrap`` adds a bootstrap device instead (id ``bs-`` and the
    endpoint name unless set): the bootstrap server gives it the management account of
    its bootstrap configuration (``bootstrap/configuration/...``).
    """
    if body.connectorType == "bootstrap" or body.bootstrap:
        account = await bootstrap.create_account(
            session, principal, new_bootstrap_account(body), psk_box=runtime.psk_box
        )
        await devices.commit_new_device(session, account.id)
        return SingleDeviceAddResponse(id=account.id, result="created")
    new = new_device(body)
    device = await devices.create_device(session, principal, new, psk_box=runtime.psk_box)
    await devices.commit_new_device(session, device.id)
    runtime.handler_outbox.lifecycle("deviceCreated", device.endpoint_name, device.domain_id)
    if new.groups:
        await reconcile_observations(runtime, [device.id])
    return SingleDeviceAddResponse(id=device.id, result="created")


@router.get("/devices/{device_id:path}", response_model=DevicePublic)
async def get_device(
    device_id: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("GET devices/{id}")],
) -> Response:
    """One device (the DTLS key is never returned)."""
    try:
        device, groups = await devices.read_device(runtime.db, principal, device_id)
    except NotFound:
        async with runtime.db.session() as session:
            account = await bootstrap.get_account(session, principal, device_id)
        return model_response(DevicePublic.of_bootstrap(account))
    return model_response(DevicePublic.of(device, groups))


@router.put("/devices/{device_id:path}", status_code=204, response_class=Response)
async def update_device(
    device_id: str,
    body: DeviceUpdateRequest,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("PUT devices/{id}")],
) -> Response:
    """Change properties, groups, flags, names or credentials.

    Blacklisting or disabling management also drops the device's registration. A
    bootstrap device takes names and credentials only.
    """
    changes = devices.DeviceChanges(
        add_properties=body.addProperties,
        remove_properties=tuple(body.removeProperties),
        add_groups=tuple(body.addGroups),
        remove_groups=tuple(body.removeGroups),
        blacklisted=body.blacklisted,
        management_enabled=body.managementEnabled,
        description=body.description,
        friendly_name=body.friendlyName,
        security_mode=body.securityMode,
        dtls_identity=body.dtlsIdentity,
        dtls_psk=body.dtlsPsk,
    )
    try:
        update = await devices.update_device(
            session, principal, device_id, changes, psk_box=runtime.psk_box
        )
    except NotFound:
        await bootstrap.update_account(
            session, principal, device_id, changes, psk_box=runtime.psk_box
        )
        await session.commit()
        return Response(status_code=204)
    await session.commit()
    if update.barred:
        await runtime.lwm2m.forget(update.device.endpoint_name)
    if update.memberships_changed:
        await reconcile_observations(runtime, [update.device.id])
    return Response(status_code=204)


@router.delete("/devices/{device_id:path}", status_code=204, response_class=Response)
async def delete_device(
    device_id: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("DELETE devices/{id}")],
) -> Response:
    """Delete a device with its data; a current registration is dropped too."""
    try:
        device = await devices.delete_device(session, principal, device_id)
    except NotFound:
        await bootstrap.delete_account(session, principal, device_id)
        await session.commit()
        return Response(status_code=204)
    await session.commit()
    runtime.handler_outbox.lifecycle("deviceDeleted", device.endpoint_name, device.domain_id)
    await runtime.lwm2m.forget(device.endpoint_name)
    runtime.device_stores.ids.forget(device.endpoint_name)
    return Response(status_code=204)
