"""Shared benchmark plumbing: servers in subprocesses, a bounded HTTP load generator."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server_process(command: list[str], *, env: dict[str, str], ready_url: str) -> Iterator[None]:
    """Run a server subprocess until ``ready_url`` answers 200; stop it afterwards."""
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"server at {ready_url} did not become ready")
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def http_request(
    method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """The raw bytes of one HTTP/1.1 keep-alive request."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


def run_load(request: bytes, *, port: int, duration: float, concurrency: int) -> LoadResult:
    """Closed-loop load over raw keep-alive connections: each of ``concurrency`` connections
    sends ``request`` again as soon as the previous answer is read, for ``duration`` seconds.

    A raw client keeps the load generator's own CPU cost small, which matters on a
    two-core machine where client and server share the processor.
    """

    async def main() -> LoadResult:
        latencies: list[float] = []
        errors = 0
        stop_at = time.perf_counter() + duration

        async def connection() -> None:
            nonlocal errors
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                while time.perf_counter() < stop_at:
                    started = time.perf_counter()
                    writer.write(request)
                    status = await _read_response(reader)
                    latencies.append(time.perf_counter() - started)
                    if status >= 300:
                        errors += 1
            finally:
                writer.close()

        started = time.perf_counter()
        await asyncio.gather(*(connection() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        ordered = sorted(latencies)
        return LoadResult(
            requests=len(ordered),
            seconds=elapsed,
            p50_ms=statistics.median(ordered) * 1000 if ordered else 0.0,
            p99_ms=ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000 if ordered else 0.0,
            errors=errors,
        )

    return asyncio.run(main())


def python() -> str:
    return sys.executable


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
