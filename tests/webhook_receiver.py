"""A real HTTP receiver of webhooks for tests: ``http.server`` in a thread on loopback.

It keeps every request (method, path, headers, body), checks each signature with the
handler's secret, answers ``status`` (200 by default), and can be taken down (its port
closed) and brought back on the same port.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def signed_by(self, secret: str, max_age: float = 300) -> bool:
        """What a receiver checks: a fresh timestamp and the HMAC over timestamp + body."""
        timestamp = self.headers.get("x-meadowlark-timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > max_age:
            return False
        expected = hmac.new(secret.encode(), timestamp.encode() + b"." + self.body, hashlib.sha256)
        given = self.headers.get("x-meadowlark-signature", "")
        return hmac.compare_digest(given, "sha256=" + expected.hexdigest())


@dataclass
class WebhookReceiver:
    port: int = 0
    status: int = 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _take(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.status
                if 200 <= status < 300:
                    with receiver._lock:
                        receiver.received.append(
                            Received(
                                self.command,
                                self.path,
                                {k.lower(): v for k, v in self.headers.items()},
                                body,
                            )
                        )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_PATCH = _take  # noqa: N815 - http.server's names

            def log_message(self, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def bodies(self) -> list[Any]:
        with self._lock:
            return [item.json for item in self.received]
