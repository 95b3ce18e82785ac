"""Messages between the nodes of one deployment, over engines it already runs.

A node is one ``meadowlark serve`` worker process. Each has an id and receives the
messages sent to it and those broadcast to all. Three carriers, one interface:

- ``PostgresSignals``: LISTEN/NOTIFY on the PostgreSQL that is the system of record.
  A body too large for a NOTIFY payload goes through ``cluster_messages`` (the
  notification carries its row id).
- ``RedisSignals``: Redis or Valkey pub/sub (``MEADOWLARK_CLUSTER__REDIS_URL``).
- ``LocalSignals``: Unix-domain sockets in the data dir, for the workers of one host on
  the embedded SQLite store (a connection per message, a JSON line each).

Messages are JSON objects; a carrier adds ``from`` (the sender's node id). Delivery is
at most once: a node that is down misses what was sent meanwhile, and callers treat a
missing answer as a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import structlog
from sqlalchemy import delete, insert, select, text
from sqlalchemy.engine import make_url

from meadowlark.store.cluster_models import ClusterMessage
from meadowlark.store.db import Database

_log = structlog.get_logger("meadowlark.cluster")

Message = dict[str, Any]
Receiver = Callable[[Message], None]
"""Called on the event loop for each message that arrives (must not block)."""

ALL = "*"
"""The address of a broadcast."""


class Signals(Protocol):
    node_id: str

    async def start(self, receiver: Receiver) -> None:
        """Listen; every message for this node or for all reaches ``receiver``."""

    async def send(self, to: str, message: Message) -> None:
        """To node ``to``, or to every other node when ``to`` is ``ALL``."""

    async def stop(self) -> None: ...


def _encode(sender: str, to: str, message: Message) -> str:
    return json.dumps({**message, "from": sender, "to": to}, separators=(",", ":"))


class PostgresSignals:
    """LISTEN/NOTIFY: one listening connection per node, notifications sent through the
    store's engine. Channels: ``meadowlark_all`` and ``meadowlark_<node id>``."""

    MAX_PAYLOAD = 7000
    """NOTIFY payloads must stay under 8000 bytes; larger bodies go through the table."""
    RECONNECT_DELAY = 1.0

    def __init__(self, db: Database, node_id: str) -> None:
        self.node_id = node_id
        self._db = db
        self._conninfo = (
            make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._fetches: set[asyncio.Task[None]] = set()

    @staticmethod
    def channel(node_id: str) -> str:
        return "meadowlark_all" if node_id == ALL else f"meadowlark_{node_id}"

    async def start(self, receiver: Receiver) -> None:
        self._listener = asyncio.get_running_loop().create_task(
            self._listen(receiver), name="cluster-listen"
        )
        await self._listening.wait()

    async def _listen(self, receiver: Receiver) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as connection:
                    for node in (ALL, self.node_id):
                        await connection.execute(f'LISTEN "{self.channel(node)}"')
                    self._listening.set()
                    async for notify in connection.notifies():
                        self._received(notify.payload, receiver)
            except psycopg.Error as exc:
                _log.warning("cluster_listen_lost", error=str(exc))
                await asyncio.sleep(self.RECONNECT_DELAY)

    def _received(self, payload: str, receiver: Receiver) -> None:
        message = json.loads(payload)
        if message.get("from") == self.node_id:
            return
        reference = message.get("ref")
        if reference is None:
            receiver(message)
            return
        task = asyncio.get_running_loop().create_task(self._fetch(reference, receiver))
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)

    async def _fetch(self, reference: str, receiver: Receiver) -> None:
        """Read a large body; one sent to this node alone is deleted once read (those
        broadcast to all stay for ``sweep`` to remove)."""
        async with self._db.transaction() as session:
            body = await session.scalar(
                select(ClusterMessage.body).where(ClusterMessage.id == reference)
            )
            if body is None:
                return
            message = json.loads(body)
            if message.get("to") != ALL:
                await session.execute(delete(ClusterMessage).where(ClusterMessage.id == reference))
        receiver(message)

    async def send(self, to: str, message: Message) -> None:
        payload = _encode(self.node_id, to, message)
        async with self._db.transaction() as session:
            if len(payload.encode()) > self.MAX_PAYLOAD:
                reference = uuid.uuid4().hex
                await session.execute(insert(ClusterMessage).values(id=reference, body=payload))
                payload = json.dumps({"from": self.node_id, "to": to, "ref": reference})
            await session.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": self.channel(to), "payload": payload},
            )

    async def stop(self) -> None:
        tasks = [task for task in (self._listener, *self._fetches) if task is not None]
        self._listener = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class RedisSignals:
    """Redis/Valkey pub/sub: channels ``meadowlark:all`` and ``meadowlark:<node id>``."""

    def __init__(self, url: str, node_id: str) -> None:
        import redis.asyncio

        self.node_id = node_id
        self._client = redis.asyncio.from_url(url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._reader: asyncio.Task[None] | None = None

    @staticmethod
    def channel(node_id: str) -> str:
        return "meadowlark:all" if node_id == ALL else f"meadowlark:{node_id}"

    async def start(self, receiver: Receiver) -> None:
        await self._pubsub.subscribe(self.channel(ALL), self.channel(self.node_id))
        self._reader = asyncio.get_running_loop().create_task(
            self._read(receiver), name="cluster-redis"
        )

    async def _read(self, receiver: Receiver) -> None:
        async for item in self._pubsub.listen():
            if item.get("type") != "message":
                continue
            message = json.loads(item["data"])
            if message.get("from") != self.node_id:
                receiver(message)

    async def send(self, to: str, message: Message) -> None:
        await self._client.publish(self.channel(to), _encode(self.node_id, to, message))

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        await self._pubsub.aclose()
        await self._client.aclose()


class LocalSignals:
    """The workers of one host: each listens on ``<directory>/<node id>.sock``; a
    broadcast goes to every socket there. A socket nobody listens on any more (its
    worker was killed) is removed by the first sender that is refused."""

    def __init__(self, directory: Path, node_id: str) -> None:
        self.node_id = node_id
        self._directory = directory
        self._path = directory / f"{node_id}.sock"
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, receiver: Receiver) -> None:
        _private_directory(self._directory)
        _remove(self._path)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._connections.add(task)
            try:
                while line := await reader.readline():
                    receiver(json.loads(line))
            except (ConnectionError, ValueError) as exc:
                _log.warning("cluster_message_dropped", error=str(exc))
            finally:
                self._connections.discard(task)
                writer.close()

        self._server = await asyncio.start_unix_server(
            serve, path=str(self._path), limit=64 * 1024 * 1024
        )

    async def send(self, to: str, message: Message) -> None:
        line = (_encode(self.node_id, to, message) + "\n").encode()
        if to != ALL:
            await self._deliver(self._directory / f"{to}.sock", line)
            return
        peers = [path for path in _sockets(self._directory) if path != self._path]
        await asyncio.gather(*(self._deliver(path, line) for path in peers))

    async def _deliver(self, path: Path, line: bytes) -> None:
        try:
            _, writer = await asyncio.open_unix_connection(str(path))
        except ConnectionRefusedError:
            _remove(path)
            return
        except FileNotFoundError:
            return
        try:
            writer.write(line)
            await writer.drain()
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._connections):
            task.cancel()
        _remove(self._path)


def _private_directory(directory: Path) -> None:
    """Create ``directory`` for this user alone, or check that it is: whoever can put a
    socket there could send this node requests."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = os.lstat(directory)
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.getuid() or status.st_mode & 0o022:
        raise PermissionError(
            f"{directory} must be a folder of this user that others cannot write to"
        )


def _sockets(directory: Path) -> list[Path]:
    return list(directory.glob("*.sock"))


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
