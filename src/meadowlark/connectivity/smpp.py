"""An SMS gateway to an SMSC over SMPP 3.4 (``pip install meadowlark[smpp]``), on the
``smpp34`` library: one transceiver bind, made on the first message and again after a
lost connection; ``submit_sm`` per message, the SMSC's message id from ``submit_sm_resp``;
delivery receipts (``deliver_sm`` with a receipt ``esm_class``) go to the receipt sink."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import OrderedDict
from typing import Any

import smpp34
import structlog
from smpp34._smpp34 import TLV_MESSAGE_PAYLOAD, TLV_MESSAGE_STATE, TLV_RECEIPTED_MESSAGE_ID

from meadowlark.config import SmsSettings
from meadowlark.connectivity.sms import DeliveryReceipt, OutgoingSms, ReceiptSink

_log = structlog.get_logger("meadowlark.sms.smpp")

RECEIPT_ESM_CLASS = 0x04
"""esm_class bits 2-5 = 0001: SMSC delivery receipt."""
MAX_SHORT_MESSAGE = 254
"""Octets in short_message; longer texts go in the message_payload TLV."""
MAX_PENDING_RECEIPTS = 100_000
_RECEIPT = re.compile(rb"id:(?P<id>\S+).*?stat:(?P<stat>\S+)(?:.*?err:(?P<err>\S+))?", re.S)
_MESSAGE_STATES = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}


def encode_text(text: str) -> tuple[bytes, int]:
    """The octets and data_coding of ``text``: IA5/ASCII (0x01) or UCS-2 (0x08)."""
    if text.isascii():
        return text.encode("ascii"), 0x01
    return text.encode("utf-16-be"), 0x08


def parse_receipt(event: smpp34.DeliverSmEvent) -> tuple[str, str, str] | None:
    """(network message id, state, error) of a delivery receipt, or None."""
    if not event.esm_class & RECEIPT_ESM_CLASS:
        return None
    tlvs = {tlv.tag: tlv for tlv in event.tlvs}
    receipted = tlvs.get(TLV_RECEIPTED_MESSAGE_ID)
    state = tlvs.get(TLV_MESSAGE_STATE)
    match = _RECEIPT.search(event.short_message)
    network_id = (receipted.as_string() if receipted else None) or (
        match.group("id").decode("ascii", "replace") if match else None
    )
    if not network_id:
        return None
    status = ""
    if state is not None and (code := state.as_int()) is not None:
        status = _MESSAGE_STATES.get(code, str(code))
    elif match:
        status = match.group("stat").decode("ascii", "replace")
    error = match.group("err").decode("ascii", "replace") if match and match.group("err") else ""
    return network_id.rstrip("\x00"), status or "UNKNOWN", error


def _bound_size(entries: OrderedDict[str, Any]) -> None:
    while len(entries) > MAX_PENDING_RECEIPTS:
        entries.popitem(last=False)


class SmppGateway:
    """``SmsGateway`` over SMPP; the password is a SecretStr and never logged."""

    def __init__(self, settings: SmsSettings) -> None:
        self._settings = settings
        self._client: smpp34.Client | None = None
        self._smsc: smpp34.Smsc | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._sink: ReceiptSink | None = None
        self._receipt_tasks: set[asyncio.Task[None]] = set()
        self._pending: OrderedDict[str, str] = OrderedDict()
        """Network message id -> our message id, for receipts still to come."""
        self._early: OrderedDict[str, tuple[str, str]] = OrderedDict()
        """Receipts read before their submit_sm_resp was handled (a fast SMSC)."""

    def receipts_to(self, sink: ReceiptSink) -> None:
        self._sink = sink

    async def _bound(self) -> smpp34.Smsc:
        async with self._lock:
            if self._smsc is not None and self._client is not None:
                return self._smsc
            settings = self._settings
            password = settings.password.get_secret_value() if settings.password else ""
            client = smpp34.Client(
                host=settings.host,
                port=settings.port,
                system_id=settings.system_id,
                password=password,
                bind_type="TRX",
                system_type=settings.system_type,
                connect_timeout_ms=int(settings.connect_timeout * 1000),
            )
            smsc = await asyncio.wait_for(client.connect(), settings.connect_timeout)
            self._client, self._smsc = client, smsc
            self._reader = asyncio.get_running_loop().create_task(
                self._read(smsc), name="smpp-receipts"
            )
            _log.info("smpp_bound", host=settings.host, port=settings.port)
            return smsc

    async def send(self, sms: OutgoingSms) -> str | None:
        try:
            smsc = await self._bound()
            payload, data_coding = encode_text(sms.text)
            long = len(payload) > MAX_SHORT_MESSAGE
            response = await asyncio.wait_for(
                smsc.submit_sm(
                    sms.msisdn,
                    b"" if long else payload,
                    source_addr=sms.sender or self._settings.source_addr,
                    data_coding=data_coding,
                    registered_delivery=1 if self._settings.registered_delivery else 0,
                    tlvs=[smpp34.Tlv(TLV_MESSAGE_PAYLOAD, payload)] if long else [],
                ),
                self._settings.connect_timeout,
            )
        except (smpp34.SmppError, OSError, TimeoutError, RuntimeError) as exc:
            _log.warning("smpp_submit_failed", message_id=sms.message_id, error=type(exc).__name__)
            await self._drop()
            return None
        if not response.is_success or not response.message_id:
            _log.warning(
                "smpp_submit_refused", message_id=sms.message_id, status=response.command_status
            )
            return None
        network_id = response.message_id
        _log.info("sms_submitted", message_id=sms.message_id, network_id=network_id)
        if self._settings.registered_delivery:
            early = self._early.pop(network_id, None)
            if early is not None:
                self._spawn_receipt(DeliveryReceipt(sms.message_id, network_id, *early))
            else:
                self._pending[network_id] = sms.message_id
                _bound_size(self._pending)
        return network_id

    def _spawn_receipt(self, receipt: DeliveryReceipt) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(receipt))
        self._receipt_tasks.add(task)
        task.add_done_callback(self._receipt_tasks.discard)

    async def _deliver(self, receipt: DeliveryReceipt) -> None:
        if self._sink is None:
            return
        try:
            await self._sink(receipt)
        except Exception:  # a failing sink must not end the receipt reader
            _log.exception("sms_receipt_not_recorded", network_id=receipt.network_id)

    async def _read(self, smsc: smpp34.Smsc) -> None:
        while True:
            event = await smsc.next()
            if isinstance(event, smpp34.Disconnected):
                _log.info("smpp_disconnected")
                if self._smsc is smsc:
                    self._smsc = None
                return
            parsed = parse_receipt(event)
            if parsed is None:
                continue
            network_id, status, error = parsed
            message_id = self._pending.pop(network_id, None)
            if message_id is None:
                self._early[network_id] = (status, error)
                _bound_size(self._early)
                continue
            await self._deliver(DeliveryReceipt(message_id, network_id, status, error))

    async def _drop(self) -> None:
        client, self._client, self._smsc = self._client, None, None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        if client is not None:
            with contextlib.suppress(Exception):
                await client.stop()

    async def close(self) -> None:
        smsc = self._smsc
        if smsc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(smsc.unbind(), 2)
        await self._drop()
