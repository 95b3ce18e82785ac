"""LwM2M server throughput and memory, against bare aiocoap processes in the same run.

1. Registrations per second absorbed: devices (one UDP socket each, from the raw-UDP
   generator in ``bench.coap_load``) send Register with at most ``window`` in flight, to
   our server (a ``Runtime`` with SQLite in a temporary folder, wired to ``CoapServer``
   like ``meadowlark serve``) and to a bare aiocoap ``rd`` resource that only answers
   2.01 Created.
2. Notifications per second absorbed with values persisted, by ``meadowlark serve`` as
   a process against a bare aiocoap observer: ``bench.notifications`` (NON and
   confirmable phases, devices observed through the REST API).
3. Resident memory per registered device: VmRSS growth of each server from after a
   warm-up to ``registrations`` and ``max_devices`` registered devices (one socket per
   device, from several generator processes with distinct 127.0.0.x source addresses).

Servers and generators are subprocesses with bounded lifetimes; they exit when this
process closes their stdin.
"""

from __future__ import annotations

import json
import math
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.common import free_port, python, repo_root

ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105 - a throwaway local server
WARM_UP_DEVICES = 200


# --- subprocesses speaking JSON lines --------------------------------------------------------


class JsonProcess:
    """A subprocess that writes one JSON object per stdout line (and may read commands)."""

    def __init__(self, command: list[str], stderr: IO[bytes], name: str) -> None:
        self.name = name
        self._stderr = stderr
        # The checkout's own code, whatever the interpreter's installed copy points at.
        source = os.pathsep.join(
            filter(None, [str(repo_root() / "src"), os.environ.get("PYTHONPATH")])
        )
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            command,
            cwd=repo_root(),
            env={**os.environ, "PYTHONPATH": source},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        stdout = self.process.stdout
        assert stdout is not None
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: no answer within {timeout:g} s")
            ready, _, _ = select.select([stdout], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(stdout.fileno(), 1 << 16)
                if not chunk:
                    raise RuntimeError(f"{self.name} exited: {self._tail()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message = json.loads(line)
        if "error" in message:
            raise RuntimeError(f"{self.name}: {message['error']}")
        return message

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        message = self.read(timeout)
        if message.get("event") != event:
            raise RuntimeError(f"{self.name}: expected {event!r}, got {message}")
        return message

    def call(self, timeout: float = 30.0, **command: object) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        self.process.stdin.flush()
        return self.read(timeout)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for {self.name}")

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _tail(self) -> str:
        self._stderr.flush()
        try:
            return Path(self._stderr.name).read_text(errors="replace")[-2000:]
        except (AttributeError, OSError):
            return "(no stderr)"


@contextmanager
def started(stack: ExitStack, command: list[str], name: str, tmp: Path) -> Iterator[JsonProcess]:
    stderr = stack.enter_context((tmp / f"{name}.stderr").open("wb"))
    process = JsonProcess(command, stderr, name)
    try:
        yield process
    finally:
        process.stop()


def our_server(stack: ExitStack, tmp: Path, name: str, log_level: str) -> tuple[JsonProcess, int]:
    port = free_port(socket.SOCK_DGRAM)
    data_dir = tmp / f"{name}-data"
    command = [python(), "-m", "bench.lwm2m", "serve", str(port), str(data_dir), log_level]
    server = stack.enter_context(started(stack, command, name, tmp))
    server.expect("ready", timeout=120)
    return server, port


def bare_process(stack: ExitStack, tmp: Path, mode: str, name: str) -> tuple[JsonProcess, int]:
    port = free_port(socket.SOCK_DGRAM)
    command = [python(), "-m", "bench.bare_coap", mode, str(port)]
    server = stack.enter_context(started(stack, command, name, tmp))
    server.expect("ready", timeout=60)
    return server, port


def generator(stack: ExitStack, tmp: Path, name: str, mode: str, *options: object) -> JsonProcess:
    command = [python(), "-m", "bench.coap_load", mode, *(str(option) for option in options)]
    return stack.enter_context(started(stack, command, name, tmp))


# --- 1 and 3: registrations and memory --------------------------------------------------------


@dataclass
class RegistrationRun:
    name: str
    first_batch: dict[str, Any] = field(default_factory=dict)
    later_batches: list[dict[str, Any]] = field(default_factory=list)
    rss_before_kib: int = 0
    rss_at: dict[int, int] = field(default_factory=dict)
    registered: int = 0

    def kib_per_device(self, devices: int) -> float:
        return (self.rss_at[devices] - self.rss_before_kib) / devices

    @property
    def later_per_second(self) -> float:
        created = sum(batch["created"] for batch in self.later_batches)
        seconds = sum(batch["seconds"] for batch in self.later_batches)
        return created / seconds if seconds else 0.0

    @property
    def failures(self) -> int:
        batches = [self.first_batch, *self.later_batches]
        return sum(batch["sent"] - batch["created"] for batch in batches)


def _register_batch(
    stack: ExitStack, tmp: Path, server_port: int, source: str, prefix: str, first: int,
    count: int, window: int, max_seconds: float,
) -> dict[str, Any]:  # fmt: skip
    with ExitStack() as batch_stack:
        load = generator(
            batch_stack, tmp, f"register-{prefix}-{first}", "register",
            "--server", f"127.0.0.1:{server_port}", "--source", source, "--devices", count,
            "--prefix", prefix, "--first", first, "--window", window,
            "--max-seconds", max_seconds,
        )  # fmt: skip
        return load.expect("registered", timeout=max_seconds + 60)


def measure_registrations(
    stack: ExitStack, tmp: Path, name: str, server: JsonProcess, port: int, *,
    batch: int, checkpoints: tuple[int, ...], window: int, max_seconds: float,
) -> RegistrationRun:  # fmt: skip
    run = RegistrationRun(name)
    _register_batch(stack, tmp, port, "127.0.0.2", "warm", 0, WARM_UP_DEVICES, window, 60)
    time.sleep(0.5)  # the batch writer flushes every 100 ms
    run.rss_before_kib = server.rss_kib()
    total = max(checkpoints)
    for number in range(math.ceil(total / batch)):
        first = number * batch
        count = min(batch, total - first)
        source = f"127.0.0.{10 + number}"
        result = _register_batch(stack, tmp, port, source, "dev", first, count, window, max_seconds)
        if number == 0:
            run.first_batch = result
        else:
            run.later_batches.append(result)
        done = first + count
        if done in checkpoints:
            time.sleep(0.5)
            run.rss_at[done] = server.rss_kib()
    run.registered = server.call(cmd="stats")["registered"] - WARM_UP_DEVICES
    return run


# --- the benchmark ------------------------------------------------------------------------


def run(
    duration: float = 5.0,
    registrations: int = 10_000,
    max_devices: int = 20_000,
    window: int = 64,
    observed_devices: int = 500,
    notify_rate: float = 20_000.0,
    con_window: int = 64,
    rounds: int = 1,
    log_level: str = "info",
) -> dict[str, float]:
    """``duration``: seconds per notification phase; ``registrations``: devices per
    generator process (the first batch gives the registration rate, and the first
    memory figure); ``max_devices``: devices registered for the second memory figure
    (50,000 takes about 5 more minutes: our server absorbs ~200 Registers/s);
    ``log_level``: our server's (``info`` is the ``meadowlark serve`` default)."""
    checkpoints = tuple(sorted({registrations, max_devices}))
    if max_devices % registrations:
        raise ValueError("max_devices must be a multiple of registrations")
    register_cap = 300.0
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-lwm2m-")))

        def registration_run(name: str, server: JsonProcess, port: int) -> RegistrationRun:
            return measure_registrations(
                stack, tmp, name, server, port, batch=registrations, checkpoints=checkpoints,
                window=window, max_seconds=register_cap,
            )  # fmt: skip

        with ExitStack() as servers:
            bare, bare_port = bare_process(servers, tmp, "rd", "bare-rd")
            bare_run = registration_run("bare", bare, bare_port)
        with ExitStack() as servers:
            ours, our_port = our_server(servers, tmp, "ours-register", log_level)
            our_run = registration_run("ours", ours, our_port)

    from bench import notifications  # it uses this module's process helpers

    notify = notifications.run(
        duration=duration, devices=observed_devices, window=con_window, rate=notify_rate,
        rounds=rounds,
    )  # fmt: skip
    figures = _report(
        bare_run, our_run, checkpoints=checkpoints, window=window,
        registrations=registrations, log_level=log_level,
    )  # fmt: skip
    return {**figures, **notify}


def _report(
    bare: RegistrationRun, ours: RegistrationRun, *, checkpoints: tuple[int, ...],
    window: int, registrations: int, log_level: str,
) -> dict[str, float]:  # fmt: skip
    figures: dict[str, float] = {}

    def reg_line(label: str, batch: dict[str, Any], baseline: float) -> str:
        problems = batch["sent"] - batch["created"]
        return (
            f"  {label:40} {batch['per_second']:8.1f} reg/s  p50 {batch['p50_ms']:7.2f} ms  "
            f"p99 {batch['p99_ms']:7.2f} ms  ratio {batch['per_second'] / baseline:6.3f}"
            + (f"  FAILED {problems} {batch['codes']} timeouts {batch['timeouts']}"
               if problems else "")
        )  # fmt: skip

    base_rate = bare.first_batch["per_second"]
    print(
        f"lwm2m registrations: {registrations} devices (one socket each), {window} in flight; "
        f"our server on SQLite, log level {log_level}"
    )
    print(reg_line("bare aiocoap /rd (baseline)", bare.first_batch, base_rate))
    print(reg_line("meadowlark Register", ours.first_batch, base_rate))
    if ours.later_batches:
        later = f"{registrations}->{max(checkpoints)} devices"
        ratio = ours.later_per_second / bare.later_per_second
        print(
            f"  {'bare aiocoap /rd, ' + later:40} {bare.later_per_second:8.1f} reg/s\n"
            f"  {'meadowlark Register, ' + later:40} {ours.later_per_second:8.1f} reg/s"
            f"  ratio {ratio:6.3f}"
        )
        figures["register_later_ratio"] = ratio
    figures["register_ratio"] = ours.first_batch["per_second"] / base_rate
    figures["register_per_second"] = ours.first_batch["per_second"]

    print("lwm2m resident memory per registered device (VmRSS growth after a warm-up)")
    for devices_at in checkpoints:
        base_kib, our_kib = bare.kib_per_device(devices_at), ours.kib_per_device(devices_at)
        for name, run_, kib in (
            ("bare aiocoap /rd", bare, base_kib),
            ("meadowlark", ours, our_kib),
        ):
            growth = (run_.rss_at[devices_at] - run_.rss_before_kib) / 1024
            print(
                f"  {name + f' at {devices_at} devices':40} {kib:8.2f} KiB/device  "
                f"(RSS {run_.rss_before_kib / 1024:6.1f} -> {run_.rss_at[devices_at] / 1024:6.1f}"
                f" MiB, +{growth:.1f})  ratio {kib / base_kib:6.3f}"
            )
        figures[f"kib_per_device_{devices_at}"] = our_kib
        figures[f"memory_ratio_{devices_at}"] = our_kib / base_kib
    for run_ in (bare, ours):
        if run_.registered != max(checkpoints) or run_.failures:
            print(
                f"  WARNING {run_.name}: server counted {run_.registered} registrations "
                f"of {max(checkpoints)}, {run_.failures} failed"
            )
    return figures


# --- our server in a subprocess ------------------------------------------------------------


async def _serve_ours(port: int, data_dir: str, log_level: str) -> None:
    """A ``Runtime`` on SQLite with ``CoapServer``, as ``meadowlark serve`` wires them."""

    from bench.bare_coap import control_loop
    from meadowlark.coap.server import CoapServer
    from meadowlark.config import Settings
    from meadowlark.logging import configure_logging
    from meadowlark.runtime import Runtime
    from meadowlark.server.service import ServerListener

    settings = Settings(
        coap=f"127.0.0.1:{port}",
        data_dir=Path(data_dir),
        admin_password=ADMIN_PASSWORD,
        log_level=log_level,
    )
    configure_logging(settings.log_level, json=settings.log_json)
    runtime = Runtime.from_settings(settings)
    await runtime.prepare_store()
    lwm2m_settings = settings.lwm2m
    coap = CoapServer(
        runtime.lwm2m, settings.coap.host, settings.coap.port,
        max_payload=lwm2m_settings.max_payload, block_size=lwm2m_settings.block_size,
    )  # fmt: skip
    await runtime.start_lwm2m()
    runtime.lwm2m.attach(await coap.start())

    class Counting(ServerListener):
        registered = 0

        def on_registered(self, registration: Any, replaced: Any) -> None:
            self.registered += 1

    counting = Counting()
    runtime.lwm2m.add_listener(counting)

    async def stats(_: dict[str, Any]) -> dict[str, Any]:
        return {"t": time.monotonic(), "registered": counting.registered}

    try:
        await control_loop({"stats": stats}, port=coap.port)
    finally:
        await coap.stop()
        await runtime.close()


def main() -> None:
    import asyncio

    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        asyncio.run(_serve_ours(int(sys.argv[2]), sys.argv[3], sys.argv[4]))
    else:
        run()


if __name__ == "__main__":
    main()
