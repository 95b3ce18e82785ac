"""``meadowlark serve --workers N``: N worker processes on the same REST and CoAP ports.

The supervisor binds the REST socket once and hands it to every worker (the kernel
spreads accepted connections over them); each worker binds the CoAP port itself with
SO_REUSEPORT, so the kernel hashes each device's source address to one worker and a
device's uplinks (and the answers to its downlinks) keep reaching the same one.

The supervisor prepares the store first (migrations, first administrator), then starts
the workers, restarts one that dies, and on SIGTERM or SIGINT stops them all (SIGTERM,
then SIGKILL after ``STOP_GRACE`` seconds); a worker dies with the supervisor, even
one killed by SIGKILL. A worker is a full node: on SQLite the
workers reach each other through Unix-domain sockets in the data dir; on PostgreSQL
(or with Redis configured) through the same carrier as separate hosts' nodes.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from meadowlark import metrics
from meadowlark.config import HostPort

_log = structlog.get_logger("meadowlark.supervisor")

STOP_GRACE = 20.0
RESTART_DELAY_MAX = 30.0
HTTP_FD_ENV = "MEADOWLARK_WORKER_HTTP_FD"
"""Set for a worker: the inherited listening REST socket's file descriptor."""
SUPERVISOR_PID_ENV = "MEADOWLARK_WORKER_SUPERVISOR"
"""Set for a worker: the supervisor's process id (the worker dies with it)."""
BARRIER_ENV = "MEADOWLARK_WORKER_BARRIER"
"""Set for a worker: ``ready_fd,go_fd``, the pipes of the start barrier (see
``Supervisor``)."""


def http_listener(address: HostPort) -> socket.socket:
    """The REST socket every worker accepts on."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it (see the test server's note on delayed ACKs).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((address.host, address.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def concrete_udp_port(address: HostPort) -> int:
    """``address``'s port, or a free one if it is 0 (every worker must bind the same)."""
    if address.port:
        return address.port
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((address.host, 0))
        return int(probe.getsockname()[1])


@dataclass
class _Worker:
    number: int
    process: subprocess.Popen[bytes]
    started: float
    failures: int = 0


@dataclass
class Supervisor:
    """Starts, restarts and stops the workers.

    Start barrier: the kernel hashes a device's address over the sockets bound to the
    CoAP port *at that moment*, so the set should not change once devices talk to it.
    Each worker, ready to serve, writes a byte to the ``ready`` pipe and waits for one
    on the ``go`` pipe before it binds the CoAP port; the supervisor answers once all
    workers of the first start are ready (so they bind within milliseconds of each
    other), and a restarted worker at once.
    """

    count: int
    http_socket: socket.socket
    env: Mapping[str, str]
    """The workers' environment (their settings, with the concrete CoAP port)."""
    metrics_dir: Path | None = None
    """The workers' metric value files (``meadowlark.metrics``), emptied at start."""
    workers: dict[int, _Worker] = field(default_factory=dict)
    _stopping: bool = False
    _ready: int = -1
    _go: int = -1
    _barrier: tuple[int, int] = (-1, -1)
    """The workers' ends of the pipes: (ready, go)."""

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; the exit code for the supervisor's process."""
        previous = {
            sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        self._ready, ready = os.pipe()
        go, self._go = os.pipe()
        self._barrier = (ready, go)
        if self.metrics_dir is not None:
            metrics.prepare_multiprocess_dir(self.metrics_dir)
        waiting, released = 0, False
        try:
            for number in range(self.count):
                self._spawn(number)
            while not self._stopping:
                self._reap()
                readable, _, _ = select.select([self._ready], [], [], 0.2)
                if readable:
                    waiting += len(os.read(self._ready, 64))
                    released = released or waiting >= self.count
                if released and waiting:
                    os.write(self._go, b"g" * waiting)
                    waiting = 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._stop_all()
            for fd in (self._ready, ready, go, self._go):
                os.close(fd)
        return 0

    def _request_stop(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def _spawn(self, number: int, failures: int = 0) -> None:
        ready, go = self._barrier
        env = {
            **self.env,
            **({} if self.metrics_dir is None else {metrics.MULTIPROC_ENV: str(self.metrics_dir)}),
            HTTP_FD_ENV: str(self.http_socket.fileno()),
            BARRIER_ENV: f"{ready},{go}",
            SUPERVISOR_PID_ENV: str(os.getpid()),
        }
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "meadowlark.cli.worker"],
            env=env,
            pass_fds=(self.http_socket.fileno(), ready, go),
        )
        self.workers[number] = _Worker(number, process, time.monotonic(), failures)
        _log.info("worker_started", worker=number, pid=process.pid)

    def _reap(self) -> None:
        for number, worker in list(self.workers.items()):
            code = worker.process.poll()
            if code is None:
                continue
            self._forget_gauges(worker)
            lived = time.monotonic() - worker.started
            failures = worker.failures + 1 if lived < 10 else 0
            delay = min(RESTART_DELAY_MAX, 0.5 * 2**failures) if failures else 0.0
            _log.warning("worker_died", worker=number, code=code, restart_in=delay)
            deadline = time.monotonic() + delay
            while not self._stopping and time.monotonic() < deadline:
                time.sleep(0.1)
            if self._stopping:
                return
            self._spawn(number, failures)

    def _stop_all(self) -> None:
        for worker in self.workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for worker in self.workers.values():
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            self._forget_gauges(worker)
        self.http_socket.close()

    def _forget_gauges(self, worker: _Worker) -> None:
        """A dead worker's gauges no longer count (its counters still do)."""
        if self.metrics_dir is not None:
            metrics.mark_process_dead(worker.process.pid, self.metrics_dir)


def worker_environment(base: Mapping[str, str], values: Mapping[str, str | None]) -> dict[str, str]:
    """``base`` (the supervisor's environment) with the given settings as env vars."""
    env = dict(base)
    env.update({name: value for name, value in values.items() if value is not None})
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


async def pass_start_barrier(barrier: str) -> None:
    """The worker's side of the start barrier (``BARRIER_ENV``): ready, then wait."""
    ready, go = (int(fd) for fd in barrier.split(","))
    os.write(ready, b"r")
    await asyncio.get_running_loop().run_in_executor(None, os.read, go, 1)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
