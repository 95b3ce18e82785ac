"""MT SMS over SMPP: a server configured with ``MEADOWLARK_SMS__GATEWAY=smpp`` binds to a
real SMPP 3.4 SMSC on loopback (the ``smpp34`` library's server, run by the test), submits
the console's ``POST /thing/{id}/sms`` as ``submit_sm``, records the SMSC's message id, and
records the SMSC's delivery receipt as a ``MT_SMS_DELIVERY`` event."""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("smpp34")
import smpp34  # noqa: E402

from meadowlark.config import Settings, SmsSettings  # noqa: E402
from meadowlark.connectivity.identifiers import with_check_digit  # noqa: E402
from meadowlark.connectivity.smpp import SmppGateway  # noqa: E402
from meadowlark.connectivity.sms import DeliveryReceipt, OutgoingSms  # noqa: E402

SMPP_PASSWORD = "pw-" + secrets.token_hex(2)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Smsc:
    """An SMSC on 127.0.0.1 in a thread of its own: accepts (or rejects) each submit_sm,
    records it, and answers with a delivery receipt."""

    port: int = field(default_factory=_free_port)
    binds: list[str] = field(default_factory=list)
    submitted: list[dict[str, Any]] = field(default_factory=list)
    reject: bool = False
    receipt_first: bool = False
    """Send the delivery receipt before the submit_sm_resp (a fast SMSC)."""
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    def start(self) -> None:
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.server = self.call(self._start())
        self.serving = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)

    def call(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(10)

    async def _start(self) -> smpp34.Server:
        server = smpp34.Server(host="127.0.0.1", port=self.port, system_id="TestSMSC")
        await server.start()
        return server

    async def _serve(self) -> None:
        sessions: dict[str, smpp34.Esme] = {}
        while True:
            event = await self.server.next()
            if isinstance(event, smpp34.Esme):
                sessions[event.session_id] = event
                self.binds.append(event.system_id)
            elif isinstance(event, smpp34.SubmitSmEvent):
                if self.reject:
                    event.reject(smpp34.ESME_RMSGQFUL)
                    continue
                message_id = f"smsc-{len(self.submitted) + 1}"
                self.submitted.append(
                    {
                        "to": event.destination_addr,
                        "from": event.source_addr,
                        "text": event.short_message,
                        "data_coding": event.data_coding,
                        "registered_delivery": event.registered_delivery,
                        "payload": [t.value for t in event.tlvs if t.tag == 0x0424],
                        "id": message_id,
                    }
                )
                if not self.receipt_first:
                    event.accept(message_id=message_id)
                if event.registered_delivery:
                    await sessions[event.session_id].deliver_sm(
                        event.source_addr or "000",
                        f"id:{message_id} sub:001 dlvrd:001 submit date:2611301200 "
                        "done date:2611301201 stat:DELIVRD err:000 text:".encode(),
                        source_addr=event.destination_addr,
                        esm_class=0x04,
                    )
                if self.receipt_first:
                    event.accept(message_id=message_id)

    def stop(self) -> None:
        self.serving.cancel()

        async def stop_server() -> None:
            await self.server.stop()

        self.call(stop_server())
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def smsc():
    running = Smsc()
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sms_server(server_factory, smsc):
    return server_factory(
        sms={
            "gateway": "smpp",
            "port": smsc.port,
            "system_id": "meadowlark",
            "password": SMPP_PASSWORD,
            "source_addr": "Meadowlark",
        }
    )


def test_the_password_is_a_secret():
    settings = SmsSettings(gateway="smpp", system_id="esme", password=SMPP_PASSWORD)
    assert SMPP_PASSWORD not in repr(settings) and SMPP_PASSWORD not in str(settings)
    with pytest.raises(ValueError, match="SYSTEM_ID"):
        SmsSettings(gateway="smpp")


def test_env_selects_the_gateway(monkeypatch, tmp_path):
    monkeypatch.setenv("MEADOWLARK_SMS__GATEWAY", "smpp")
    monkeypatch.setenv("MEADOWLARK_SMS__HOST", "10.0.0.9")
    monkeypatch.setenv("MEADOWLARK_SMS__PORT", "2776")
    monkeypatch.setenv("MEADOWLARK_SMS__SYSTEM_ID", "esme1")
    monkeypatch.setenv("MEADOWLARK_SMS__PASSWORD", SMPP_PASSWORD)
    sms = Settings(data_dir=tmp_path).sms
    assert (sms.gateway, sms.host, sms.port, sms.system_id) == ("smpp", "10.0.0.9", 2776, "esme1")
    assert sms.password is not None and sms.password.get_secret_value() == SMPP_PASSWORD


def test_console_sms_goes_out_over_smpp_and_its_receipt_is_an_event(
    sms_server, smsc, given_on, capfd
):
    given = given_on(sms_server)
    before, binds = len(smsc.submitted), len(smsc.binds)
    tag = secrets.token_hex(3)
    domain = given.domain(f"/root/smpp{tag}/")
    login = given.user(f"ca-{tag}", domain=domain, roles=["Customer Admin"])
    msisdn = f"97250{secrets.randbelow(10**7):07d}"
    iccid = with_check_digit(f"8944{secrets.randbelow(10**14):014d}")
    with sms_server.client() as http:
        auth = http.post("/Auth", json={"UserName": login, "Password": "User-Test-Pa55word!"})
    apikey = {"apikey": auth.json()["CustomerId"]}
    with sms_server.client(auth.json()["token"]) as http:
        thing_id = http.post("/thing", json={"ICCID": iccid, "MSISDN": msisdn}).json()["ThingId"]
        assert http.put(f"/thing/{thing_id}/state", json={"state": "ACTIVE"}).status_code == 200
        sent = http.post(f"/thing/{thing_id}/sms", json={"Message": "wake up", "From": "ops"})
        assert sent.status_code == 200, sent.text
        message_id = sent.json()
        (submitted,) = smsc.submitted[before:]
        assert submitted["to"] == msisdn and submitted["text"] == b"wake up"
        assert submitted["from"] == "ops" and submitted["registered_delivery"] == 1
        assert smsc.binds[binds:] == ["meadowlark"]

        def events(kind: str) -> list[dict[str, Any]]:
            found = http.post(
                "/thing/searchCDR",
                json={"ThingIdELK": thing_id, "EsDataTypeELK": kind},
                headers=apikey,
            )
            assert found.status_code == 200, found.text
            return [hit["_source"] for hit in found.json()["hits"]]

        (mt,) = events("MT_SMS")
        assert mt["message"] == "Success"
        assert mt["Details"]["networkMessageId"] == submitted["id"]
        assert mt["Details"]["messageId"] == message_id
        from lwm2m_harness import eventually

        (receipt,) = eventually(lambda: events("MT_SMS_DELIVERY"))
        assert receipt["Details"]["status"] == "DELIVRD"
        assert receipt["Details"]["networkMessageId"] == submitted["id"]
        assert receipt["Details"]["messageId"] == message_id
        # A rejected submit_sm is a failed MT SMS, not a 500.
        smsc.reject = True
        try:
            refused = http.post(f"/thing/{thing_id}/sms", json={"Message": "again"})
            assert refused.status_code == 200, refused.text
        finally:
            smsc.reject = False
        assert sorted(e["message"] for e in events("MT_SMS")) == ["Failure", "Success"]
    out, err = capfd.readouterr()
    assert SMPP_PASSWORD not in out + err


def test_gateway_texts_and_an_unreachable_smsc(smsc):
    async def run() -> tuple[str | None, str | None, str | None]:
        gateway = SmppGateway(
            SmsSettings(
                gateway="smpp",
                port=smsc.port,
                system_id="direct",
                password=SMPP_PASSWORD,
                registered_delivery=False,
            )
        )
        unicode = await gateway.send(OutgoingSms("m1", "972500000001", "", "שלום"))
        long = await gateway.send(OutgoingSms("m2", "972500000001", "", "x" * 300))
        await gateway.close()
        down = SmppGateway(
            SmsSettings(gateway="smpp", port=_free_port(), system_id="x", connect_timeout=2)
        )
        unreachable = await down.send(OutgoingSms("m3", "972500000001", "", "hi"))
        await down.close()
        return unicode, long, unreachable

    before = len(smsc.submitted)
    unicode, long, unreachable = asyncio.run(run())
    assert unicode and long and unreachable is None
    first, second = smsc.submitted[before:]
    assert first["data_coding"] == 0x08 and first["text"] == "שלום".encode("utf-16-be")
    assert second["text"] == b"" and second["payload"] == [b"x" * 300]
    assert first["registered_delivery"] == 0


def test_a_receipt_before_the_submit_response_is_kept(smsc):
    async def run() -> tuple[str | None, list[DeliveryReceipt]]:
        receipts: list[DeliveryReceipt] = []

        async def sink(receipt: DeliveryReceipt) -> None:
            receipts.append(receipt)

        gateway = SmppGateway(
            SmsSettings(gateway="smpp", port=smsc.port, system_id="fast", password=SMPP_PASSWORD)
        )
        gateway.receipts_to(sink)
        network_id = await gateway.send(OutgoingSms("m9", "972500000009", "", "hi"))
        for _ in range(100):
            if receipts:
                break
            await asyncio.sleep(0.02)
        await gateway.close()
        return network_id, receipts

    smsc.receipt_first = True
    try:
        network_id, receipts = asyncio.run(run())
    finally:
        smsc.receipt_first = False
    assert network_id and receipts == [DeliveryReceipt("m9", network_id, "DELIVRD", "000")]
