"""A worker process of ``meadowlark serve --workers N`` (started by the supervisor).

Its settings come from the environment the supervisor gave it; the REST socket and the
start barrier's pipes are inherited (``MEADOWLARK_WORKER_HTTP_FD``,
``MEADOWLARK_WORKER_BARRIER``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys

from meadowlark.cli.serving import serve_node
from meadowlark.cli.supervisor import (
    BARRIER_ENV,
    HTTP_FD_ENV,
    SUPERVISOR_PID_ENV,
    pass_start_barrier,
)
from meadowlark.config import Settings
from meadowlark.logging import configure_logging

PR_SET_PDEATHSIG = 1


def die_with_supervisor(supervisor_pid: int) -> None:
    """Have the kernel kill this worker when the supervisor dies, even by SIGKILL
    (Linux ``PR_SET_PDEATHSIG``): a worker must never outlive it, holding the ports."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != supervisor_pid:  # it died before the request took effect
        os._exit(1)


def main() -> None:
    die_with_supervisor(int(os.environ[SUPERVISOR_PID_ENV]))
    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_as_json)
    http_socket = socket.socket(fileno=int(os.environ[HTTP_FD_ENV]))
    barrier = os.environ[BARRIER_ENV]
    serve_node(settings, http_socket, worker=True, before_coap=lambda: pass_start_barrier(barrier))


if __name__ == "__main__":
    main()
