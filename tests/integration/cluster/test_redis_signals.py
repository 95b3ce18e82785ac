"""The Redis/Valkey carrier between two nodes, against a real ``redis-server`` started on
a free loopback port. Skipped when the ``redis`` client (the optional extra) or the
server (Debian: ``apt-get install redis-server``) is missing."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time

import pytest

from meadowlark.cluster.node import CallFailed, ClusterNode, new_node_id

pytest.importorskip("redis", reason="the redis extra is not installed")
REDIS_SERVER = shutil.which("redis-server") or shutil.which("valkey-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="no redis-server on PATH")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(  # noqa: S603 - a server binary found on PATH
        [str(REDIS_SERVER), "--bind", "127.0.0.1", "--port", str(port), "--save", ""],
        cwd=tmp_path_factory.mktemp("redis"),
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def test_calls_and_notices_over_redis_pub_sub(redis_url):
    from meadowlark.cluster.signals import RedisSignals

    async def main() -> None:
        a = ClusterNode(RedisSignals(redis_url, new_node_id()))
        b = ClusterNode(RedisSignals(redis_url, new_node_id()))
        seen: list[dict] = []
        b.on("hello", seen.append)

        async def echo(params: dict) -> dict:
            return {"echo": params["text"]}

        b.serve("echo", echo)
        await a.start()
        await b.start()
        try:
            big = "y" * 100_000  # pub/sub has no NOTIFY-like size limit
            assert await a.call(b.node_id, "echo", {"text": big}, timeout=5) == {"echo": big}
            with pytest.raises(CallFailed):
                await a.call(new_node_id(), "echo", {"text": "?"}, timeout=0.3)
            await a.publish("hello", {"n": 1})
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.02)
            assert seen == [{"n": 1}]
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())
