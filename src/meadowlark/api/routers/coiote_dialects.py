"""Coiote v3 dialects: custom LwM2M object definitions (OMA DDF XML) for the caller's domain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request

from meadowlark.api.deps import RuntimeDep, require
from meadowlark.api.schemas.coiote_data_model import Dialect
from meadowlark.auth.principal import Principal
from meadowlark.core.errors import InvalidInput
from meadowlark.core.object_models import INVALID_OBJECT_CODE

router = APIRouter(prefix="/api/coiotedm/v3", tags=["dialects"])

XML_MEDIA_TYPES = frozenset({"text/xml", "application/xml"})
_DDF_BODY = {
    "requestBody": {
        "required": True,
        "content": {media: {"schema": {"type": "string"}} for media in sorted(XML_MEDIA_TYPES)},
    }
}


async def _ddf_body(request: Request) -> bytes:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in XML_MEDIA_TYPES:
        raise InvalidInput(
            "send the object definition as text/xml or application/xml",
            code=INVALID_OBJECT_CODE,
        )
    return await request.body()


@router.post("/dialects/addObject", status_code=201, openapi_extra=_DDF_BODY)
async def add_object(
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("POST dialects/addObject")],
) -> Dialect:
    """Define a custom object for your domain; 409 if it is already defined."""
    document = await _ddf_body(request)
    dialect_id = await runtime.object_models.add_custom_object(principal, document, overwrite=False)
    return Dialect(dialectId=dialect_id)


@router.put("/dialects/addObject", openapi_extra=_DDF_BODY)
async def replace_object(
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("PUT dialects/addObject")],
) -> Dialect:
    """Define a custom object for your domain, replacing your domain's definition."""
    document = await _ddf_body(request)
    dialect_id = await runtime.object_models.add_custom_object(principal, document, overwrite=True)
    return Dialect(dialectId=dialect_id)
