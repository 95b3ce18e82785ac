"""Server-initiated requests over aiocoap, from the server's own socket (NAT-friendly).

Requests go to the device's registered address from the same aiocoap context that
serves ``/rd``, so they leave through the socket the device talked to and reach it
through its NAT binding.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from aiocoap import Context, Message, Reliable
from aiocoap import error as coap_error
from aiocoap.numbers.codes import Code

from meadowlark.coap.convert import request_message, response_of
from meadowlark.coap.udp import Lwm2mUdpInterface
from meadowlark.server.transport import (
    DownlinkRequest,
    DownlinkResponse,
    NotificationCallback,
    ObservationEndCallback,
    Peer,
    TransportError,
    TransportTimeout,
)

_log = structlog.get_logger("meadowlark.lwm2m")

ACTIVE_CANCEL_WAIT = 5.0
"""How long an active cancellation waits for the device's answer before giving up."""


class AiocoapEndpoint:
    """``LwM2mEndpoint`` on an aiocoap ``Context``; with ``interface`` (the server's
    socket), notifications skip aiocoap and reach the observation from the lean path."""

    def __init__(self, context: Context, interface: Lwm2mUdpInterface | None = None) -> None:
        self._context = context
        self._interface = interface

    async def send(
        self,
        peer: Peer,
        request: DownlinkRequest,
        timeout: float,  # noqa: ASYNC109 - API deadline, mapped to 504
    ) -> DownlinkResponse:
        coap_request = self._context.request(request_message(peer, request))
        try:
            response = await asyncio.wait_for(coap_request.response, timeout)
        except TimeoutError:
            raise TransportTimeout(f"no answer within {timeout:g} s") from None
        except coap_error.Error as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        return response_of(response)

    async def ping(
        self,
        peer: Peer,
        timeout: float,  # noqa: ASYNC109 - API deadline, mapped to 504
    ) -> None:
        """An empty CON; the device's message layer answers it with RST (RFC 7252 §4.3).
        Over TCP/TLS, a Ping signal answered by Pong (RFC 8323 §5.4)."""
        connection_ping = getattr(peer.handle, "ping", None)
        if connection_ping is not None:
            await connection_ping(timeout)
            return
        ping = Message(code=Code.EMPTY, transport_tuning=Reliable)
        ping.remote = peer.handle
        try:
            interface = await self._context.find_remote_and_interface(ping)
        except coap_error.Error as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        message_layer = getattr(interface, "token_interface", None)
        if message_layer is None or not hasattr(message_layer, "send_message"):
            raise TransportError("this transport cannot send a CoAP ping")
        answered = asyncio.get_running_loop().create_future()

        def on_reset() -> None:  # aiocoap reports the RST of an exchange as its error
            if not answered.done():
                answered.set_result(None)

        message_layer.send_message(ping, on_reset)
        try:
            await asyncio.wait_for(answered, timeout)
        except TimeoutError:
            raise TransportTimeout(f"no answer within {timeout:g} s") from None

    async def observe(
        self,
        peer: Peer,
        request: DownlinkRequest,
        on_notify: NotificationCallback,
        on_end: ObservationEndCallback,
        timeout: float,  # noqa: ASYNC109 - API deadline, mapped to 504
    ) -> AiocoapObservation:
        message = request_message(peer, request)
        coap_request = self._context.request(message)
        try:
            first = await asyncio.wait_for(coap_request.response, timeout)
        except TimeoutError:
            raise TransportTimeout(f"no answer within {timeout:g} s") from None
        except coap_error.Error as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        observation = AiocoapObservation(
            self._context, message, coap_request, response_of(first), on_notify, on_end
        )
        established = first.opt.observe is not None and first.code.is_successful()
        sockaddr = getattr(first.remote, "sockaddr", None)
        if established and self._interface is not None and sockaddr is not None:
            observation.unroute = self._interface.route_notifications(
                first.token, sockaddr, on_notify, first.opt.observe
            )
        observation.start(established=established)
        return observation


class AiocoapObservation:
    """One observation; notifications are read from aiocoap's async iterator.

    aiocoap's iterator keeps only the newest notification if several arrive before it
    is read, which suits a value cache (observations are lossy by design, RFC 7641 §1.3).
    When the server's socket routes notifications itself (``unroute`` set), they arrive
    from there; aiocoap's iterator then only reports the end of the observation.
    """

    unroute: Callable[[], None] | None = None
    """Stops the lean path's delivery of this observation's notifications."""

    def __init__(
        self,
        context: Context,
        message: Message,
        coap_request: Any,
        initial_response: DownlinkResponse,
        on_notify: NotificationCallback,
        on_end: ObservationEndCallback,
    ) -> None:
        self._context = context
        self._message = message
        self._request = coap_request
        self._initial_response = initial_response
        self._on_notify = on_notify
        self._on_end = on_end
        self._active = False
        self._reader: asyncio.Task[None] | None = None

    @property
    def initial_response(self) -> DownlinkResponse:
        return self._initial_response

    @property
    def active(self) -> bool:
        return self._active

    def start(self, *, established: bool) -> None:
        if not established:
            self._drop_interest()
            return
        self._active = True
        self._reader = asyncio.get_running_loop().create_task(
            self._read_notifications(), name=f"observation {self._message.opt.uri_path}"
        )

    async def cancel(self, *, active: bool) -> None:
        if not self._active:
            return
        self._active = False
        if self.unroute is not None:
            self.unroute()
        if active:
            await self._send_cancellation()
        self._drop_interest()
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read_notifications(self) -> None:
        try:
            async for notification in self._request.observation:
                if not self._active:
                    break
                try:
                    self._on_notify(response_of(notification))
                except Exception:  # the server's bug must not end the observation
                    _log.exception("notification_handler_failed")
        except coap_error.Error as exc:
            _log.info("observation_failed", error=f"{type(exc).__name__}: {exc}")
        if self._active:
            self._active = False
            self._reader = None
            self._drop_interest()
            self._on_end()

    async def _send_cancellation(self) -> None:
        """GET (or FETCH) with Observe=1 and the observation's token (RFC 7641 §3.6).

        aiocoap always picks a fresh token for a request, so the cancellation goes to its
        message layer directly. The device's answer then closes aiocoap's own state of
        the observation, since it matches the original token.
        """
        token, remote = self._message.token, self._message.remote
        if not token or remote is None:
            return
        cancellation = self._message.copy(mid=None, observe=1)
        try:
            interface = await self._context.find_remote_and_interface(cancellation)
        except coap_error.Error:
            return
        message_layer = getattr(interface, "token_interface", None)
        if message_layer is None or not hasattr(message_layer, "send_message"):
            return
        failed = asyncio.get_running_loop().create_future()

        def on_error() -> None:
            if not failed.done():
                failed.set_result(None)

        message_layer.send_message(cancellation, on_error)
        reader = self._reader
        waiters: list[asyncio.Future[Any]] = [failed]
        if reader is not None:
            waiters.append(reader)
        await asyncio.wait(waiters, timeout=ACTIVE_CANCEL_WAIT, return_when=asyncio.FIRST_COMPLETED)

    def _drop_interest(self) -> None:
        if self.unroute is not None:
            self.unroute()
        observation = self._request.observation
        if observation is not None and not observation.cancelled:
            with contextlib.suppress(AssertionError):
                observation.cancel()
