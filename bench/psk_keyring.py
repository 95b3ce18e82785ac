"""The DTLS keyring at 100,000 PSK devices on SQLite, and sealing costs.

Figures, each against a baseline measured in the same run:

- load: ``PskKeyring.load()`` against the bare fetch of the same rows (same query);
- lookup: ``keyring[identity]`` (opens the sealed key, AES-256-GCM) against a plain
  ``dict[str, bytes]`` lookup; a miss (``KeyError``) too;
- seal / open of a 16-byte PSK against one HMAC-SHA256 of it;
- the startup step sealing keys an older version stored in clear, against the bare
  fetch of those rows.

``python -m bench psk_keyring`` (or ``python -m bench.psk_keyring``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, update

from meadowlark.core.secret_box import PSK_PURPOSE, SecretBox, derive_key
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device
from meadowlark.store.migrate import upgrade_to_head
from meadowlark.store.models import Domain
from meadowlark.store.psk_keyring import _PSK_ROWS, PskKeyring, seal_stored_psks

CHUNK = 5_000
SAMPLES = 200_000


def _per_call_us(work: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        work()
    return (time.perf_counter() - start) / calls * 1e6


def _best_of(runs: int, work: Callable[[], float]) -> float:
    return min(work() for _ in range(runs))


async def _fill(db: Database, box: SecretBox, devices: int) -> float:
    """Insert ``devices`` PSK devices; seconds spent sealing their keys."""
    await upgrade_to_head(db.engine)
    async with db.transaction() as session:
        session.add(Domain(id="/root/", customer_id="c", organization_id="o"))
    now, sealing = datetime.now(UTC), 0.0
    for start in range(0, devices, CHUNK):
        rows = []
        for n in range(start, min(start + CHUNK, devices)):
            device_id = f"urn:dev:psk-{n:07d}"
            began = time.perf_counter()
            sealed = box.seal(n.to_bytes(16, "big"), device_id)
            sealing += time.perf_counter() - began
            rows.append(
                {
                    "id": device_id,
                    "endpoint_name": device_id,
                    "domain_id": "/root/",
                    "security_mode": "psk",
                    "dtls_identity": f"identity-{n:07d}",
                    "dtls_psk": sealed,
                    "creation_time": now,
                }
            )
        async with db.transaction() as session:
            await session.execute(insert(Device), rows)
    return sealing


async def _measure(devices: int, duration: float) -> dict[str, float]:
    box = SecretBox(derive_key("bench-secret-" + "b" * 40, PSK_PURPOSE))
    with tempfile.TemporaryDirectory() as folder:
        db = Database(f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}")
        try:
            sealing = await _fill(db, box, devices)

            async def fetch_only() -> float:
                began = time.perf_counter()
                async with db.engine.connect() as connection:
                    (await connection.execute(_PSK_ROWS)).all()
                return time.perf_counter() - began

            async def load() -> float:
                keyring = PskKeyring(db, box)
                began = time.perf_counter()
                await keyring.load()
                elapsed = time.perf_counter() - began
                assert len(keyring) == devices
                return elapsed

            rounds = max(3, int(duration))
            fetch = min([await fetch_only() for _ in range(rounds)])
            loaded = min([await load() for _ in range(rounds)])

            keyring = PskKeyring(db, box)
            await keyring.load()
            identities = [f"identity-{random.randrange(devices):07d}" for _ in range(SAMPLES)]
            plain = {f"identity-{n:07d}": n.to_bytes(16, "big") for n in range(devices)}
            assert keyring[identities[0]] == plain[identities[0]]
            calls = iter(range(10**9))

            def lookup_keyring() -> object:
                return keyring[identities[next(calls) % SAMPLES]]

            def lookup_dict() -> object:
                return plain[identities[next(calls) % SAMPLES]]

            def miss() -> object:
                return keyring.get("no-such-identity")

            lookup = _best_of(3, lambda: _per_call_us(lookup_keyring, SAMPLES))
            baseline = _best_of(3, lambda: _per_call_us(lookup_dict, SAMPLES))
            missing = _best_of(3, lambda: _per_call_us(miss, SAMPLES))

            # the same rows as an older version stored them: keys in clear
            async with db.transaction() as session:
                await session.execute(update(Device).values(dtls_psk="00" * 16))
            fetch_plain = await fetch_only()
            began = time.perf_counter()
            assert await seal_stored_psks(db, box) == devices
            startup_sealing = time.perf_counter() - began

            key = bytes(16)
            sealed = box.seal(key, "urn:dev:psk-0000001")
            seal = _best_of(3, lambda: _per_call_us(lambda: box.seal(key, "d"), 50_000))
            opened = _best_of(
                3, lambda: _per_call_us(lambda: box.open(sealed, "urn:dev:psk-0000001"), 50_000)
            )
            mac = _best_of(
                3, lambda: _per_call_us(lambda: hmac.digest(key, key, hashlib.sha256), 50_000)
            )
        finally:
            await db.dispose()
    figures = {
        "devices": devices,
        "fetch_s": fetch,
        "load_s": loaded,
        "lookup_us": lookup,
        "dict_lookup_us": baseline,
        "miss_us": missing,
        "seal_us": seal,
        "open_us": opened,
        "hmac_us": mac,
        "seal_all_s": sealing,
        "startup_sealing_s": startup_sealing,
    }
    print(f"PSK keyring, {devices} PSK devices on SQLite (best of {rounds} loads)")
    print(
        f"  load          {loaded * 1000:8.0f} ms   bare fetch of the rows {fetch * 1000:6.0f} ms"
        f"   ratio {loaded / fetch:5.2f}x"
    )
    print(
        f"  lookup        {lookup:8.2f} us   dict[str, bytes] {baseline:8.3f} us"
        f"   ratio {lookup / baseline:6.1f}x   (miss {missing:.2f} us)"
    )
    print(
        f"  seal / open   {seal:5.2f} / {opened:5.2f} us   HMAC-SHA256 {mac:5.2f} us"
        f"   ratios {seal / mac:4.1f}x / {opened / mac:4.1f}x"
        f"   (sealing {devices} keys: {sealing:.2f} s)"
    )
    print(
        f"  startup sealing of {devices} keys stored in clear {startup_sealing:6.2f} s"
        f"   bare fetch {fetch_plain:5.2f} s   ratio {startup_sealing / fetch_plain:5.1f}x"
    )
    return figures


def run(duration: float = 5.0, devices: int = 100_000) -> dict[str, float]:
    return asyncio.run(_measure(devices, duration))


if __name__ == "__main__":
    run()
