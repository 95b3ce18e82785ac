"""Bootstrap configurations: which management server account the bootstrap server
gives a bootstrap device (``connectorType: bootstrap``) or the devices of a group.

``PUT`` creates or replaces, ``GET`` reads, ``DELETE`` removes. A device's own
configuration wins over its groups'. Device ids may contain ``/`` (hence ``:path``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response

from meadowlark.api.deps import SessionDep, require
from meadowlark.api.schemas.coiote_bootstrap import (
    BootstrapConfiguration,
    BootstrapConfigurationPublic,
)
from meadowlark.auth.principal import Principal
from meadowlark.core import bootstrap

router = APIRouter(prefix="/api/coiotedm/v3/bootstrap/configuration", tags=["bootstrap"])


def _changes(body: BootstrapConfiguration) -> bootstrap.ConfigChanges:
    return bootstrap.ConfigChanges(
        server_uri=body.serverUri,
        security_mode=body.securityMode,
        short_server_id=body.shortServerId,
        lifetime=body.lifetime,
        binding=body.binding,
        notification_storing=body.notificationStoring,
    )


@router.get("/device/{device_id:path}")
async def get_device_configuration(
    device_id: str,
    session: SessionDep,
    principal: Annotated[Principal, require("GET bootstrap/configuration/device/{deviceId}")],
) -> BootstrapConfigurationPublic:
    """The bootstrap device's own configuration (404 when it has none)."""
    config = await bootstrap.get_config(session, principal, bootstrap.DEVICE, device_id)
    return BootstrapConfigurationPublic.of(config)


@router.put("/device/{device_id:path}")
async def put_device_configuration(
    device_id: str,
    body: BootstrapConfiguration,
    session: SessionDep,
    principal: Annotated[Principal, require("PUT bootstrap/configuration/device/{deviceId}")],
) -> BootstrapConfigurationPublic:
    """Set the configuration of one bootstrap device."""
    config = await bootstrap.put_config(
        session, principal, bootstrap.DEVICE, device_id, _changes(body)
    )
    await session.commit()
    return BootstrapConfigurationPublic.of(config)


@router.delete("/device/{device_id:path}", status_code=204, response_class=Response)
async def delete_device_configuration(
    device_id: str,
    session: SessionDep,
    principal: Annotated[Principal, require("DELETE bootstrap/configuration/device/{deviceId}")],
) -> Response:
    await bootstrap.delete_config(session, principal, bootstrap.DEVICE, device_id)
    await session.commit()
    return Response(status_code=204)


@router.get("/group/{group_id:path}")
async def get_group_configuration(
    group_id: str,
    session: SessionDep,
    principal: Annotated[Principal, require("GET bootstrap/configuration/group/{groupId}")],
) -> BootstrapConfigurationPublic:
    """The configuration of the group's devices (404 when it has none)."""
    config = await bootstrap.get_config(session, principal, bootstrap.GROUP, group_id)
    return BootstrapConfigurationPublic.of(config)


@router.put("/group/{group_id:path}")
async def put_group_configuration(
    group_id: str,
    body: BootstrapConfiguration,
    session: SessionDep,
    principal: Annotated[Principal, require("PUT bootstrap/configuration/group/{groupId}")],
) -> BootstrapConfigurationPublic:
    """Set the configuration for the group's devices (those whose management record is a
    direct member)."""
    config = await bootstrap.put_config(
        session, principal, bootstrap.GROUP, group_id, _changes(body)
    )
    await session.commit()
    return BootstrapConfigurationPublic.of(config)


@router.delete("/group/{group_id:path}", status_code=204, response_class=Response)
async def delete_group_configuration(
    group_id: str,
    session: SessionDep,
    principal: Annotated[Principal, require("DELETE bootstrap/configuration/group/{groupId}")],
) -> Response:
    await bootstrap.delete_config(session, principal, bootstrap.GROUP, group_id)
    await session.commit()
    return Response(status_code=204)
