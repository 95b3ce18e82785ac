"""``GET /things`` latency as the SIM inventory grows: 1k versus 100k Things, SQLite and
PostgreSQL, following ``bench.devices``.

For each backend and size the server runs as a subprocess on a fresh database; Thing rows
are bulk-inserted with SQL. Measured (p50 over ``duration`` seconds each): the first page
of ``GET /things?limit=50`` in id order and sorted by name, a filter on IMEI, and
``GET /thing/{id}``. The indexes (primary key, name, IMEI) should keep the 100k/1k ratio
under 1.5. PostgreSQL runs when ``MEADOWLARK_BENCH_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx
from sqlalchemy import insert, text

from bench.common import LoadResult, http_request, latency_growth, run_load, serving
from bench.devices import ADMIN_PASSWORD
from meadowlark.connectivity.identifiers import thing_id, with_check_digit
from meadowlark.store.connectivity_models import Thing
from meadowlark.store.db import Database

SIZES = (1_000, 100_000)
CHUNK = 5_000
LIMIT = 1.5


def iccid(n: int) -> str:
    return with_check_digit(f"894400{n:012d}")


async def _insert_things(url: str, count: int) -> None:
    db = Database(url)
    now = datetime.now(UTC)
    try:
        for start in range(0, count, CHUNK):
            rows = [
                {
                    "id": thing_id(iccid(n)),
                    "iccid": iccid(n),
                    "domain_id": "/root/",
                    "name": f"sim {n:07d}",
                    "description": "",
                    "imsi": f"42501{n:010d}",
                    "msisdn": f"9725{n:08d}",
                    "imei": f"35{n:013d}",
                    "master_imei": "",
                    "lock_master_imei": False,
                    "state": "ACTIVE",
                    "tags": [],
                    "created_at": now,
                    "modified_at": now,
                    "cas": 1,
                }
                for n in range(start, min(count, start + CHUNK))
            ]
            async with db.transaction() as session:
                await session.execute(insert(Thing), rows)
        if not db.is_sqlite:
            async with db.transaction() as session:
                await session.execute(text("ANALYZE things"))
    finally:
        await db.dispose()


def _measure(backend: str, size: int, duration: float) -> dict[str, LoadResult]:
    with serving(backend, ADMIN_PASSWORD) as (port, url):
        asyncio.run(_insert_things(url, size))
        login = {"UserName": "admin", "Password": ADMIN_PASSWORD}
        token = httpx.post(f"http://127.0.0.1:{port}/Auth", json=login).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        paths = {
            "things first page": "/things?limit=50",
            "things sorted by name": "/things?"
            + urlencode({"limit": 50, "sortBy[ThingName]": "ASC"}),
            "things filtered by IMEI": "/things?"
            + urlencode({"filterBy[IMEI]": f"35{size // 2:013d}"}),
            "thing/{id}": f"/thing/{thing_id(iccid(size // 2))}",
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
    return latency_growth("things", SIZES, _measure, duration, limit=LIMIT)
