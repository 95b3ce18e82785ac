"""Two nodes' runtimes on one store: a PSK device created, rotated or deleted through one
node is current in the other node's keyring at once (cluster notice), and the other node
hears which identity's sessions to drop. SQLite: Unix sockets; PostgreSQL: NOTIFY."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cluster_nodes import cluster_settings, create_psk_device

from meadowlark.core import devices
from meadowlark.runtime import Runtime


async def _node(settings) -> Runtime:
    runtime = Runtime.from_settings(settings)
    await runtime.prepare_store()
    await runtime.start_lwm2m()
    return runtime


async def _eventually(check: Callable[[], bool]) -> None:
    for _ in range(250):
        if check():
            return
        await asyncio.sleep(0.02)
    assert check()


def test_credentials_changed_on_one_node_reach_the_other(
    backend, database_url, settings_for, tmp_path
):
    settings = cluster_settings(settings_for, backend, database_url, tmp_path / "data")
    endpoint, identity = f"cluster-psk-{backend}", f"id-cluster-{backend}"

    async def main() -> None:
        from meadowlark.cli.main import SYSTEM

        a = await _node(settings)
        b = await _node(settings)
        changed_on_b: list[str] = []
        b.psk_keyring.on_change(changed_on_b.append)
        try:
            await create_psk_device(a, endpoint, identity, "0102030405060708")
            assert a.psk_keyring[identity] == bytes.fromhex("0102030405060708")
            await _eventually(lambda: identity in b.psk_keyring)
            assert b.psk_keyring[identity] == bytes.fromhex("0102030405060708")

            async with a.db.session() as session:
                update = await devices.update_device(
                    session,
                    SYSTEM,
                    endpoint,
                    devices.DeviceChanges(dtls_psk={"PlainTextPsk": "rotated"}),
                    psk_box=a.psk_box,
                )
                await session.commit()
            assert update.barred
            await _eventually(lambda: b.psk_keyring.get(identity) == b"rotated")
            assert changed_on_b == [identity]

            async with a.db.session() as session:
                await devices.delete_device(session, SYSTEM, endpoint)
                await session.commit()
            await _eventually(lambda: identity not in b.psk_keyring)
            assert changed_on_b == [identity, identity]
        finally:
            for runtime in (a, b):
                await runtime.close()

    asyncio.run(main())
