"""A lean raw-UDP CoAP load generator: many simulated LwM2M devices, one socket each.

Runs as a subprocess (``python -m bench.coap_load ...``) and reports JSON lines on
stdout, so the measuring process and the load share nothing but the loopback. Messages
are encoded by hand (a few bytes of header and options around pre-encoded payloads)
and the loop is a plain ``epoll`` over non-blocking sockets: no asyncio, no aiocoap on
the hot path, which keeps the generator's CPU small on a two-core machine where it
shares the processor with the server under test.

- ``register``: each device sends one confirmable Register (``POST /rd?ep=..``, the
  object links of a simulated LwM2M 1.1 device) from its own socket, at most
  ``window`` in flight; replies are matched by token (piggybacked or separate
  responses; separate ones are acknowledged), requests unanswered after ``timeout``
  seconds count as timeouts (no retransmission, which would blur the figure).
- ``notify``: the devices (optionally registered first) answer the observer's
  ``GET /3303/0/5700`` with Observe=0, then push notifications with the observation's
  token for ``duration`` seconds per phase, one phase per ``non``/``con`` line on stdin:
  NON ones paced at ``rate`` per second (open loop), or confirmable ones, at most one
  in flight per device (NSTART=1) and ``window`` in flight overall (closed loop: a
  notification goes out when an earlier one is ACKed).

Every loop is bounded in count and time. Source addresses are ``source_host`` (any
127.0.0.0/8 address, so several processes never reuse each other's (host, port) pairs
and tens of thousands of devices fit in the ephemeral port range).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import select
import socket
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence

CON, NON, ACK, RST = 0, 1, 2, 3
EMPTY, GET, POST = 0x00, 0x01, 0x02
CREATED, CONTENT = 0x41, 0x45
OBSERVE, LOCATION_PATH, URI_PATH, CONTENT_FORMAT, URI_QUERY, ACCEPT = 6, 8, 11, 12, 15, 17
LINK_FORMAT = 40
OBSERVED_PATH = ("3303", "0", "5700")

Option = tuple[int, bytes]


# --- wire format (RFC 7252 §3) --------------------------------------------------------------


def uint(value: int) -> bytes:
    """A CoAP uint option value: big-endian, no leading zero bytes (0 is empty)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _extended(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes((value - 13,))
    return 14, (value - 269).to_bytes(2, "big")


def encode_options(options: Sequence[Option], previous: int = 0) -> bytes:
    """Options in the given (ascending) order, deltas from ``previous``."""
    parts = []
    for number, value in options:
        delta, delta_ext = _extended(number - previous)
        length, length_ext = _extended(len(value))
        parts.append(bytes(((delta << 4) | length,)) + delta_ext + length_ext + value)
        previous = number
    return b"".join(parts)


def encode(
    mtype: int, code: int, mid: int, token: bytes, options: Sequence[Option] = (), payload=b""
) -> bytes:
    header = bytes((0x40 | (mtype << 4) | len(token), code)) + mid.to_bytes(2, "big") + token
    body = encode_options(sorted(options, key=lambda option: option[0]))
    return header + body + (b"\xff" + payload if payload else b"")


def decode(data: bytes) -> tuple[int, int, int, bytes, list[Option], bytes] | None:
    """(type, code, mid, token, options, payload), or None for a malformed datagram."""
    if len(data) < 4 or data[0] >> 6 != 1:
        return None
    mtype, tkl = (data[0] >> 4) & 3, data[0] & 0x0F
    code, mid = data[1], int.from_bytes(data[2:4], "big")
    position = 4 + tkl
    token = data[4:position]
    options: list[Option] = []
    number = 0
    size = len(data)
    while position < size:
        byte = data[position]
        position += 1
        if byte == 0xFF:
            return mtype, code, mid, token, options, data[position:]
        delta, length = byte >> 4, byte & 0x0F
        if delta == 15 or length == 15:
            return None
        if delta == 13:
            delta, position = data[position] + 13, position + 1
        elif delta == 14:
            delta, position = (
                int.from_bytes(data[position : position + 2], "big") + 269,
                position + 2,
            )
        if length == 13:
            length, position = data[position] + 13, position + 1
        elif length == 14:
            length, position = (
                int.from_bytes(data[position : position + 2], "big") + 269,
                position + 2,
            )
        number += delta
        options.append((number, data[position : position + length]))
        position += length
    return mtype, code, mid, token, options, b""


def empty(mtype: int, mid: int) -> bytes:
    return bytes((0x40 | (mtype << 4), EMPTY)) + mid.to_bytes(2, "big")


def registration_payload() -> bytes:
    """The Register payload of a simulated LwM2M 1.1 device (SenML CBOR preferred)."""
    from meadowlark.lwm2m.codec.link_format import encode_links
    from meadowlark.simulator.objects import DeviceObjects

    objects = DeviceObjects(
        "bench", "coap://127.0.0.1:5683", lifetime=86400, binding="U", lwm2m_version="1.1",
        live_clock=False,
    )  # fmt: skip
    return encode_links(objects.registration_links(112))


def sensor_payloads(content_format: int, count: int = 16) -> list[bytes]:
    """``count`` temperature readings of /3303/0/5700 encoded in ``content_format``."""
    from meadowlark.lwm2m.codec import registry
    from meadowlark.lwm2m.node import ResourceType, SingleResource
    from meadowlark.lwm2m.path import LwM2mPath
    from meadowlark.simulator.objects import models

    path = LwM2mPath(3303, 0, 5700)
    return [
        registry.encode(
            content_format, SingleResource(5700, ResourceType.FLOAT, 20.0 + i / 8), path, models()
        )
        for i in range(count)
    ]


def percentile(ordered: Sequence[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


# --- the devices -------------------------------------------------------------------------------


class Devices:
    """``count`` UDP sockets on ``source_host``, polled together with epoll."""

    def __init__(self, source_host: str, count: int) -> None:
        needed = count + 64
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < needed:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
        self.sockets: list[socket.socket] = []
        self.poller = select.epoll()
        self.by_fd: dict[int, int] = {}
        try:
            for index in range(count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setblocking(False)
                sock.bind((source_host, 0))
                self.sockets.append(sock)
                self.by_fd[sock.fileno()] = index
                self.poller.register(sock.fileno(), select.EPOLLIN)
        except OSError:
            self.close()
            raise
        self.mids = [random.randrange(0x10000) for _ in range(count)]  # noqa: S311
        # index -> (observer address, token, Content-Format option bytes, Observe sequence)
        self.observations: dict[int, list] = {}
        self.payloads: dict[int, list[bytes]] = {}
        self.observe_requests = 0

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.poller.close()

    def addresses(self) -> list[tuple[str, int]]:
        return [sock.getsockname()[:2] for sock in self.sockets]

    def next_mid(self, index: int) -> int:
        mid = self.mids[index] = (self.mids[index] + 1) & 0xFFFF
        return mid

    def poll(self, timeout: float, on_message) -> None:
        """Read one datagram from each ready socket and hand it to ``on_message``."""
        sockets = self.sockets
        for fd, _ in self.poller.poll(timeout):
            index = self.by_fd[fd]
            try:
                data, address = sockets[index].recvfrom(4096)
            except (BlockingIOError, InterruptedError, ConnectionRefusedError):
                continue
            message = decode(data)
            if message is not None:
                on_message(index, address, message)

    # --- Register ----------------------------------------------------------------------------

    def register(
        self,
        server: tuple[str, int],
        names: Sequence[str],
        *,
        window: int,
        timeout: float,
        max_seconds: float,
        lifetime: int = 86400,
    ) -> dict:
        """Register device i as ``names[i]``; returns counts, rate and latencies."""
        payload = registration_payload()
        messages = [
            encode(
                CON,
                POST,
                self.next_mid(i),
                i.to_bytes(4, "big"),
                [
                    (URI_PATH, b"rd"),
                    (CONTENT_FORMAT, uint(LINK_FORMAT)),
                    (URI_QUERY, f"ep={name}".encode()),
                    (URI_QUERY, f"lt={lifetime}".encode()),
                    (URI_QUERY, b"lwm2m=1.1"),
                    (URI_QUERY, b"b=U"),
                ],
                payload,
            )  # fmt: skip
            for i, name in enumerate(names)
        ]
        sockets = self.sockets
        inflight: dict[int, float] = {}  # device index -> sent at (insertion = send order)
        codes: Counter[str] = Counter()
        latencies: list[float] = []
        timeouts = separate = 0
        last_answer = 0.0

        def on_message(index: int, address: object, message: tuple) -> None:
            nonlocal separate, last_answer
            mtype, code, mid, token, _, _ = message
            if code == EMPTY:
                return  # empty ACK: a separate response follows
            if mtype == CON:
                sockets[index].sendto(empty(ACK, mid), address)
                separate += 1
            sent_at = inflight.pop(int.from_bytes(token, "big"), None) if len(token) == 4 else None
            if sent_at is None:
                return
            now = time.perf_counter()
            last_answer = now
            latencies.append(now - sent_at)
            codes[f"{code >> 5}.{code & 0x1F:02d}"] += 1

        started = time.perf_counter()
        deadline = started + max_seconds
        following = 0
        now = started
        while (following < len(messages) or inflight) and now < deadline:
            while len(inflight) < window and following < len(messages):
                sockets[following].sendto(messages[following], server)
                inflight[following] = time.perf_counter()
                following += 1
            self.poll(0.005, on_message)
            now = time.perf_counter()
            for index, sent_at in list(inflight.items())[:64]:
                if now - sent_at < timeout:
                    break
                del inflight[index]
                timeouts += 1
        ordered = sorted(latencies)
        created = codes.get("2.01", 0)
        elapsed = (last_answer or time.perf_counter()) - started
        return {
            "sent": following,
            "created": created,
            "codes": dict(codes),
            "timeouts": timeouts + len(inflight),
            "separate_responses": separate,
            "seconds": elapsed,
            "per_second": created / elapsed if elapsed > 0 else 0.0,
            "p50_ms": percentile(ordered, 0.5) * 1000,
            "p99_ms": percentile(ordered, 0.99) * 1000,
        }

    # --- Observe and notifications -----------------------------------------------------------

    def _answer_request(self, index: int, address: object, message: tuple) -> None:
        """Answer a GET of /3303/0/5700 (Observe=0 starts an observation, 1 ends it)."""
        mtype, code, mid, token, options, _ = message
        path = tuple(value.decode() for number, value in options if number == URI_PATH)
        observe = next((int.from_bytes(v, "big") for n, v in options if n == OBSERVE), None)
        accept = next((int.from_bytes(v, "big") for n, v in options if n == ACCEPT), 0)
        if code != GET or path != OBSERVED_PATH:
            reply_code, reply_options, payload = 0x84, [], b""  # 4.04
        else:
            if accept not in self.payloads:
                self.payloads[accept] = sensor_payloads(accept)
            payload = self.payloads[accept][0]
            reply_code, reply_options = CONTENT, [(CONTENT_FORMAT, uint(accept))]
            if observe == 0:
                self.observe_requests += 1
                self.observations[index] = [address, token, uint(accept), 1]
                reply_options.append((OBSERVE, uint(1)))
            elif observe == 1:
                self.observations.pop(index, None)
        if mtype == CON:
            reply = encode(ACK, reply_code, mid, token, reply_options, payload)
        else:
            reply = encode(NON, reply_code, self.next_mid(index), token, reply_options, payload)
        self.sockets[index].sendto(reply, address)

    def wait_for_observations(self, expected: int, max_seconds: float) -> int:
        """Answer requests until ``expected`` observations exist or time runs out."""
        deadline = time.perf_counter() + max_seconds

        def on_message(index: int, address: object, message: tuple) -> None:
            if 1 <= message[1] <= 31:
                self._answer_request(index, address, message)

        while len(self.observations) < expected and time.perf_counter() < deadline:
            self.poll(0.01, on_message)
        return len(self.observations)

    def _notification(self, index: int, mtype: int) -> tuple[bytes, int, object]:
        observation = self.observations[index]
        address, token, content_format, sequence = observation
        sequence = observation[3] = (sequence + 1) & 0xFFFFFF
        mid = self.next_mid(index)
        payloads = self.payloads[int.from_bytes(content_format, "big")]
        header = bytes((0x40 | (mtype << 4) | len(token), CONTENT)) + mid.to_bytes(2, "big")
        options = encode_options(
            [(OBSERVE, uint(sequence)), (CONTENT_FORMAT, content_format)]
        )  # fmt: skip
        data = header + token + options + b"\xff" + payloads[sequence % len(payloads)]
        return data, mid, address

    def notify(self, *, confirmable: bool, duration: float, rate: float, window: int) -> dict:
        """Push notifications for ``duration`` seconds (see the module docstring)."""
        order = deque(sorted(self.observations))
        sockets = self.sockets
        inflight: dict[tuple[int, int], float] = {}  # (device, mid) -> sent at
        counts: Counter[str] = Counter()
        ack_timeout = 2.0

        def on_message(index: int, address: object, message: tuple) -> None:
            mtype, code, mid, token, _, _ = message
            if 1 <= code <= 31:
                self._answer_request(index, address, message)
                return
            if mtype == ACK:
                if inflight.pop((index, mid), None) is not None:
                    counts["acked"] += 1
                    if index in self.observations:
                        order.append(index)
            elif mtype == RST:
                counts["reset"] += 1  # the observer dropped the observation
                inflight.pop((index, mid), None)
                self.observations.pop(index, None)

        started = time.perf_counter()
        end = started + duration
        now = started
        while now < end and (order or inflight):
            if confirmable:
                while len(inflight) < window and order:
                    index = order.popleft()
                    if index not in self.observations:
                        continue
                    data, mid, address = self._notification(index, CON)
                    sockets[index].sendto(data, address)
                    inflight[(index, mid)] = now
                    counts["sent"] += 1
                self.poll(0.002, on_message)
                now = time.perf_counter()
                for key, sent_at in list(inflight.items())[:64]:
                    if now - sent_at < ack_timeout:
                        break
                    del inflight[key]
                    counts["timeouts"] += 1
                    if key[0] in self.observations:
                        order.append(key[0])
            else:
                due = int((now - started) * rate) - counts["sent"]
                for _ in range(min(due, 512)):
                    if not order:
                        break
                    index = order[0]
                    if index not in self.observations:
                        order.popleft()
                        continue
                    order.rotate(-1)
                    data, _, address = self._notification(index, NON)
                    sockets[index].sendto(data, address)
                    counts["sent"] += 1
                self.poll(0 if due > 0 else 0.001, on_message)
                now = time.perf_counter()
        elapsed = time.perf_counter() - started
        return {**counts, "seconds": elapsed, "offered_per_second": counts["sent"] / elapsed}


# --- command line --------------------------------------------------------------------------------


def _emit(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _next_command(devices: Devices, max_seconds: float) -> str:
    """The next stdin line; meanwhile the server's requests (e.g. reads after Register)
    are answered and other late datagrams dropped."""
    deadline = time.perf_counter() + max_seconds

    def on_message(index: int, address: object, message: tuple) -> None:
        if 1 <= message[1] <= 31:
            devices._answer_request(index, address, message)

    while time.perf_counter() < deadline:
        ready, _, _ = select.select([sys.stdin], [], [], 0.02)
        if ready:
            return sys.stdin.readline().strip()
        devices.poll(0, on_message)
    return "quit"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("register", "notify"))
    parser.add_argument("--server", type=_address, help="host:port to register with")
    parser.add_argument("--source", default="127.0.0.1", help="local address of the devices")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--first", type=int, default=0, help="index of the first device name")
    parser.add_argument("--window", type=int, default=64, help="Registers in flight")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per Register")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="cap per phase")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per notify phase")
    parser.add_argument("--rate", type=float, default=20000.0, help="NON notifications/s")
    parser.add_argument("--con-window", type=int, default=64, help="CON notifications in flight")
    args = parser.parse_args(argv)

    devices = Devices(args.source, args.devices)
    try:
        if args.server is not None:
            names = [f"{args.prefix}-{args.first + i:06d}" for i in range(args.devices)]
            result = devices.register(
                args.server, names, window=args.window, timeout=args.timeout,
                max_seconds=args.max_seconds,
            )  # fmt: skip
            _emit(event="registered", pid=os.getpid(), **result)
        if args.mode == "register":
            return
        _emit(event="ready", addresses=devices.addresses())
        observed = devices.wait_for_observations(args.devices, args.max_seconds)
        _emit(event="observing", observations=observed)
        # Then one phase per command line on stdin ("non" or "con"), until "quit" or EOF.
        while observed:
            command = _next_command(devices, args.max_seconds)
            if command not in ("non", "con"):
                break
            _emit(event="start", phase=command)
            result = devices.notify(
                confirmable=command == "con", duration=args.duration, rate=args.rate,
                window=args.con_window,
            )  # fmt: skip
            _emit(event="end", phase=command, **result)
    finally:
        devices.close()


if __name__ == "__main__":
    main()
