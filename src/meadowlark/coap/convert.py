"""Conversions between aiocoap messages and the transport-neutral types of ``server/``."""

from __future__ import annotations

import ipaddress
from typing import Any

from aiocoap import Message, Reliable, Unreliable
from aiocoap.numbers.codes import Code

from meadowlark.coap.dtls import DtlsEndpointAddress
from meadowlark.server.transport import (
    DownlinkRequest,
    DownlinkResponse,
    Method,
    Peer,
    ResponseCode,
    TransportError,
    UplinkResult,
)

_CODES = {
    Method.GET: Code.GET,
    Method.PUT: Code.PUT,
    Method.POST: Code.POST,
    Method.DELETE: Code.DELETE,
    Method.FETCH: Code.FETCH,
    Method.IPATCH: Code.iPATCH,
}


def peer_of(remote: object) -> Peer:
    """The ``Peer`` behind an aiocoap remote; IPv4-mapped IPv6 addresses become IPv4.

    A DTLS remote (``coaps://``) carries the identity its session's handshake
    authenticated; over plain UDP nothing authenticates the sender: no ``identity``.
    A connection-oriented remote (CoAP over TCP/TLS, ``coap.tcp``) carries its own
    ``lwm2m_peer``, built when the connection was accepted.
    """
    if isinstance(remote, DtlsEndpointAddress):
        return Peer(remote.host, remote.port, "dtls", handle=remote, identity=remote.identity)
    connection_peer = getattr(remote, "lwm2m_peer", None)
    if isinstance(connection_peer, Peer):
        return connection_peer
    sockaddr = getattr(remote, "sockaddr", None)
    if sockaddr is None:
        host_text, _, port_text = str(getattr(remote, "hostinfo", "")).rpartition(":")
        return Peer(host_text.strip("[]"), int(port_text or 0), "udp", handle=remote, identity=None)
    host, port = sockaddr_address(sockaddr)
    return Peer(host, port, "udp", handle=remote, identity=None)


def sockaddr_address(sockaddr: tuple[Any, ...]) -> tuple[str, int]:
    """``(host, port)`` of a socket address, IPv4-mapped IPv6 addresses as IPv4."""
    address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address), int(sockaddr[1])


def request_message(peer: Peer, request: DownlinkRequest) -> Message:
    """The aiocoap request for ``request``, addressed to where ``peer`` last talked from."""
    message = Message(
        code=_CODES[request.method],
        transport_tuning=Reliable if request.confirmable else Unreliable,
        payload=request.payload,
        uri_path=request.uri_path,
        uri_query=request.query,
    )
    if request.content_format is not None:
        message.opt.content_format = request.content_format
    if request.accept is not None:
        message.opt.accept = request.accept
    if request.observe is not None:
        message.opt.observe = request.observe
    if peer.handle is not None:
        message.remote = peer.handle
    elif peer.transport in ("tcp", "tls"):
        # Known from another node or an earlier process: its connection is not here.
        raise TransportError(f"no {peer.transport.upper()} connection from {peer} on this node")
    else:
        message.set_request_uri(f"coap://{peer}/", set_uri_host=False)
        message.opt.uri_path = request.uri_path
        message.opt.uri_query = request.query
    return message


def response_of(message: Message) -> DownlinkResponse:
    content_format = message.opt.content_format
    return DownlinkResponse(
        code=ResponseCode(message.code.class_, message.code & 0x1F),
        payload=bytes(message.payload),
        content_format=None if content_format is None else int(content_format),
        observe=message.opt.observe,
        location_path=tuple(message.opt.location_path),
    )


def result_message(result: UplinkResult) -> Message:
    code = Code((result.code.code_class << 5) | result.code.detail)
    message = Message(code=code)
    if result.location_path:
        message.opt.location_path = result.location_path
    if result.max_age is not None:
        message.opt.max_age = result.max_age
    if result.diagnostic and not code.is_successful():
        message.payload = result.diagnostic.encode("utf-8")[:128]
    return message
