"""Firmware images (Coiote ``resources``): metadata in the store, bytes in the data dir,
and expiring download tokens for devices to fetch them over CoAP or HTTP.

An upload is streamed to a temporary file while its SHA-256 is computed, and only
renamed into place once complete and within the size limit. Download tokens are
stateless: ``{blob}.{expiry}.{mac}``, an HMAC under a key derived from the signing key,
bound to one upload's file (``blob_key``), so any node with the same key and data dir
can check them without a database write.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth.principal import Principal
from meadowlark.core import audit
from meadowlark.core.domains import in_scope, normalize_domain_id
from meadowlark.core.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from meadowlark.server.transport import DownloadBlock
from meadowlark.store.db import Database
from meadowlark.store.firmware_models import FirmwareResource
from meadowlark.store.models import Domain

CATEGORIES = frozenset({"FIRMWARE", "SOFTWARE", "CONFIGURATION", "OTHER"})
EXPIRATION_TIMES = frozenset({"ONE_HOUR", "ONE_DAY", "ONE_WEEK", "ONE_MONTH", "NEVER"})
PROTOCOLS = frozenset({"COAP", "HTTP", "HTTPS"})
RESOURCE_NOT_FOUND_CODE = 4041  # the reference: "resource/domain not found"
_RESOURCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,254}")
_TOKEN = re.compile(r"([0-9a-f]{32})\.([0-9a-f]{1,12})\.([A-Za-z0-9_-]{22})")
_MAC_BYTES = 16
_META_CACHE_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class NewResource:
    name: str
    file_name: str
    resource_id: str | None = None
    domain: str | None = None
    category: str = "FIRMWARE"
    expiration_time: str = "ONE_DAY"


@dataclass(frozen=True, slots=True)
class Download:
    """A file a valid token names, for the HTTP download route."""

    path: Path
    size: int
    sha256: str
    file_name: str


@dataclass(frozen=True, slots=True)
class _BlobMeta:
    size: int
    sha256: str
    file_name: str


def _wildcard_to_loopback(host: str) -> str:
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104 - a comparison
    return f"[{host}]" if ":" in host else host


class FirmwareImages:
    """The catalog of images, their files, and the ``DownloadSource`` of ``/fw/{token}``."""

    def __init__(
        self,
        db: Database,
        data_dir: Path,
        signing_key: str,
        *,
        max_bytes: int,
        url_lifetime: int,
        coap_url: str | None = None,
        http_url: str | None = None,
    ) -> None:
        self._db = db
        self.directory = data_dir / "firmware"
        self.max_bytes = max_bytes
        self.url_lifetime = url_lifetime
        self._key = hmac.new(
            signing_key.encode(), b"meadowlark firmware download", hashlib.sha256
        ).digest()
        self._configured_coap_url = coap_url
        self._configured_http_url = http_url
        self.coap_base: str | None = coap_url.rstrip("/") if coap_url else None
        self.http_base: str | None = http_url.rstrip("/") if http_url else None
        self._meta: dict[str, _BlobMeta] = {}

    def bind_coap(self, host: str, port: int) -> None:
        """Where devices reach our CoAP endpoint, unless configured (``firmware.coap_url``)."""
        if self._configured_coap_url is None:
            self.coap_base = f"coap://{_wildcard_to_loopback(host)}:{port}"

    def bind_http(self, host: str, port: int) -> None:
        """Where devices reach our REST server, unless configured (``firmware.http_url``)."""
        if self._configured_http_url is None:
            self.http_base = f"http://{_wildcard_to_loopback(host)}:{port}"

    # --- catalog ---------------------------------------------------------------------------

    async def create(
        self, session: AsyncSession, principal: Principal, new: NewResource
    ) -> FirmwareResource:
        resource_id = new.resource_id if new.resource_id is not None else uuid.uuid4().hex
        if not _RESOURCE_ID.fullmatch(resource_id):
            raise InvalidInput(
                "resource id: 1 to 255 letters, digits and . _ : - (starting with a letter "
                "or digit)"
            )
        for label, value in (("name", new.name), ("fileName", new.file_name)):
            if not value.strip() or not value.isprintable():
                raise InvalidInput(f"{label} must be non-empty printable text")
        if new.category not in CATEGORIES:
            raise InvalidInput(f"category must be one of {', '.join(sorted(CATEGORIES))}")
        if new.expiration_time not in EXPIRATION_TIMES:
            raise InvalidInput(
                f"expirationTime must be one of {', '.join(sorted(EXPIRATION_TIMES))}"
            )
        domain_id = normalize_domain_id(new.domain) if new.domain else principal.domain_id
        if not principal.sees_domain(domain_id) or await session.get(Domain, domain_id) is None:
            raise NotFound(f"domain {domain_id!r} not found", code=4041)
        if await session.get(FirmwareResource, resource_id) is not None:
            raise Conflict(f"resource {resource_id!r} already exists")
        resource = FirmwareResource(
            id=resource_id,
            domain_id=domain_id,
            name=new.name,
            file_name=new.file_name,
            category=new.category,
            expiration_time=new.expiration_time,
        )
        session.add(resource)
        await session.flush()
        audit.record(
            session,
            "resource.created",
            actor=principal.login,
            subject=resource_id,
            domain_id=domain_id,
        )
        return resource

    async def list_visible(
        self, session: AsyncSession, principal: Principal
    ) -> Sequence[FirmwareResource]:
        rows = await session.scalars(
            select(FirmwareResource)
            .where(in_scope(FirmwareResource.domain_id, principal.domain_id))
            .order_by(FirmwareResource.id)
        )
        return rows.all()

    async def get(
        self, session: AsyncSession, domain_id: str, resource_id: str
    ) -> FirmwareResource:
        """The resource if it lies in ``domain_id``'s subtree; 404 otherwise."""
        resource = await session.get(FirmwareResource, resource_id)
        if resource is None or not resource.domain_id.startswith(domain_id):
            raise NotFound(f"resource {resource_id!r} not found", code=RESOURCE_NOT_FOUND_CODE)
        return resource

    async def delete(self, session: AsyncSession, principal: Principal, resource_id: str) -> None:
        """Remove the resource and its file (the file after the row is gone)."""
        resource = await self.get(session, principal.domain_id, resource_id)
        blob_key = resource.blob_key
        await session.delete(resource)
        audit.record(
            session,
            "resource.deleted",
            actor=principal.login,
            subject=resource_id,
            domain_id=resource.domain_id,
        )
        await session.commit()
        if blob_key is not None:
            self._forget_blob(blob_key)

    # --- image bytes -----------------------------------------------------------------------

    async def upload(
        self, principal: Principal, resource_id: str, chunks: AsyncIterator[bytes]
    ) -> FirmwareResource:
        """Stream an image to disk, then make it the resource's data (replacing any).

        Nothing is kept of an upload that fails: too large (413), empty (400), or the
        resource deleted meanwhile (404).
        """
        async with self._db.session() as session:
            await self.get(session, principal.domain_id, resource_id)
        self.directory.mkdir(parents=True, exist_ok=True)
        blob_key = uuid.uuid4().hex
        partial = self.directory / f".{blob_key}.partial"
        digest = hashlib.sha256()
        size = 0
        try:
            async with await anyio.open_file(partial, "wb") as file:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise PayloadTooLarge(f"firmware image larger than {self.max_bytes} bytes")
                    digest.update(chunk)
                    await file.write(chunk)
            if size == 0:
                raise InvalidInput("the firmware image is empty")
            os.replace(partial, self.directory / blob_key)
            async with self._db.transaction() as session:
                resource = await self.get(session, principal.domain_id, resource_id)
                previous = resource.blob_key
                resource.blob_key = blob_key
                resource.size = size
                resource.sha256 = digest.hexdigest()
                resource.uploaded_at = datetime.now(UTC)
                audit.record(
                    session,
                    "resource.uploaded",
                    actor=principal.login,
                    subject=resource_id,
                    domain_id=resource.domain_id,
                    size=size,
                    sha256=resource.sha256,
                )
        except BaseException:
            partial.unlink(missing_ok=True)
            (self.directory / blob_key).unlink(missing_ok=True)
            raise
        if previous is not None:
            self._forget_blob(previous)
        return resource

    def _forget_blob(self, blob_key: str) -> None:
        self._meta.pop(blob_key, None)
        (self.directory / blob_key).unlink(missing_ok=True)

    async def image_bytes(self, resource: FirmwareResource) -> bytes:
        """The whole image (for a push, which sends it as one CoAP request body)."""
        if resource.blob_key is None:
            raise Conflict(f"resource {resource.id!r} has no data; PUT resources/{{id}}/data")
        async with await anyio.open_file(self.directory / resource.blob_key, "rb") as file:
            return await file.read()

    # --- download tokens -------------------------------------------------------------------

    def token_for(self, resource: FirmwareResource, lifetime: float) -> str:
        """A token naming the resource's current upload, valid for ``lifetime`` seconds."""
        if resource.blob_key is None:
            raise Conflict(f"resource {resource.id!r} has no data; PUT resources/{{id}}/data")
        return self.sign(resource.blob_key, int(time.time() + lifetime))

    def sign(self, blob_key: str, expires_at: int) -> str:
        body = f"{blob_key}.{expires_at:x}"
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).digest()[:_MAC_BYTES]
        return f"{body}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"

    def _blob_of(self, token: str) -> str | None:
        """The upload a token names, if it is genuine and not expired."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        blob_key, expiry, _ = match.groups()
        if not hmac.compare_digest(self.sign(blob_key, int(expiry, 16)), token):
            return None
        if int(expiry, 16) < time.time():
            return None
        return blob_key

    def download_url(
        self,
        resource: FirmwareResource,
        protocol: str,
        lifetime: float,
        *,
        http_base: str | None = None,
    ) -> str:
        """``coap://.../fw/{token}`` or ``http(s)://.../fw?token={token}`` for the resource;
        ``http_base`` is used for HTTP(S) when no base is configured or bound."""
        protocol = protocol.upper()
        if protocol not in PROTOCOLS:
            raise InvalidInput(f"protocol must be one of {', '.join(sorted(PROTOCOLS))}")
        base = self.coap_base if protocol == "COAP" else (self.http_base or http_base)
        if base is None:
            raise Conflict(f"no {protocol} endpoint is serving downloads")
        if protocol == "HTTPS" and not base.startswith("https://"):
            raise InvalidInput(
                "HTTPS downloads need MEADOWLARK_FIRMWARE__HTTP_URL set to an https:// URL"
            )
        token = self.token_for(resource, lifetime)
        return f"{base}/fw/{token}" if protocol == "COAP" else f"{base}/fw?token={token}"

    async def _blob_meta(self, blob_key: str) -> _BlobMeta | None:
        meta = self._meta.get(blob_key)
        if meta is not None:
            return meta
        async with self._db.session() as session:
            resource = await session.scalar(
                select(FirmwareResource).where(FirmwareResource.blob_key == blob_key)
            )
        if resource is None or resource.size is None or resource.sha256 is None:
            return None
        meta = _BlobMeta(resource.size, resource.sha256, resource.file_name)
        if len(self._meta) >= _META_CACHE_LIMIT:
            del self._meta[next(iter(self._meta))]
        self._meta[blob_key] = meta
        return meta

    async def open_download(self, token: str) -> Download | None:
        """The file a token names (HTTP download); ``None`` if the token is not valid."""
        blob_key = self._blob_of(token)
        if blob_key is None:
            return None
        meta = await self._blob_meta(blob_key)
        path = self.directory / blob_key
        if meta is None or not path.is_file():
            return None
        return Download(path, meta.size, meta.sha256, meta.file_name)

    async def read_block(self, token: str, offset: int, size: int) -> DownloadBlock | None:
        """``DownloadSource`` for CoAP: one block, read from the file by offset.

        The read is synchronous: a block is at most 1 KiB, from the page cache after
        the first request, far cheaper than a thread hop per block.
        """
        blob_key = self._blob_of(token)
        if blob_key is None:
            return None
        meta = await self._blob_meta(blob_key)
        if meta is None:
            return None
        try:
            with open(self.directory / blob_key, "rb") as file:  # noqa: ASYNC230 - see above
                file.seek(offset)
                data = file.read(size)
        except FileNotFoundError:
            return None
        return DownloadBlock(data, meta.size, bytes.fromhex(meta.sha256[:16]))
