# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""MQTT event handlers against a real Mosquitto broker (Debian's ``mosquitto``, started
here on a free loopback port): each device's telemetry arrives on its own topic, signed."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lwm2m_harness import devices, eventually, server  # noqa: F401 - fixtures
from meadowlark.core.tasks.callbacks import signature

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
HANDLERS = "/api/coiotedm/v3/deviceEvents/handler"
SENSOR = "/3303/0/5700"

pytestmark = pytest.mark.skipif(
    not Path(MOSQUITTO).exists(),
    reason="Mosquitto is not installed (apt-get install mosquitto; .ci/run does)",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def broker(tmp_path_factory) -> Iterator[int]:
    port = _free_port()
    folder = tmp_path_factory.mktemp("mosquitto")
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"log_dest file {folder / 'mosquitto.log'}\n"
    )
    process = subprocess.Popen(  # noqa: S603 - a fixed binary and our own config
        [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"mosquitto did not start: {process.stderr.read()!r}") from None
            time.sleep(0.05)
    yield port
    process.terminate()
    process.wait(10)


class Subscriber:
    """An MQTT 5 client on the server's loop that keeps every message of ``topic``."""

    def __init__(self, server, port: int, topic: str) -> None:
        self.messages: list[Any] = []
        self._server = server
        self._port = port
        self._topic = topic
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import aiomqtt

        self._client = aiomqtt.Client("127.0.0.1", self._port, protocol=aiomqtt.ProtocolVersion.V5)
        await self._client.__aenter__()
        await self._client.subscribe(self._topic, qos=1)
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def _collect(self) -> None:
        async for message in self._client.messages:
            self.messages.append(message)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._client.__aexit__(None, None, None)


def test_mqtt_broker_receives_each_devices_telemetry_on_its_topic(server, devices, broker):
    domain = "/root/mqttfleet/"
    endpoint = "mqtt-dev-1"
    with server.admin() as http:
        assert http.post("/api/coiotedm/v3/domains", json={"id": domain}).is_success
        created = http.post(
            "/api/coiotedm/v3/devices",
            json={"properties": {"endpointName": endpoint}, "domain": domain},
        )
        assert created.status_code == 201, created.text
        config = {"uri": f"mqtt://127.0.0.1:{broker}", "topicPrefix": "fleet", "qos": 1}
        tested = http.post(
            f"{HANDLERS}/test/mqtt",
            params={"domain": domain},
            json={
                "name": "m",
                "filter": {"type": "telemetry", "lwm2mUrls": [SENSOR]},
                "connectionConfig": config,
            },
        )
        assert tested.json() == {"successful": True, "message": "delivered"}
        response = http.post(
            f"{HANDLERS}/mqtt",
            params={"domain": domain},
            json={
                "name": "broker",
                "filter": {"type": "telemetry", "lwm2mUrls": [SENSOR]},
                "connectionConfig": config,
            },
        )
        assert response.status_code == 201, response.text
        secret = response.headers["x-meadowlark-signing-secret"]
        handler_id = response.json()

    subscriber = Subscriber(server, broker, f"fleet/root/mqttfleet/{endpoint}")
    server.call(subscriber.start())
    try:
        device = devices(endpoint, lwm2m_version="1.1")
        values = [10.0, 10.5, 11.0, 11.5]

        async def send() -> None:
            for value in values:
                device.set_temperature(value)
                assert (await device.send([SENSOR])).is_successful()

        server.call(send())
        eventually(lambda: len(subscriber.messages) >= len(values), timeout=20)
    finally:
        server.call(subscriber.stop())
    received = subscriber.messages[: len(values)]
    assert [json.loads(m.payload)["value"] for m in received] == values
    for message in received:
        assert message.topic.value == f"fleet/root/mqttfleet/{endpoint}"
        properties = dict(message.properties.UserProperty)
        expected = signature(secret, properties["X-Meadowlark-Timestamp"], message.payload)
        assert properties["X-Meadowlark-Signature"] == expected
    with server.admin() as http:  # its connection to the broker is closed with it
        assert http.delete(f"{HANDLERS}/{handler_id}").status_code == 204


def test_an_unreachable_broker_fails_the_test_route(server):
    with server.admin() as http:
        result = http.post(
            f"{HANDLERS}/test/mqtt",
            json={
                "name": "m",
                "filter": {"type": "telemetry", "lwm2mUrls": [SENSOR]},
                "connectionConfig": {"uri": f"mqtt://127.0.0.1:{_free_port()}"},
            },
        ).json()
    assert result["successful"] is False and result["message"].startswith("mqtt:")
