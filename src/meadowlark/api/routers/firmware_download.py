"""Firmware downloads for devices over HTTP(S): the token in the URL is the credential.

The token travels as a query parameter, which the access log never records.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from meadowlark.api.deps import RuntimeDep, public
from meadowlark.core.errors import NotFound

router = APIRouter(tags=["firmware"])


@router.get(
    "/fw",
    dependencies=[public("firmware:GET /fw")],
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download_firmware(
    token: Annotated[str, Query(max_length=128)], runtime: RuntimeDep
) -> FileResponse:
    """The image a download URL names, streamed; 404 if the token is unknown or expired."""
    download = await runtime.firmware_images.open_download(token)
    if download is None:
        raise NotFound("no such download, or its URL has expired")
    return FileResponse(
        download.path,
        media_type="application/octet-stream",
        filename=download.file_name,
        headers={"ETag": f'"{download.sha256}"'},
    )
