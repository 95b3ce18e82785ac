# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""What a Register costs the database when there is nothing else to do: no query of its
own beyond the group-committed admission, and shared existence checks (no observation
configured, no task, no ``registrationRead`` setting) instead of per-device lookups."""

from __future__ import annotations

import asyncio
import secrets

from aiocoap import Code
from fake_device import FakeDevice
from sqlalchemy import event

from lwm2m_harness import Lwm2mTestServer, eventually, server  # noqa: F401 - fixtures

OBJECTS = b"</1/0>,</3303/0>"  # no /3 or /5: no registration reads either
DEVICES = 40
PER_DEVICE_LOOKUPS = ("group_memberships", "observation_configs.target_id", "task_runs.device_id")


def test_a_register_storm_queries_per_batch_not_per_device(server: Lwm2mTestServer):
    tag = secrets.token_hex(4)
    endpoints = [f"quiet-{tag}-{n}" for n in range(DEVICES)]
    clients = [FakeDevice() for _ in endpoints]
    for client in clients:
        server.call(client.start())
    statements: list[str] = []
    engine = server.runtime.db.engine.sync_engine

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:

        async def together() -> list[Code]:
            answers = await asyncio.gather(
                *(
                    client.request(Code.POST, f"{server.server_uri}/rd?ep={ep}&lt=300", OBJECTS)
                    for client, ep in zip(clients, endpoints, strict=True)
                )
            )
            return [answer.code for answer in answers]

        assert server.call(together(), timeout=120) == [Code.CREATED] * DEVICES
        # The engine and the observation manager have looked at every new device.
        eventually(lambda: not server.runtime.tasks.engine._queued)
        server.call(asyncio.sleep(0.3))
    finally:
        event.remove(engine, "before_cursor_execute", record)
        for client in clients:
            server.call(client.stop())
    per_device = [s for s in statements if any(table in s for table in PER_DEVICE_LOOKUPS)]
    assert per_device == []
    admissions = [s for s in statements if s.lstrip().startswith("INSERT INTO devices")]
    assert 1 <= len(admissions) < DEVICES  # group commit: several Registers per INSERT
    assert len(statements) < DEVICES, statements
