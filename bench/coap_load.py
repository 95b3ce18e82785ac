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
  seconds count as timeouts (no retransmission, which would blur the figure). Requests
  of the server's (registration reads) get 4.04 at once.
- ``notify``: the devices (optionally registered first) answer the observer's
  ``GET /3303/0/5700`` with Observe=0, then push notifications with the observation's
  token for ``duration`` seconds per phase, one phase per ``non``/``con`` line on stdin:
  NON ones paced at ``rate`` per second (open loop), or confirmable ones, at most one
  in flight per device (NSTART=1) and ``window`` in flight overall (closed loop: a
  notification goes out when an earlier one is ACKed).

- ``storm``: every device registers once, all starting within ``ramp`` seconds after a
  ``go`` line on stdin (so several generator processes start together), each as a real
  CoAP client would: retransmission of an unanswered confirmable request with RFC 7252
  timing (ACK_TIMEOUT 2 s, ACK_RANDOM_FACTOR 1.5, doubling, MAX_RETRANSMIT 4, then a
  new exchange), a 5.03 answered by retrying after its Max-Age (RFC 7252 §5.9.3.4,
  60 s without one), until every device has its 2.01 or ``max_seconds`` pass.

Every loop is bounded in count and time. Source addresses are ``source_host`` (any
127.0.0.0/8 address, so several processes never reuse each other's (host, port) pairs
and tens of thousands of devices fit in the ephemeral port range).
"""

from __future__ import annotations

import argparse
import heapq
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
CREATED, CONTENT, NOT_FOUND, SERVICE_UNAVAILABLE = 0x41, 0x45, 0x84, 0xA3
OBSERVE, LOCATION_PATH, URI_PATH, CONTENT_FORMAT, MAX_AGE, URI_QUERY, ACCEPT = (
    6, 8, 11, 12, 14, 15, 17
)  # fmt: skip
ACK_TIMEOUT, ACK_RANDOM_FACTOR, MAX_RETRANSMIT = 2.0, 1.5, 4
"""RFC 7252 §4.8 transmission parameters."""
DEFAULT_MAX_AGE = 60
SEPARATE_RESPONSE_WAIT = 30.0
"""Seconds a device waits for the separate response after an empty ACK, then asks again."""
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

    @staticmethod
    def register_options(name: str, lifetime: int) -> list[Option]:
        return [
            (URI_PATH, b"rd"),
            (CONTENT_FORMAT, uint(LINK_FORMAT)),
            (URI_QUERY, f"ep={name}".encode()),
            (URI_QUERY, f"lt={lifetime}".encode()),
            (URI_QUERY, b"lwm2m=1.1"),
            (URI_QUERY, b"b=U"),
        ]

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
                self.register_options(name, lifetime),
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
            if code <= 31:  # a request of the server's (e.g. its registration reads)
                if mtype == CON:
                    sockets[index].sendto(encode(ACK, NOT_FOUND, mid, token), address)
                return
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

    # --- registration storm ------------------------------------------------------------------

    def storm(
        self,
        server: tuple[str, int],
        names: Sequence[str],
        *,
        ramp: float,
        max_seconds: float,
        lifetime: int = 86400,
    ) -> dict:
        """Register every device as a CoAP client would in a storm (module docstring)."""
        count = len(names)
        payload = registration_payload()
        # Per device: token + options + payload after a 4-byte header holding the MID.
        bodies = [
            encode(CON, POST, 0, i.to_bytes(4, "big"), self.register_options(name, lifetime),
                   payload)[4:]
            for i, name in enumerate(names)
        ]  # fmt: skip
        first_byte = bytes((0x40 | (CON << 4) | 4, POST))
        sockets, mids = self.sockets, self.mids
        generation = [0] * count  # bumped when a device's pending timer becomes stale
        transmissions = [0] * count  # in the current exchange
        timeouts = [0.0] * count
        acked_at = [0.0] * count  # empty ACK received: a separate response follows
        first_sent = [0.0] * count
        state = bytearray(count)  # 0 registering, 1 created, 2 refused for good
        timers: list[tuple[float, int, int]] = []  # (due, device, generation)
        counts: Counter[str] = Counter()
        codes: Counter[str] = Counter()
        latencies: list[float] = []
        last_created = 0.0
        finished = 0
        rng = random.Random()  # noqa: S311 - timing jitter, not security

        def new_exchange(index: int, now: float) -> None:
            mid = self.next_mid(index)
            transmissions[index] = 1
            timeouts[index] = rng.uniform(ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR)
            acked_at[index] = 0.0
            if not first_sent[index]:
                first_sent[index] = now
            sockets[index].sendto(first_byte + mid.to_bytes(2, "big") + bodies[index], server)
            counts["sent"] += 1
            heapq.heappush(timers, (now + timeouts[index], index, generation[index]))

        def on_timer(index: int, now: float) -> None:
            if acked_at[index]:
                if now - acked_at[index] >= SEPARATE_RESPONSE_WAIT:
                    counts["new_exchanges"] += 1
                    new_exchange(index, now)
                else:
                    due = acked_at[index] + SEPARATE_RESPONSE_WAIT
                    heapq.heappush(timers, (due, index, generation[index]))
            elif transmissions[index] == 0:  # a retry after 5.03 is due
                new_exchange(index, now)
            elif transmissions[index] <= MAX_RETRANSMIT:
                transmissions[index] += 1
                timeouts[index] *= 2
                message = first_byte + mids[index].to_bytes(2, "big") + bodies[index]
                sockets[index].sendto(message, server)
                counts["retransmissions"] += 1
                heapq.heappush(timers, (now + timeouts[index], index, generation[index]))
            else:  # the exchange failed (no answer in ~93 s): start again
                counts["new_exchanges"] += 1
                new_exchange(index, now)

        def on_message(index: int, address: object, message: tuple) -> None:
            nonlocal last_created, finished
            mtype, code, mid, token, options, _ = message
            if state[index]:
                if mtype == CON:
                    sockets[index].sendto(empty(ACK, mid), address)
                return
            if 1 <= code <= 31:  # a request of the server's (e.g. its registration reads)
                if mtype == CON:
                    sockets[index].sendto(encode(ACK, NOT_FOUND, mid, token), address)
                return
            if mtype == CON:  # a separate response: acknowledge it
                sockets[index].sendto(empty(ACK, mid), address)
                counts["separate_responses"] += 1
            elif mid != mids[index]:
                return  # the answer to an exchange this device gave up
            if code == EMPTY:
                if mtype == ACK:
                    acked_at[index] = time.perf_counter()
                elif mtype == RST:
                    counts["resets"] += 1
                    transmissions[index] = MAX_RETRANSMIT  # the next timer starts again
                return
            now = time.perf_counter()
            generation[index] += 1  # whatever timer is pending is stale now
            if code == CREATED:
                state[index] = 1
                finished += 1
                last_created = now
                latencies.append(now - first_sent[index])
            elif code == SERVICE_UNAVAILABLE:
                counts["service_unavailable"] += 1
                max_age = next(
                    (int.from_bytes(v, "big") for n, v in options if n == MAX_AGE),
                    DEFAULT_MAX_AGE,
                )
                transmissions[index] = 0
                heapq.heappush(timers, (now + max_age, index, generation[index]))
            else:
                state[index] = 2
                finished += 1
                codes[f"{code >> 5}.{code & 0x1F:02d}"] += 1

        started = time.perf_counter()
        for index in range(count):
            heapq.heappush(timers, (started + ramp * index / count, index, 0))
        deadline = started + max_seconds
        now = started
        while now < deadline:
            while timers and timers[0][0] <= now:
                _, index, timer_generation = heapq.heappop(timers)
                if state[index] == 0 and timer_generation == generation[index]:
                    on_timer(index, now)
            wait = min(0.05, max(0.0, timers[0][0] - now)) if timers else 0.05
            self.poll(wait, on_message)
            now = time.perf_counter()
            if finished == count:
                break
        created = state.count(1)
        ordered = sorted(latencies)
        elapsed = (last_created or now) - started
        return {
            "devices": count,
            "created": created,
            "refused": state.count(2),
            "lost": count - created,
            "codes": dict(codes),
            **counts,
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
            reply_code, reply_options, payload = NOT_FOUND, [], b""
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
    parser.add_argument("mode", choices=("register", "notify", "storm"))
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
    parser.add_argument("--ramp", type=float, default=5.0, help="storm: seconds to start all")
    args = parser.parse_args(argv)

    devices = Devices(args.source, args.devices)
    try:
        if args.mode == "storm":
            names = [f"{args.prefix}-{args.first + i:06d}" for i in range(args.devices)]
            _emit(event="ready", pid=os.getpid())
            if _next_command(devices, args.max_seconds) != "go":
                return
            result = devices.storm(
                args.server, names, ramp=args.ramp, max_seconds=args.max_seconds
            )  # fmt: skip
            _emit(event="stormed", pid=os.getpid(), **result)
            return
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
