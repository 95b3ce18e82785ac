"""Sending SMS to a SIM: a gateway Protocol, the default gateway (which logs) and the
choice between it and the SMPP gateway (optional extra ``[smpp]``) by configuration."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

if TYPE_CHECKING:
    from meadowlark.config import SmsSettings

_log = structlog.get_logger("meadowlark.sms")


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    message_id: str
    msisdn: str
    sender: str
    text: str


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """What the network reported about a message it accepted (an SMPP delivery receipt)."""

    message_id: str
    """Our id of the message (``OutgoingSms.message_id``)."""
    network_id: str
    """The network's id of the message (SMPP ``submit_sm_resp`` message_id)."""
    status: str
    """Final state as the network names it: ``DELIVRD``, ``UNDELIV``, ``EXPIRED``..."""
    error: str = ""


ReceiptSink = Callable[[DeliveryReceipt], Awaitable[None]]


class SmsGateway(Protocol):
    async def send(self, sms: OutgoingSms) -> str | None:
        """Hand ``sms`` to the network: the network's message id if it accepted it."""

    def receipts_to(self, sink: ReceiptSink) -> None:
        """Where delivery receipts go (gateways without receipts ignore it)."""

    async def close(self) -> None:
        """Let go of any connection to the network."""


class LoggingSmsGateway:
    """Delivers nothing: logs each message (without its text) and reports success.

    For development and for deployments without an SMSC; remembers what it was given.
    """

    def __init__(self) -> None:
        self.sent: list[OutgoingSms] = []

    async def send(self, sms: OutgoingSms) -> str | None:
        _log.info("sms_sent", message_id=sms.message_id, to=sms.msisdn, length=len(sms.text))
        self.sent.append(sms)
        return sms.message_id

    def receipts_to(self, sink: ReceiptSink) -> None:
        return None

    async def close(self) -> None:
        return None


def make_gateway(settings: SmsSettings) -> SmsGateway:
    """The configured gateway; the SMPP library is imported only when SMPP is configured."""
    if settings.gateway == "smpp":
        from meadowlark.connectivity.smpp import SmppGateway

        return SmppGateway(settings)
    return LoggingSmsGateway()
