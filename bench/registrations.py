"""Registrations per second absorbed by ``meadowlark serve`` against a reference server.

``meadowlark serve`` runs as users start it (the CLI in a subprocess, embedded defaults:
SQLite in a temporary data folder, default log level, no per-address limit). The raw-UDP
generator ``bench.coap_load register`` (one socket per device, ``window`` Registers in
flight) registers ``devices`` devices with it, and then with the baseline, in the same
run: Eclipse Wakaama's C example server ``lwm2mserver`` (in memory, no persistence)
with ``compare_wakaama``, built by ``../shared/peers/build-wakaama.sh``; otherwise a
bare aiocoap ``/rd`` resource that only answers 2.01 (``bench.bare_coap rd``).

A third line measures the LwM2M layer alone: ``LwM2mServer`` with its in-memory stores
behind ``CoapServer`` (``python -m bench.registrations memory PORT``), the ceiling of the
CoAP path and registration service without the database and the REST application.

``profile`` records a py-spy flame graph of ``meadowlark serve`` during its run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.common import free_port, python, repo_root

ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105 - a throwaway local server
FLAME_FORMAT = ("-f", os.environ.get("MEADOWLARK_BENCH_FLAME_FORMAT", "flamegraph"))
"""py-spy's output format (``raw``: collapsed stacks, to read them as text)."""
WAKAAMA_SCRIPT = repo_root().parent / "shared" / "peers" / "build-wakaama.sh"


def wakaama_server() -> str:
    """Build (once) Wakaama's example server with the shared script; its binary's path."""
    built = subprocess.run(  # noqa: S603 - the project's own build script
        ["bash", str(WAKAAMA_SCRIPT)],  # noqa: S607 - bash from PATH, as .ci/run runs it
        check=True,
        capture_output=True,
        text=True,  # noqa: S607
    )
    for line in built.stdout.splitlines():
        if line.endswith("/lwm2mserver"):
            return line.strip()
    raise RuntimeError(f"{WAKAAMA_SCRIPT} printed no lwm2mserver path")


@contextmanager
def meadowlark_serve(tmp: Path, *, with_http: bool = False) -> Iterator[Any]:
    """``meadowlark serve`` from the CLI, data in ``tmp/meadowlark-data``; yields (pid,
    CoAP port), or (pid, CoAP port, HTTP port) ``with_http``."""
    http_port, coap_port = free_port(), free_port(socket.SOCK_DGRAM)
    env = {
        **os.environ,
        "PYTHONPATH": str(repo_root() / "src"),
        "MEADOWLARK_HTTP": f"127.0.0.1:{http_port}",
        "MEADOWLARK_COAP": f"127.0.0.1:{coap_port}",
        "MEADOWLARK_COAPS": "127.0.0.1:0",  # DTLS on a free port, not 5684
        "MEADOWLARK_COAP_TCP": "off",  # no CoAP over TCP/TLS here
        "MEADOWLARK_COAP_TLS": "off",
        "MEADOWLARK_BOOTSTRAP": "off",
        "MEADOWLARK_BOOTSTRAP_DTLS": "off",
        "MEADOWLARK_DATA_DIR": str(tmp / "meadowlark-data"),
        "MEADOWLARK_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    with (tmp / "serve.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
            [python(), "-m", "meadowlark.cli.main", "serve"], env=env, stdout=log, stderr=log
        )
        try:
            _wait_ready(process, f"http://127.0.0.1:{http_port}/ready", tmp / "serve.log")
            yield (process.pid, coap_port, http_port) if with_http else (process.pid, coap_port)
        finally:
            _stop(process)


@contextmanager
def memory_server(tmp: Path) -> Iterator[int]:
    """``LwM2mServer`` with in-memory stores behind ``CoapServer``; yields its port."""
    port = free_port(socket.SOCK_DGRAM)
    env = {**os.environ, "PYTHONPATH": str(repo_root() / "src") + os.pathsep + str(repo_root())}
    with (tmp / "memory.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [python(), "-m", "bench.registrations", "memory", str(port)],
            cwd=repo_root(), env=env, stdin=subprocess.PIPE, stdout=log, stderr=log,
        )  # fmt: skip
        try:
            time.sleep(1.5)
            if process.poll() is not None:
                raise RuntimeError(f"memory server exited: {(tmp / 'memory.log').read_text()}")
            yield port
        finally:
            _stop(process)


async def _serve_memory(port: int) -> None:
    import asyncio
    import logging
    import sys

    from meadowlark.coap.server import CoapServer
    from meadowlark.logging import configure_logging
    from meadowlark.server.service import LwM2mServer

    configure_logging("warning", json=False)
    logging.getLogger("coap-server").setLevel(logging.ERROR)
    server = LwM2mServer()
    coap = CoapServer(server, "127.0.0.1", port, traffic=server.traffic)
    await server.start()
    server.attach(await coap.start())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()  # until the benchmark closes stdin
    await coap.stop()
    await server.stop()


