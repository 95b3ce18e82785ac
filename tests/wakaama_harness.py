"""Eclipse Wakaama's example LwM2M clients as peers of the interop tests: built by
``../shared/peers/build-wakaama.sh`` (or named by an environment variable), started with
their output collected, and always ended afterwards.

``lwm2mclient`` is the plain UDP client (``MEADOWLARK_TEST_WAKAAMA_CLIENT``),
``lwm2mclient_tinydtls`` the DTLS-PSK one (``MEADOWLARK_TEST_WAKAAMA_DTLS_CLIENT``). Both
read commands on stdin, kept open as a pipe; ``quit`` de-registers and exits.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from wakaama_build import run_build_script

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "peers" / "build-wakaama.sh"
"""``../shared`` beside the checkout, as ``.ci/run`` has it."""
UDP_CLIENT = "lwm2mclient"
DTLS_CLIENT = "lwm2mclient_tinydtls"
_VARIABLES = {
    UDP_CLIENT: "MEADOWLARK_TEST_WAKAAMA_CLIENT",
    DTLS_CLIENT: "MEADOWLARK_TEST_WAKAAMA_DTLS_CLIENT",
}


@cache
def wakaama_client(name: str) -> tuple[str | None, str]:
    """The path of the example client ``name`` (``UDP_CLIENT``, ``DTLS_CLIENT``), or None
    and why not."""
    variable = _VARIABLES[name]
    given = os.environ.get(variable)
    if given:
        if os.access(given, os.X_OK):
            return given, ""
        return None, f"{variable}={given} is not an executable"
    if not BUILD_SCRIPT.is_file():
        return None, f"{BUILD_SCRIPT} not found"
    try:
        built = run_build_script(BUILD_SCRIPT)  # one build at a time across test workers
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"building Wakaama failed: {exc}"
    paths = [line for line in built.stdout.split() if Path(line).name == name]
    if built.returncode != 0 or not paths or not os.access(paths[0], os.X_OK):
        tail = (built.stderr or built.stdout).strip()[-300:]
        return None, f"building Wakaama failed (exit {built.returncode}; cmake/gcc?): {tail}"
    return paths[0], ""


def wakaama_client_or_skip(name: str) -> str:
    path, reason = wakaama_client(name)
    if path is None:
        pytest.skip(reason)
    return path


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class WakaamaClient:
    endpoint: str
    process: subprocess.Popen[str]
    line_buffered: bool
    """Whether its output is seen as it happens (``stdbuf``)."""
    output: list[str] = field(default_factory=list)

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def printed(self, text: str) -> bool:
        return any(text in line for line in list(self.output))

    def tail(self, lines: int = 30) -> str:
        return "".join(self.output[-lines:])


@contextmanager
def running_wakaama(
    binary: str, endpoint: str, port: int, *options: str, lifetime: int = 60
) -> Iterator[WakaamaClient]:
    """The client ``binary`` for ``endpoint``, talking to 127.0.0.1:``port`` (``options``:
    ``-b`` to bootstrap, ``-i``/``-s`` for PSK credentials); de-registered and ended on exit."""
    command = [
        binary, "-4", "-h", "127.0.0.1", "-p", str(port),
        "-n", endpoint, "-t", str(lifetime), "-l", str(_free_udp_port()), *options,
    ]  # fmt: skip
    line_buffered = shutil.which("stdbuf") is not None
    if line_buffered:  # C stdio buffers a pipe by blocks: see its output as it happens
        command = ["stdbuf", "-oL", *command]
    process = subprocess.Popen(  # noqa: S603 - the binary we built
        command,
        stdin=subprocess.PIPE,  # kept open: the client reads commands from it
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    client = WakaamaClient(endpoint, process, line_buffered)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            client.output.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield client
    finally:
        if process.poll() is None:
            try:
                client.command("quit")  # de-registers
                process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        reader.join(10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
