"""A worker process of ``meadowlark serve --workers N`` (started by the supervisor).

Its settings come from the environment the supervisor gave it; the REST socket and the
start barrier's pipes are inherited (``MEADOWLARK_WORKER_HTTP_FD``,
``MEADOWLARK_WORKER_BARRIER``).
"""

from __future__ import annotations

import os
import socket

from meadowlark.cli.serving import serve_node
from meadowlark.cli.supervisor import BARRIER_ENV, HTTP_FD_ENV, pass_start_barrier
from meadowlark.config import Settings
from meadowlark.logging import configure_logging


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    http_socket = socket.socket(fileno=int(os.environ[HTTP_FD_ENV]))
    barrier = os.environ[BARRIER_ENV]
    serve_node(settings, http_socket, worker=True, before_coap=lambda: pass_start_barrier(barrier))


if __name__ == "__main__":
    main()
