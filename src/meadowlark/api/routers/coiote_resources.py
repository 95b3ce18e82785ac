"""Coiote v3 resources: firmware images of the caller's domain, uploaded as a stream."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response

from meadowlark.api.deps import RuntimeDep, SessionDep, require
from meadowlark.api.schemas.coiote_resources import (
    DownloadUrl,
    DownloadUrlRequest,
    ResourceCreate,
    ResourceCreated,
    ResourcePublic,
)
from meadowlark.auth.principal import Principal
from meadowlark.core.errors import UnsupportedMediaType
from meadowlark.core.firmware_images import NewResource

router = APIRouter(prefix="/api/coiotedm/v3", tags=["resources"])

UPLOAD_PATH = r"/api/coiotedm/v3/resources/[^/]+/data"
"""Route of image uploads, whose body limit is ``firmware.max_bytes`` (see app.py)."""
_OCTET_STREAM_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.get("/resources")
async def list_resources(
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET resources")],
) -> list[ResourcePublic]:
    """The resources of your domain and below."""
    resources = await runtime.firmware_images.list_visible(session, principal)
    return [ResourcePublic.of(resource) for resource in resources]


@router.post("/resources", status_code=201)
async def create_resource(
    body: ResourceCreate,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST resources")],
) -> ResourceCreated:
    """Describe a resource (a firmware image); upload its bytes with ``PUT .../data``."""
    new = NewResource(
        resource_id=body.id,
        name=body.name,
        file_name=body.location.InternalLocation.fileName,
        domain=body.domain,
        category=body.category,
        expiration_time=body.expirationTime,
    )
    resource = await runtime.firmware_images.create(session, principal, new)
    await session.commit()
    return ResourceCreated(id=resource.id, resourceId=resource.id)


@router.get("/resources/{resource_id}")
async def get_resource(
    resource_id: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET resources/{id}")],
) -> ResourcePublic:
    """One resource, with the size and SHA-256 of its image once uploaded."""
    resource = await runtime.firmware_images.get(session, principal.domain_id, resource_id)
    return ResourcePublic.of(resource)


@router.delete("/resources/{resource_id}", status_code=204)
async def delete_resource(
    resource_id: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("DELETE resources/{id}")],
) -> Response:
    """Delete a resource and its image file."""
    await runtime.firmware_images.delete(session, principal, resource_id)
    return Response(status_code=204)


@router.put("/resources/{resource_id}/data", openapi_extra=_OCTET_STREAM_BODY)
async def upload_resource_data(
    resource_id: str,
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("PUT resources/{id}/data")],
) -> ResourcePublic:
    """Upload the image (application/octet-stream), streamed to disk; 413 over the limit."""
    media_type = request.headers.get("content-type", "application/octet-stream")
    if media_type.split(";")[0].strip().lower() != "application/octet-stream":
        raise UnsupportedMediaType("send the image as application/octet-stream")
    resource = await runtime.firmware_images.upload(principal, resource_id, request.stream())
    return ResourcePublic.of(resource)


@router.post("/resources/{resource_id}/downloadUrl")
async def create_download_url(
    resource_id: str,
    body: DownloadUrlRequest,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST resources/{id}/downloadUrl")],
) -> DownloadUrl:
    """A URL devices can fetch the image from without credentials, for a limited time."""
    images = runtime.firmware_images
    resource = await images.get(session, principal.domain_id, resource_id)
    # Unless configured, an HTTP download is served where this caller reached us.
    here = str(request.base_url).rstrip("/")
    address = images.download_url(resource, body.protocol, images.url_lifetime, http_base=here)
    return DownloadUrl(address=address)
