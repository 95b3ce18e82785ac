"""Coiote v3 setting values: named values of domains, groups and devices (``${sv.name}``
in tasks). Secret values are never returned in clear."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from meadowlark.api.deps import SessionDep, require
from meadowlark.auth.principal import Principal
from meadowlark.core import setting_values
from meadowlark.core.setting_values import SettingValue

router = APIRouter(prefix="/api/coiotedm/v3", tags=["settingValues"])


class SettingValuePublic(BaseModel):
    name: str
    value: str
    groupId: str | None = None
    deviceId: str | None = None
    isSecret: bool = False

    @classmethod
    def of(cls, setting: SettingValue) -> SettingValuePublic:
        return cls(
            name=setting.name,
            value=setting.shown_value,
            groupId=setting.group_id,
            deviceId=setting.device_id,
            isSecret=setting.is_secret,
        )


class SettingValueUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=128)
    value: str = Field(max_length=setting_values.MAX_VALUE_LENGTH)
    groupId: str | None = Field(default=None, max_length=255)
    deviceId: str | None = Field(default=None, max_length=255)
    isSecret: bool | None = False


@router.get("/settingValues")
async def list_setting_values(
    session: SessionDep,
    principal: Annotated[Principal, require("GET settingValues")],
    searchCriteria: Annotated[str | None, Query(max_length=4096)] = None,
) -> list[SettingValuePublic]:
    """Values set in your domains (fields: name, domain, groupId, deviceId, isSecret)."""
    values = await setting_values.list_settings(session, principal, searchCriteria)
    return [SettingValuePublic.of(value) for value in values]


@router.put("/settingValues", status_code=204, response_class=Response)
async def put_setting_value(
    body: SettingValueUpsert,
    session: SessionDep,
    principal: Annotated[Principal, require("PUT settingValues")],
) -> Response:
    """Set a value on your domain, or on a group (``groupId``) or device (``deviceId``)."""
    await setting_values.upsert_setting(
        session,
        principal,
        name=body.name,
        value=body.value,
        group_id=body.groupId,
        device_id=body.deviceId,
        is_secret=bool(body.isSecret),
    )
    await session.commit()
    return Response(status_code=204)


@router.get("/settingValues/deviceProfile/{deviceId}")
async def device_profile(
    deviceId: str,
    session: SessionDep,
    principal: Annotated[Principal, require("GET settingValues/deviceProfile/{deviceId}")],
    withDeviceProperties: Annotated[bool, Query()] = False,
) -> list[SettingValuePublic]:
    """Effective values of a device: its own over its groups' (deepest first) over its
    domain's (nearest first)."""
    values = await setting_values.device_profile(session, principal, deviceId, withDeviceProperties)
    return [SettingValuePublic.of(value) for value in values]


@router.get("/settingValues/groupProfile/{groupId}")
async def group_profile(
    groupId: str,
    session: SessionDep,
    principal: Annotated[Principal, require("GET settingValues/groupProfile/{groupId}")],
) -> list[SettingValuePublic]:
    """Effective values of a group: its own and its parents' over its domain's."""
    values = await setting_values.group_profile(session, principal, groupId)
    return [SettingValuePublic.of(value) for value in values]
