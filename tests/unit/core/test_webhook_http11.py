"""The webhooks' HTTP/1.1 client against small loopback servers: kept-alive connections,
chunked and closing answers, a server that drops idle connections, timeouts."""

from __future__ import annotations

import asyncio

import pytest

from meadowlark.core.event_handlers.http11 import Http11Pool, HttpError


async def _serve(answer: bytes, *, close_after: bool = False, silent: bool = False):
    seen: list[bytes] = []
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                seen.append(head + await reader.readexactly(length))
                if silent:
                    await asyncio.sleep(5)
                writer.write(answer)
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port, seen, lambda: connections


def test_requests_reuse_one_kept_alive_connection_and_carry_their_headers():
    async def main() -> None:
        server, port, seen, connections = await _serve(b"HTTP/1.1 204 No Content\r\n\r\n")
        pool = Http11Pool(2.0)
        for index in range(3):
            status = await pool.request(
                "POST", f"http://127.0.0.1:{port}/in?x=1", {"X-A": str(index)}, b"body"
            )
            assert status == 204
        assert connections() == 1
        assert seen[0].startswith(b"POST /in?x=1 HTTP/1.1\r\n")
        assert b"x-a: 2" in seen[2].lower() and seen[2].endswith(b"body")
        assert f"host: 127.0.0.1:{port}".encode() in seen[0].lower()
        await pool.close()
        server.close()

    asyncio.run(main())


def test_chunked_and_closing_answers_and_a_dropped_idle_connection():
    async def main() -> None:
        chunked = b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nfail\r\n0\r\n\r\n"
        server, port, _, _ = await _serve(chunked)
        pool = Http11Pool(2.0)
        assert await pool.request("PUT", f"http://127.0.0.1:{port}/", {}, b"") == 500
        server.close()
        closing, port2, _, connections = await _serve(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", close_after=True
        )
        for _ in range(2):  # the second finds its kept connection closed, and reconnects
            assert await pool.request("POST", f"http://127.0.0.1:{port2}/", {}, b"x") == 200
        assert connections() == 2
        await pool.close()
        closing.close()

    asyncio.run(main())


def test_no_answer_in_time_or_no_server_is_an_http_error():
    async def main() -> None:
        server, port, _, _ = await _serve(b"HTTP/1.1 200 OK\r\n\r\n", silent=True)
        pool = Http11Pool(0.2)
        with pytest.raises(HttpError, match="no answer"):
            await pool.request("POST", f"http://127.0.0.1:{port}/", {}, b"")
        server.close()
        with pytest.raises(HttpError, match="ConnectionRefused|Connect"):
            await pool.request("POST", "http://127.0.0.1:9/", {}, b"")
        await pool.close()

    asyncio.run(main())
