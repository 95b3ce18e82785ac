"""Alerts on two nodes' runtimes over one store: a rule made on one node reaches the
other's threshold index at once (the cluster's notices), a value read on the other node
raises the alert there, and one node only runs the no-contact sweep."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from cluster_nodes import cluster_settings, start_node
from sqlalchemy import select

from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.simulator import DeviceTiming, SimulatedDevice
from meadowlark.store.alert_models import Alert, AlertRule

SENSOR = LwM2mPath(3303, 0, 5700)


async def _until(check) -> None:
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition still false")


def test_rule_changes_reach_the_other_node_and_one_node_sweeps(
    backend, database_url, settings_for, tmp_path
):
    settings = cluster_settings(
        settings_for, backend, database_url, tmp_path / "data", cluster={"lease_ttl": 3.0}
    )

    async def main() -> None:
        a, coap_a = await start_node(settings)
        b, coap_b = await start_node(settings)
        device = SimulatedDevice(
            "alerts-two-nodes",
            f"coap://127.0.0.1:{coap_b.port}",
            timing=DeviceTiming(ack_timeout=1.0),
        )
        try:
            await device.start()
            now = datetime.now(UTC)
            async with a.db.transaction() as session:
                session.add(
                    AlertRule(
                        id="c" * 24,
                        domain_id="/root/",
                        name="hot",
                        kind="threshold",
                        severity="critical",
                        enabled=True,
                        resource_url=str(SENSOR),
                        above=-1000.0,
                        hysteresis=0.0,
                        created_at=now,
                        updated_at=now,
                    )
                )
            await a.alerts.rules_changed()
            assert SENSOR in a.alerts.index.paths

            async def b_knows() -> bool:
                return SENSOR in b.alerts.index.paths

            await _until(b_knows)
            await b.lwm2m.read(device.endpoint_name, SENSOR, timeout=5)
            await b.alerts.idle()
            async with b.db.session() as session:
                alerts = list((await session.scalars(select(Alert))).all())
            assert [(x.rule_id, x.device_id, x.state) for x in alerts] == [
                ("c" * 24, device.endpoint_name, "raised")
            ]

            async def one_sweeper() -> bool:
                return [a.alert_sweep.held, b.alert_sweep.held].count(True) == 1

            await _until(one_sweeper)
        finally:
            await device.stop(deregister=False)
            for runtime, coap in ((a, coap_a), (b, coap_b)):
                await coap.stop()
                await runtime.close()

    asyncio.run(main())
