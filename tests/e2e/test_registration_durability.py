"""A ``meadowlark serve`` process killed with SIGKILL in the middle of a registration
storm has stored every Register and Update it acknowledged (group commit: the answer
leaves only after the batch holding it is committed)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
from aiocoap import ACK, CON, POST, Message
from aiocoap.numbers.codes import Code

DEVICES = 2000
WINDOW = 32
"""Registers in flight: the server is killed with as many unanswered."""
KILL_AFTER = 300
UPDATES = 50
"""Acknowledged Registers and Updates after which the server is killed."""
OBJECTS = b"</1/0>,</3/0>,</3303/0>"


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


def _serve(data_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    http_port, coap_port = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEADOWLARK_")}
    env.update(
        {
            "MEADOWLARK_HTTP": f"127.0.0.1:{http_port}",
            "MEADOWLARK_COAP": f"127.0.0.1:{coap_port}",
            "MEADOWLARK_COAPS": "127.0.0.1:0",  # DTLS on a free port, not 5684
            "MEADOWLARK_COAP_TCP": "off",  # no CoAP over TCP/TLS here
            "MEADOWLARK_COAP_TLS": "off",
            "MEADOWLARK_BOOTSTRAP": "off",
            "MEADOWLARK_BOOTSTRAP_DTLS": "off",
            "MEADOWLARK_DATA_DIR": str(data_dir),
            "MEADOWLARK_ADMIN_PASSWORD": "Durable-Admin-Pa55word!",
            "MEADOWLARK_LOG_LEVEL": "warning",
            "MEADOWLARK_LWM2M__MAX_REGISTRATIONS_PER_ADDRESS_PER_MINUTE": "100000",
        }
    )
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and entry point
        [sys.executable, "-m", "meadowlark.cli.main", "serve"], env=env, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, (data_dir / "server.log").read_text(errors="replace")
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/ready", timeout=2).status_code == 200:
                return process, coap_port
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server not ready in 60 s"
        time.sleep(0.1)


def _register(number: int) -> bytes:
    message = Message(
        code=POST,
        uri_path=("rd",),
        uri_query=(f"ep=durable-{number:04d}", "lt=600", "lwm2m=1.1", "b=U"),
        content_format=40,
        payload=OBJECTS,
    )
    message.mtype, message.mid, message.token = CON, number, number.to_bytes(2, "big")
    return message.encode()


def _update(number: int, location: tuple[str, ...]) -> bytes:
    message = Message(code=POST, uri_path=location, uri_query=("lt=900",))
    message.mtype, message.mid = CON, 0x8000 | number
    message.token = message.mid.to_bytes(2, "big")
    return message.encode()


def test_acknowledged_registrations_survive_sigkill(tmp_path):
    process, coap_port = _serve(tmp_path)
    server = ("127.0.0.1", coap_port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.2)
    registered: dict[str, str] = {}  # endpoint -> registration id, once acknowledged with 2.01
    updated: set[str] = set()  # endpoints whose Update was acknowledged with 2.04
    try:
        sent = WINDOW
        for number in range(WINDOW):
            sock.sendto(_register(number), server)
        deadline = time.monotonic() + 60
        while (len(registered) < KILL_AFTER or len(updated) < UPDATES) and sent < DEVICES:
            assert time.monotonic() < deadline, f"{len(registered)} registered in 60 s"
            try:
                data, _ = sock.recvfrom(2048)
            except TimeoutError:
                continue
            answer = Message.decode(data)
            if answer.code == Code.EMPTY or answer.code.is_request():
                continue
            if answer.mtype == CON:  # a separate response: acknowledge it
                ack = Message(code=Code.EMPTY)
                ack.mtype, ack.mid = ACK, answer.mid
                sock.sendto(ack.encode(), server)
            number = int.from_bytes(answer.token, "big")
            if answer.code == Code.CREATED:
                location = tuple(answer.opt.location_path)
                registered[f"durable-{number:04d}"] = location[-1]
                sock.sendto(_update(number, location), server)
                sock.sendto(_register(sent), server)  # keep the window full
                sent += 1
            elif answer.code == Code.CHANGED:
                updated.add(f"durable-{number & 0x7FFF:04d}")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        sock.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert len(registered) >= KILL_AFTER

    with sqlite3.connect(tmp_path / "meadowlark.db") as database:
        rows = {
            endpoint: (registration_id, lifetime)
            for endpoint, registration_id, lifetime in database.execute(
                "SELECT endpoint_name, registration_id, lifetime FROM devices"
            )
        }
    lost = [
        endpoint for endpoint, rid in registered.items() if rows.get(endpoint, (None,))[0] != rid
    ]
    assert lost == []
    assert updated and all(rows[endpoint][1] == 900 for endpoint in updated)
