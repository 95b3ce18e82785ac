"""Sending SMS to a SIM: a gateway Protocol and the default gateway, which logs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import structlog

_log = structlog.get_logger("meadowlark.sms")


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    message_id: str
    msisdn: str
    sender: str
    text: str


class SmsGateway(Protocol):
    async def send(self, sms: OutgoingSms) -> bool:
        """Hand ``sms`` to the network; whether it was accepted for delivery."""


class LoggingSmsGateway:
    """Delivers nothing: logs each message (without its text) and reports success.

    For development and for deployments without an SMSC; remembers what it was given.
    """

    def __init__(self) -> None:
        self.sent: list[OutgoingSms] = []

    async def send(self, sms: OutgoingSms) -> bool:
        _log.info("sms_sent", message_id=sms.message_id, to=sms.msisdn, length=len(sms.text))
        self.sent.append(sms)
        return True