@contextmanager
def baseline_server(compare_wakaama: bool, tmp: Path) -> Iterator[tuple[str, int]]:
    """The reference server; yields (its name, UDP port)."""
    port = free_port(socket.SOCK_DGRAM)
    if compare_wakaama:
        command = [wakaama_server(), "-4", "-l", str(port)]
        name = "Wakaama lwm2mserver (C)"
    else:
        command = [python(), "-m", "bench.bare_coap", "rd", str(port)]
        name = "bare aiocoap /rd"
    with (tmp / "baseline.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - a reference server built or shipped here
            command, cwd=repo_root(), stdin=subprocess.PIPE, stdout=log, stderr=log
        )
        try:
            time.sleep(1.0)
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited: {(tmp / 'baseline.log').read_text()[-2000:]}")
            yield name, port
        finally:
            _stop(process)


def register_devices(port: int, source: str, prefix: str, devices: int, window: int) -> dict:
    """One generator run (``bench.coap_load register``); its JSON result."""
    command = [
        python(), "-m", "bench.coap_load", "register", "--server", f"127.0.0.1:{port}",
        "--source", source, "--devices", str(devices), "--prefix", prefix,
        "--window", str(window), "--max-seconds", "300",
    ]  # fmt: skip
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        command, cwd=repo_root(), check=True, capture_output=True, text=True, timeout=400
    )
    for line in done.stdout.splitlines():
        result = json.loads(line)
        if result.get("event") == "registered":
            return result
    raise RuntimeError(f"generator printed no result: {done.stdout[-2000:]} {done.stderr[-2000:]}")


@contextmanager
def flame_graph(pid: int, name: str | None) -> Iterator[None]:
    """py-spy records ``pid`` and its child processes while the block runs, into ``name``
    (an SVG), if given."""
    if name is None:
        yield
        return
    py_spy = shutil.which("py-spy") or str(Path(python()).parent / "py-spy")
    recorder = subprocess.Popen(  # noqa: S603 - py-spy from the venv
        [
            py_spy,
            "record",
            "--nonblocking",
            "--subprocesses",  # serve's workers (one per core by default)
            "-r",
            "200",
            *FLAME_FORMAT,
            "-o",
            name,
            "--pid",
            str(pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        yield
    finally:
        recorder.send_signal(2)  # SIGINT: py-spy writes the graph and exits
        recorder.wait(timeout=60)


def run(
    duration: float = 5.0,
    devices: int = 3000,
    window: int = 64,
    compare_wakaama: bool = False,
    profile: str | None = None,
) -> dict[str, float]:
    """``duration`` is unused (the figure is a fixed number of Registers)."""
    del duration
    with tempfile.TemporaryDirectory(prefix="bench-registrations-") as folder:
        tmp = Path(folder)
        with meadowlark_serve(tmp) as (pid, port):
            register_devices(port, "127.0.0.3", "warm", 200, window)  # imports, JIT caches
            with flame_graph(pid, profile):
                ours = register_devices(port, "127.0.0.4", "dev", devices, window)
        with memory_server(tmp) as port:
            register_devices(port, "127.0.0.3", "warm", 200, window)
            memory = register_devices(port, "127.0.0.4", "dev", devices, window)
        with baseline_server(compare_wakaama, tmp) as (name, port):
            register_devices(port, "127.0.0.3", "warm", 200, window)
            base = register_devices(port, "127.0.0.4", "dev", devices, window)
    ratio = ours["per_second"] / base["per_second"] if base["per_second"] else 0.0
    print(
        f"registrations: {devices} devices (one socket each), {window} in flight, "
        "raw-UDP generator (bench.coap_load register)"
    )
    lines = (
        (f"{name} (baseline)", base),
        ("meadowlark serve (SQLite)", ours),
        ("LwM2mServer in memory + CoapServer", memory),
    )
    for label, result in lines:
        failed = result["sent"] - result["created"]
        print(
            f"  {label:34} {result['per_second']:8.1f} reg/s  p50 {result['p50_ms']:7.2f} ms"
            f"  p99 {result['p99_ms']:7.2f} ms  separate {result['separate_responses']}"
            + (f"  NOT CREATED {failed} {result['codes']} timeouts {result['timeouts']}"
               if failed else "")
        )  # fmt: skip
    memory_ratio = memory["per_second"] / base["per_second"] if base["per_second"] else 0.0
    print(f"  ratio meadowlark serve / baseline: {ratio:.3f}")
    print(f"  ratio LwM2M layer in memory / baseline: {memory_ratio:.3f}")
    return {
        "register_per_second": ours["per_second"],
        "register_ratio": ratio,
        "register_memory_ratio": memory_ratio,
    }


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"meadowlark serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("meadowlark serve did not become ready")


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.stdin is not None:
        try:
            process.stdin.close()
        except BrokenPipeError:
            pass
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


if __name__ == "__main__":
    import asyncio
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "memory":
        asyncio.run(_serve_memory(int(sys.argv[2])))
    else:
        run(compare_wakaama="--compare-wakaama" in sys.argv)
