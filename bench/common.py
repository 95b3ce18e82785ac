"""Shared benchmark plumbing: servers in subprocesses, a bounded HTTP load generator."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
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


POSTGRES_ENV = "MEADOWLARK_BENCH_POSTGRES_URL"


@contextmanager
def postgres_database(maintenance_url: str) -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(maintenance_url)
    params = {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database or "postgres",
    }
    name = f"meadowlark_bench_{secrets.token_hex(4)}"
    with psycopg.connect(**params, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield parsed.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(**params, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database_for(backend: str, data_dir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{data_dir / 'meadowlark.db'}"
        return
    with postgres_database(os.environ[POSTGRES_ENV]) as url:
        yield url


@contextmanager
def serving(backend: str, admin_password: str) -> Iterator[tuple[int, str]]:
    """``meadowlark serve`` as users start it, on a fresh database of ``backend``:
    yields its HTTP port and the database URL (for seeding it directly)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir, database_for(backend, Path(data_dir)) as url:
        env = {
            "MEADOWLARK_HTTP": f"127.0.0.1:{port}",
            "MEADOWLARK_COAP": f"127.0.0.1:{free_port()}",
            "MEADOWLARK_COAPS": "127.0.0.1:0",  # DTLS on a free port, not 5684
            "MEADOWLARK_COAP_TCP": "off",  # no CoAP over TCP/TLS here
            "MEADOWLARK_COAP_TLS": "off",
            "MEADOWLARK_BOOTSTRAP": "off",
            "MEADOWLARK_BOOTSTRAP_DTLS": "off",
            "MEADOWLARK_DATA_DIR": data_dir,
            "MEADOWLARK_DATABASE_URL": url,
            "MEADOWLARK_ADMIN_PASSWORD": admin_password,
            "MEADOWLARK_LOG_LEVEL": "warning",
        }
        command = [python(), "-m", "meadowlark.cli.main", "serve"]
        with server_process(command, env=env, ready_url=f"http://127.0.0.1:{port}/ready"):
            yield port, url


def latency_growth(
    title: str,
    sizes: tuple[int, int],
    measure: Callable[[str, int, float], dict[str, LoadResult]],
    duration: float,
    *,
    limit: float | None = None,
) -> dict[str, float]:
    """p50 latency at the large size divided by p50 at the small one, per request and
    backend (PostgreSQL when ``MEADOWLARK_BENCH_POSTGRES_URL`` is set)."""
    backends = ["sqlite"]
    if os.environ.get(POSTGRES_ENV):
        backends.append("postgres")
    else:
        print(f"{title}: PostgreSQL skipped ({POSTGRES_ENV} not set)")
    small_label, large_label = (f"@{size // 1000}k" for size in sizes)
    ratios: dict[str, float] = {}
    for backend in backends:
        print(f"{title} on {backend}:")
        results = {size: measure(backend, size, duration) for size in sizes}
        small, large = results[sizes[0]], results[sizes[-1]]
        for name in small:
            ratio = large[name].p50_ms / small[name].p50_ms
            ratios[f"{backend} {name}"] = ratio
            errors = small[name].errors + large[name].errors
            over = limit is not None and ratio > limit
            print(
                f"  {name:26} p50 {small[name].p50_ms:7.2f} ms {small_label}  "
                f"{large[name].p50_ms:7.2f} ms {large_label}  ratio {ratio:5.2f}  "
                f"(p99 {small[name].p99_ms:.1f} / {large[name].p99_ms:.1f} ms)"
                f"{f'  OVER {limit}' if over else ''}"
                f"{'  ERRORS ' + str(errors) if errors else ''}"
            )
    return ratios
