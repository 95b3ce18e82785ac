"""The cluster's parts on a real store (SQLite, and PostgreSQL when configured): the
signal carriers, calls and notices between two nodes, registration ownership and
takeover, singleton leases, and the JSON forms of what travels."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lwm2m_registrations import make_registration
from meadowlark.cluster.leases import Lease
from meadowlark.cluster.node import CallFailed, ClusterNode, new_node_id
from meadowlark.cluster.registrations import SharedRegistrationStore
from meadowlark.cluster.signals import ALL, LocalSignals, PostgresSignals
from meadowlark.cluster.wire import (
    error_from_wire,
    error_to_wire,
    event_from_wire,
    event_to_wire,
    result_from_wire,
    result_to_wire,
)
from meadowlark.core.events import DeviceEvent, EventKind
from meadowlark.core.users import bootstrap
from meadowlark.lwm2m.node import (
    LwM2mObject,
    MultiResource,
    ObjectInstance,
    ObjectLink,
    ResourceType,
    SingleResource,
)
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.errors import DeviceErrorResponse, RequestQueuedError, RequestTimeoutError
from meadowlark.server.registration import Registration
from meadowlark.server.transport import NOT_FOUND, Peer, PeerIdentity
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device
from meadowlark.store.migrate import upgrade_to_head


@pytest.fixture(scope="module")
def db_url(database_url, tmp_path_factory):
    url = database_url or f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('cl') / 'c.db'}"

    async def migrate() -> None:
        db = Database(url)
        try:
            await upgrade_to_head(db.engine)
            async with db.session() as session:  # the root domain devices join
                await bootstrap(session, "Cluster-Admin-Pa55!")
                await session.commit()
        finally:
            await db.dispose()

    asyncio.run(migrate())
    return url


def _signals(backend: str, db: Database, directory: Path, node_id: str):
    if backend == "postgres":
        return PostgresSignals(db, node_id)
    return LocalSignals(directory, node_id)


def test_calls_and_notices_between_two_nodes(backend, db_url, tmp_path):
    async def main() -> None:
        db = Database(db_url)
        a = ClusterNode(_signals(backend, db, tmp_path, new_node_id()))
        b = ClusterNode(_signals(backend, db, tmp_path, new_node_id()))
        seen: list[dict] = []
        b.on("hello", seen.append)
        a.on("hello", lambda data: pytest.fail("a broadcast reached its sender"))

        async def double(params: dict) -> dict:
            return {"twice": params["n"] * 2}

        async def refuse(params: dict) -> dict:
            raise CallFailed("busy", {"why": "testing"})

        b.serve("double", double)
        b.serve("refuse", refuse)
        await a.start()
        await b.start()
        try:
            assert await a.call(b.node_id, "double", {"n": 21}, timeout=5) == {"twice": 42}
            big = "x" * 20_000  # larger than a NOTIFY payload: goes through the table
            assert (await a.call(b.node_id, "double", {"n": big}, timeout=5))["twice"] == big * 2
            with pytest.raises(CallFailed) as refused:
                await a.call(b.node_id, "refuse", {}, timeout=5)
            assert refused.value.reason == "busy" and refused.value.detail["why"] == "testing"
            with pytest.raises(CallFailed) as unknown:
                await a.call(b.node_id, "nothing", {}, timeout=5)
            assert unknown.value.reason == "unknown_method"
            with pytest.raises(CallFailed) as nobody:
                await a.call(new_node_id(), "double", {"n": 1}, timeout=0.5)
            assert nobody.value.reason == "no_answer"
            await a.publish("hello", {"from": "a"})
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.05)
            assert seen == [{"from": "a"}]
        finally:
            await a.stop()
            await b.stop()
            await db.dispose()

    asyncio.run(main())


def test_a_dead_local_node_socket_is_skipped_and_removed(tmp_path):
    async def main() -> None:
        alive = LocalSignals(tmp_path, "alive")
        got: list[dict] = []
        await alive.start(got.append)
        stale = tmp_path / "dead.sock"
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
            dead.bind(str(stale))  # bound, never listening: connections are refused
        sender = LocalSignals(tmp_path, "sender")
        await sender.send(ALL, {"kind": "notice", "n": 1})
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.02)
        assert got and got[0]["n"] == 1 and got[0]["from"] == "sender"
        assert not stale.exists()
        await alive.stop()
        assert not (tmp_path / "alive.sock").exists()

    asyncio.run(main())


def _registration(endpoint: str, registration_id: str, port: int = 40000) -> Registration:
    return make_registration(
        endpoint, registration_id=registration_id, peer=Peer("127.0.0.1", port)
    )


async def _record_device(db: Database, registration: Registration) -> None:
    """What the device registry writes at Register, before the 2.01."""
    async with db.transaction() as session:
        device = await session.get(Device, registration.endpoint)
        if device is None:
            device = Device(
                id=registration.endpoint, endpoint_name=registration.endpoint, domain_id="/root/"
            )
            session.add(device)
        device.registration_id = registration.registration_id
        device.ip_address = registration.peer.host
        device.port = registration.peer.port
        device.lwm2m_version = registration.lwm2m_version
        device.binding = registration.binding
        device.lifetime = registration.lifetime
        device.registered_objects = "</1/0>,</3/0>"
        device.last_register_time = registration.registered_at


def test_ownership_is_recorded_and_taken_over_by_an_update_at_another_node(db_url):
    async def main() -> None:
        db = Database(db_url)
        released: list[tuple[str, list[tuple[str, str]]]] = []
        a = SharedRegistrationStore(db, "node-a", lambda *call: released.append(call))
        b = SharedRegistrationStore(db, "node-b", lambda *call: released.append(call))
        endpoint = f"own-{new_node_id()}"
        registration = _registration(endpoint, new_node_id())
        try:
            await _record_device(db, registration)
            assert await a.add(registration) is None
            located = await b.locate(endpoint)
            assert located is not None and located[0] == "node-a"
            assert located[1].registration_id == registration.registration_id
            assert located[1].objects.objects.keys() == {1, 3}
            # Every node sees the registration; only a holds it (sends its downlinks).
            seen_from_b = await b.get_by_endpoint(endpoint)
            assert seen_from_b is not None and not await b.holds(seen_from_b)
            assert await a.holds(registration)
            assert [r.endpoint for r in await b.all() if r.endpoint == endpoint] == [endpoint]
            assert released == []

            watcher = SharedRegistrationStore(db, "node-c", lambda *call: None)
            assert (await watcher.locate(endpoint))[0] == "node-a"  # type: ignore[index]

            # An Update for that location reaches b: b rebuilds it from the store and
            # claims it; a is told to let go.
            adopted = await b.get(registration.registration_id)
            assert adopted is not None and adopted.endpoint == endpoint
            assert adopted.peer.address == ("127.0.0.1", 40000)
            assert (await b.locate(endpoint))[0] == "node-b"  # type: ignore[index]
            assert released == [("node-a", [(endpoint, registration.registration_id)])]
            # Another node's recent lookup may still name a for a moment; asked afresh
            # (as a downlink does when a answers that it no longer holds it), b.
            assert (await watcher.locate(endpoint))[0] == "node-a"  # type: ignore[index]
            assert (await watcher.locate(endpoint, fresh=True))[0] == "node-b"  # type: ignore[index]
            assert await b.holds(adopted)
            await a.release(endpoint, registration.registration_id)
            assert not await a.holds(registration)

            # An unknown location is no registration anywhere.
            assert await b.get("0123456789abcdef") is None

            # Removing (De-register, expiry) forgets the owner row: not registered.
            assert await b.remove(registration.registration_id) is not None
            assert await a.locate(endpoint) is None
        finally:
            await db.dispose()

    asyncio.run(main())


def test_a_register_committed_but_not_yet_held_is_not_reported_from_its_row(db_url):
    """Between the commit of a Register's claim (in the registry's transaction) and
    ``add``, the row alone would give a plain-UDP peer with no identity: the node that
    receives it reports the registration once it holds it, over its own transport."""

    async def main() -> None:
        db = Database(db_url)
        store = SharedRegistrationStore(db, "node-dtls", lambda *call: None)
        endpoint = f"dtls-{new_node_id()}"
        registration = replace(
            _registration(endpoint, new_node_id()),
            peer=Peer("127.0.0.1", 40000, "dtls", identity=PeerIdentity("psk", "id-1")),
        )
        try:
            await _record_device(db, registration)
            async with db.engine.begin() as connection:
                claimed = await store.write_admitted(connection, [registration])
            claimed()
            located = await store.locate(endpoint)
            assert located is not None and located[1].peer.transport == "udp"  # the row
            assert await store.get_by_endpoint(endpoint) is None

            await store.add(registration)
            held = await store.get_by_endpoint(endpoint)
            assert held is not None and held.peer.transport == "dtls"
            assert held.peer.identity == PeerIdentity("psk", "id-1")
        finally:
            await db.dispose()

    asyncio.run(main())


def test_claims_of_one_loop_turn_are_written_together(db_url):
    async def main() -> None:
        db = Database(db_url)
        store = SharedRegistrationStore(db, "node-batch", lambda *call: None)
        registrations = [_registration(f"batch-{new_node_id()}", new_node_id()) for _ in range(20)]
        try:
            for registration in registrations:
                await _record_device(db, registration)
            await asyncio.gather(*(store.add(r) for r in registrations))
            for registration in registrations:
                located = await store.locate(registration.endpoint)
                assert located is not None and located[0] == "node-batch"
        finally:
            await db.dispose()

    asyncio.run(main())


def test_one_lease_holder_at_a_time_and_the_next_takes_over(db_url):
    async def main() -> None:
        db = Database(db_url)
        name = f"duty-{new_node_id()}"
        running: list[str] = []

        def duty(holder: str):
            async def run() -> None:
                running.append(holder)
                await asyncio.Event().wait()

            return run

        first = Lease(db, name, "first", duty("first"), ttl=1.5)
        second = Lease(db, name, "second", duty("second"), ttl=1.5)
        try:
            first.start()
            for _ in range(50):
                if first.held:
                    break
                await asyncio.sleep(0.05)
            second.start()
            await asyncio.sleep(1.2)
            assert first.held and not second.held and running == ["first"]
            await first.stop()  # gives the lease up (or its connection closes)
            for _ in range(100):
                if second.held:
                    break
                await asyncio.sleep(0.05)
            assert second.held and running == ["first", "second"]
        finally:
            await first.stop()
            await second.stop()
            await db.dispose()

    asyncio.run(main())


def test_events_results_and_errors_survive_the_trip():
    registration = _registration("wire-ep", "abcdef0123456789")
    nodes = {
        LwM2mPath(3, 0): ObjectInstance(
            0,
            {
                0: SingleResource(0, ResourceType.STRING, "Meadowlark"),
                7: MultiResource(7, ResourceType.INTEGER, {0: 3800, 1: 5000}),
                13: SingleResource(13, ResourceType.TIME, datetime(2026, 1, 2, tzinfo=UTC)),
            },
        ),
        LwM2mPath(5, 0, 0): SingleResource(0, ResourceType.OPAQUE, b"\x00\xff"),
        LwM2mPath(1): LwM2mObject(1, {0: ObjectInstance(0, {})}),
        LwM2mPath(9, 0, 1): SingleResource(1, ResourceType.OBJLNK, ObjectLink(3, 0)),
    }
    event = DeviceEvent(
        EventKind.NOTIFICATION,
        "wire-ep",
        "/root/acme/",
        datetime.now(UTC),
        registration=registration,
        paths=(LwM2mPath(3, 0),),
        nodes=nodes,
    )
    back = event_from_wire(event_to_wire(event))
    assert back.nodes == nodes and back.paths == event.paths and back.at == event.at
    assert back.domain_id == "/root/acme/" and back.registration == registration

    assert result_from_wire(result_to_wire(nodes[LwM2mPath(3, 0)])) == nodes[LwM2mPath(3, 0)]
    assert result_from_wire(result_to_wire(nodes)) == nodes
    assert result_from_wire(result_to_wire(LwM2mPath(3, 1))) == LwM2mPath(3, 1)
    links = {LwM2mPath(3, 0, 1): {"pmin": 10}}
    assert result_from_wire(result_to_wire(links)) == links
    assert result_from_wire(result_to_wire(None)) is None

    error = error_from_wire("ep", error_to_wire(DeviceErrorResponse(NOT_FOUND, "no such")))
    assert isinstance(error, DeviceErrorResponse) and error.code == NOT_FOUND
    assert error.diagnostic == "no such"
    queued = error_from_wire("ep", error_to_wire(RequestQueuedError("ep", "r1")))
    assert isinstance(queued, RequestQueuedError) and queued.request_id == "r1"
    timeout = error_from_wire("ep", error_to_wire(RequestTimeoutError("slow")))
    assert isinstance(timeout, RequestTimeoutError) and timeout.message == "slow"


def test_role_and_thing_changes_on_one_node_apply_on_the_other(backend, db_url, tmp_path):
    from sqlalchemy import update

    from meadowlark.auth import permissions as catalog
    from meadowlark.cluster.feeds import PRINCIPALS
    from meadowlark.cluster.wiring import Cluster
    from meadowlark.config import Settings
    from meadowlark.connectivity.enforcement import ThingFacts
    from meadowlark.connectivity.states import ThingState
    from meadowlark.store.models import Role

    kind = "postgres" if backend == "postgres" else "local"
    settings = Settings(data_dir=tmp_path, database_url=db_url, dev=True)
    name = f"role-{new_node_id()}"
    grant = sorted(catalog.GRANTABLE)[:2]

    async def main() -> None:
        db = Database(db_url)
        a, b = Cluster(settings, db, kind), Cluster(settings, db, kind)
        await a.node.start()
        await b.node.start()
        try:
            async with db.transaction() as session:
                session.add(Role(id=name, name=name, permissions=[grant[0]]))

            async def granted() -> frozenset[str]:
                return await b.roles.permissions_of("developer", [name], [], "/root/")

            assert grant[0] in await granted()  # b has read and cached the role
            async with db.transaction() as session:
                await session.execute(
                    update(Role).where(Role.id == name).values(permissions=[grant[1]])
                )
            a.roles.invalidate()  # what a's API does after committing a role change
            # Well within the cache's own lifetime: only the notice can explain it.
            for _ in range(20):
                if grant[1] in await granted():
                    break
                await asyncio.sleep(0.02)
            assert await granted() >= {grant[1]} and grant[0] not in await granted()

            facts = ThingFacts(
                "thing-1", "/root/", ThingState.SUSPENDED, "3520990000001", "", False, None, "ep"
            )
            a.thing_index.put(facts)
            a.thing_index.put_group("group-1", "35209900", True)
            for _ in range(100):
                if b.thing_index.get("thing-1") is not None:
                    break
                await asyncio.sleep(0.02)
            assert b.thing_index.get("thing-1") == facts
            assert b.thing_index.for_endpoint("ep") == facts
            a.thing_index.remove("thing-1")
            for _ in range(100):
                if b.thing_index.get("thing-1") is None:
                    break
                await asyncio.sleep(0.02)
            assert b.thing_index.get("thing-1") is None

            # Any cache with an invalidation hook (the verified-caller cache: a logout,
            # a disabled user) shares its invalidations the same way.
            listeners: list = []
            forgotten: list = []
            a.share(PRINCIPALS, listeners.append, lambda key: pytest.fail("echoed"))
            b.share(PRINCIPALS, lambda listener: None, forgotten.append)
            for listener in listeners:
                listener("user-7")
            for _ in range(100):
                if forgotten:
                    break
                await asyncio.sleep(0.02)
            assert forgotten == ["user-7"]

            # A bulk import: its changes travel in a few messages, none lost.
            imported = [
                ThingFacts(f"bulk-{n}", "/root/", ThingState.ACTIVE, "", "", False, None, None)
                for n in range(300)
            ]
            for bulk in imported:
                a.thing_index.put(bulk)
            for _ in range(200):
                if b.thing_index.get("bulk-299") is not None:
                    break
                await asyncio.sleep(0.02)
            assert all(b.thing_index.get(bulk.id) == bulk for bulk in imported)
        finally:
            await a.stop()
            await b.stop()
            await db.dispose()

    asyncio.run(main())


def test_local_sockets_live_in_a_private_folder_with_a_short_enough_path(
    tmp_path, tmp_path_factory
):
    from meadowlark.cluster.wiring import local_socket_directory

    short = tmp_path_factory.mktemp("data")  # tmp_path can be too long under pytest-xdist
    assert local_socket_directory(short) == short.resolve() / "cluster"
    deep = tmp_path / ("d" * 120)
    chosen = local_socket_directory(deep)
    assert len(str(chosen / "0123456789ab.sock")) < 108
    assert chosen == local_socket_directory(deep)  # every worker of that data dir agrees

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)

    async def main() -> None:
        with pytest.raises(PermissionError):
            await LocalSignals(shared, "n1").start(lambda message: None)

    asyncio.run(main())


def test_a_device_that_moved_finds_the_requests_queued_by_its_old_node(db_url):
    from datetime import timedelta

    from meadowlark.cluster.queue import ClusterRequestQueue
    from meadowlark.server.operations import Operation, OperationKind, QueuedRequest
    from meadowlark.server.transport import DownlinkRequest, Method
    from meadowlark.store.devices import DeviceIds, SqlRequestQueue

    async def main() -> None:
        db = Database(db_url)
        registration = _registration(f"queued-{new_node_id()}", new_node_id())
        endpoint = registration.endpoint
        try:
            await _record_device(db, registration)
            old = SqlRequestQueue(db, DeviceIds(db))
            await old.load()
            sweeping = False
            index = SqlRequestQueue(db, DeviceIds(db))
            await index.load()  # the new node started before the request was queued
            new = ClusterRequestQueue(index, lambda: sweeping)
            now = datetime.now(UTC)
            request = QueuedRequest(
                id=new_node_id(),
                endpoint=endpoint,
                operation=Operation(
                    OperationKind.READ,
                    DownlinkRequest(Method.GET, ("3", "0", "0")),
                    (LwM2mPath(3, 0, 0),),
                ),
                created_at=now,
                expires_at=now + timedelta(milliseconds=300),
            )
            await old.enqueue(request)  # the old node queued it while it held the device
            assert not new.may_have_pending(endpoint)  # unknown to the new node's index
            new.moved_here(endpoint)
            assert new.may_have_pending(endpoint)
            assert [r.id for r in await new.pending(endpoint, datetime.now(UTC))] == [request.id]

            # Expiry is swept by the lease holder only.
            later = now + timedelta(seconds=1)
            assert await new.expire(later) == []
            sweeping = True
            assert [r.id for r in await new.expire(later)] == [request.id]
        finally:
            await db.dispose()

    asyncio.run(main())
