"""A small HTTP/1.1 client for webhooks: h11 (the sans-I/O protocol library under httpx)
on asyncio streams, with kept-alive connections per origin.

A webhook delivery is one small request answered by a status; httpx spent about 3 ms of
CPU per request here (measured in ``bench/handlers.py``), h11 on bare streams a small
fraction of that. Redirects are not followed; TLS uses the system's trust store.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11


class HttpError(Exception):
    """The request did not get an answer (connection, protocol or timeout)."""


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    protocol: h11.Connection

    def close(self) -> None:
        self.writer.close()


class Http11Pool:
    def __init__(self, timeout: float, max_idle_per_origin: int = 32) -> None:
        self._timeout = timeout
        self._max_idle = max_idle_per_origin
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._tls = ssl.create_default_context()

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes) -> int:
        """Send one request; the answer's status (its body is read and dropped)."""
        parts = urlsplit(url)
        secure = parts.scheme.lower() == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        origin = (parts.scheme.lower(), host, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = host if parts.port is None else f"{host}:{port}"
        if ":" in host:
            authority = f"[{host}]" if parts.port is None else f"[{host}]:{port}"
        request = h11.Request(
            method=method,
            target=target,
            headers=[
                ("Host", authority),
                ("Content-Length", str(len(body))),
                *headers.items(),
            ],
        )
        try:
            async with asyncio.timeout(self._timeout):
                idle = self._idle.get(origin)
                while idle:  # a kept-alive connection the server may have closed meanwhile
                    connection = idle.pop()
                    try:
                        return await self._exchange(origin, connection, request, body)
                    except (OSError, h11.ProtocolError, asyncio.IncompleteReadError):
                        connection.close()
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=self._tls if secure else None
                )
                connection = _Connection(reader, writer, h11.Connection(h11.CLIENT))
                try:
                    return await self._exchange(origin, connection, request, body)
                except BaseException:
                    connection.close()
                    raise
        except TimeoutError:
            raise HttpError(f"no answer within {self._timeout:g} s") from None
        except (OSError, h11.ProtocolError, asyncio.IncompleteReadError) as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from None

    async def _exchange(
        self,
        origin: tuple[str, str, int],
        connection: _Connection,
        request: h11.Request,
        body: bytes,
    ) -> int:
        protocol = connection.protocol
        connection.writer.write(
            protocol.send(request)
            + protocol.send(h11.Data(data=body))
            + protocol.send(h11.EndOfMessage())
        )
        await connection.writer.drain()
        status = 0
        while True:
            event = protocol.next_event()
            if event is h11.NEED_DATA:
                data = await connection.reader.read(65536)
                if not data and protocol.their_state is not h11.DONE:
                    raise asyncio.IncompleteReadError(b"", None)
                protocol.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise asyncio.IncompleteReadError(b"", None)
        if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
            protocol.start_next_cycle()
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self._max_idle:
                idle.append(connection)
                return status
        connection.close()
        return status

    async def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
