"""Device listing latency as the store grows: 1k versus 200k devices, SQLite and PostgreSQL.

For each backend and size the server runs as a subprocess on a fresh database; the
device rows are bulk-inserted with SQL. Measured (p50 over ``duration`` seconds each):
``GET devices/find/details?limit=100`` (first page, and a page 90 % deep through a
bookmark) and ``GET devices/{id}``. Keyset paging on the primary key should keep the
200k/1k ratio near 1. PostgreSQL runs when ``MEADOWLARK_BENCH_POSTGRES_URL`` names a
server (a maintenance URL such as ``scripts/local-postgres.sh`` prints).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

import httpx
from sqlalchemy import insert, select, text

from bench.common import LoadResult, http_request, latency_growth, run_load, serving
from meadowlark.core.devices import device_condition, encode_bookmark
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device

ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105 - a throwaway local server
SIZES = (1_000, 200_000)
CHUNK = 5_000
PAGE = 100


def device_id(n: int) -> str:
    return f"urn:dev:bench-{n:07d}"


async def insert_devices(url: str, count: int) -> None:
    db = Database(url)
    now = datetime.now(UTC)
    try:
        for start in range(0, count, CHUNK):
            rows = [
                {
                    "id": device_id(n),
                    "endpoint_name": device_id(n),
                    "domain_id": "/root/",
                    "friendly_name": "",
                    "description": "",
                    "properties": {"site": str(n % 7)},
                    "blacklisted": False,
                    "management_enabled": True,
                    "connector_type": "lwm2m",
                    "security_mode": "nosec",
                    "creation_time": now,
                    "first_register_time": now,
                    "last_register_time": now,
                    "last_contact_time": now,
                    "queue_mode": False,
                    "lwm2m_version": "1.1",
                    "binding": "U",
                    "lifetime": 86400,
                    "registered_objects": '</>;rt="oma.lwm2m",</1/0>,</3/0>,</3303/0>',
                    "ip_address": "127.0.0.1",
                    "manufacturer": "Bench",
                }
                for n in range(start, min(count, start + CHUNK))
            ]
            async with db.transaction() as session:
                await session.execute(insert(Device), rows)
        if not db.is_sqlite:
            async with db.transaction() as session:
                await session.execute(text("ANALYZE devices"))
    finally:
        await db.dispose()


async def _plan(url: str, after: str) -> str:
    """The query plan of a deep page, as the server runs it for an administrator."""
    from meadowlark.auth.principal import Principal

    admin = Principal("admin", "admin", "/root/", "admin", frozenset(), "bearer")
    statement = (
        select(Device)
        .where(device_condition(admin, None), Device.id > after)
        .order_by(Device.id)
        .limit(PAGE + 1)
    )
    db = Database(url)
    try:
        async with db.session() as session:
            compiled = statement.compile(db.engine, compile_kwargs={"literal_binds": True})
            prefix = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN "
            rows = await session.execute(text(prefix + str(compiled)))
            return " | ".join(str(row[-1]) for row in rows)
    finally:
        await db.dispose()


def _measure(backend: str, size: int, duration: float) -> dict[str, LoadResult]:
    with serving(backend, ADMIN_PASSWORD) as (port, url):
        asyncio.run(insert_devices(url, size))
        deep_after = device_id(size * 9 // 10)
        print(f"    plan {backend} {size}: {asyncio.run(_plan(url, deep_after))}")
        form = {"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD}
        token = httpx.post(f"http://127.0.0.1:{port}/api/auth/oauth_password", data=form).json()[
            "access_token"
        ]
        headers = {"Authorization": f"Bearer {token}"}
        base = "/api/coiotedm/v3/devices"
        deep = urlencode({"limit": PAGE, "pageBookmark": encode_bookmark(deep_after, None)})
        paths = {
            "find/details first page": f"{base}/find/details?limit={PAGE}",
            "find/details deep page": f"{base}/find/details?{deep}",
            "devices/{id}": f"{base}/{quote(device_id(size // 2))}",
        }
        return {
            name: run_load(
                http_request("GET", path, headers=headers),
                port=port,
                duration=duration,
                concurrency=4,
            )
            for name, path in paths.items()
        }


def run(duration: float = 5.0) -> dict[str, float]:
    return latency_growth("devices", SIZES, _measure, duration)
