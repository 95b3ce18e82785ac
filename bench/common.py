"""Shared benchmark plumbing: servers in subprocesses, a bounded HTTP load generator."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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


def run_load(
    send: Callable[[httpx.AsyncClient], object],
    *,
    base_url: str,
    duration: float,
    concurrency: int,
    max_requests: int = 1_000_000,
) -> LoadResult:
    """Closed-loop load: ``concurrency`` workers repeat ``send`` for ``duration`` seconds."""

    async def main() -> LoadResult:
        latencies: list[float] = []
        errors = 0
        stop_at = time.perf_counter() + duration
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:

            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < stop_at and len(latencies) < max_requests:
                    started = time.perf_counter()
                    response = await send(client)  # type: ignore[misc]
                    latencies.append(time.perf_counter() - started)
                    if response.status_code >= 300:
                        errors += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        ordered = sorted(latencies)
        return LoadResult(
            requests=len(latencies),
            seconds=elapsed,
            p50_ms=statistics.median(ordered) * 1000 if ordered else 0.0,
            p99_ms=ordered[int(len(ordered) * 0.99) - 1] * 1000 if ordered else 0.0,
            errors=errors,
        )

    return asyncio.run(main())


def python() -> str:
    return sys.executable


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
