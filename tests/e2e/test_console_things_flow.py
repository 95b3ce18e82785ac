# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""The Monogoto console's connectivity surface end to end: a Customer Admin logs in
through ``/Auth``, imports 1,000 SIMs, reads one's state as the seed's curl does, and
watches its state enforced on the real LwM2M traffic of a simulated device behind a UDP
relay that counts every byte, down to the usage report's CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from lwm2m_harness import Lwm2mTestServer, eventually, server  # noqa: F401 - fixture
from meadowlark.connectivity.identifiers import with_check_digit
from meadowlark.simulator import RegistrationError, SimulatedDevice

PASSWORD = "User-Test-Pa55word!"
THINGS = 1000


def iccid(n: int, prefix: str) -> str:
    return with_check_digit(f"8944{prefix}{n:012d}")


def _wrong_check_digit(valid: str) -> str:
    return valid[:-1] + str((int(valid[-1]) + 1) % 10)


def imei(n: int) -> str:
    return f"35{n:013d}"


# --- a UDP relay that counts what passes ------------------------------------------------------


@dataclass
class Relay:
    """device <-> relay <-> server, one device; counts the bytes of each direction."""

    server_port: int
    to_server: int = 0
    to_device: int = 0
    device: tuple[str, int] | None = None
    front: Any = None
    back: Any = None
    port: int = 0
    log: list[int] = field(default_factory=list)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        relay = self

        class Front(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                relay.device = addr
                relay.to_server += len(data)
                relay.back.sendto(data, ("127.0.0.1", relay.server_port))

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                relay.to_device += len(data)
                if relay.device is not None:
                    relay.front.sendto(data, relay.device)

        self.front, _ = await loop.create_datagram_endpoint(Front, local_addr=("127.0.0.1", 0))
        self.back, _ = await loop.create_datagram_endpoint(Back, local_addr=("127.0.0.1", 0))
        self.port = self.front.get_extra_info("sockname")[1]

    def close(self) -> None:
        self.front.close()
        self.back.close()


# --- the customer --------------------------------------------------------------------------


@dataclass
class Customer:
    server: Lwm2mTestServer
    domain: str
    login: str
    token: str
    customer_id: str
    auth: dict[str, Any]
    tag: str

    @property
    def digits(self) -> str:
        """Two digits of this run, so that two backends' ICCIDs differ."""
        return f"{int(self.tag, 16) % 100:02d}"

    def http(self, **headers: str) -> httpx.Client:
        return self.server.client(self.token, headers=headers)

    def apikey(self) -> dict[str, str]:
        return {"apikey": self.customer_id}


@pytest.fixture(scope="module")
def customer(server: Lwm2mTestServer, given: Any) -> Customer:
    tag = secrets.token_hex(3)
    domain = given.domain(f"/root/sims{tag}/")
    login = given.user(f"ca-{tag}", domain=domain, roles=["Customer Admin"])
    with server.client() as http:
        as_json = http.post("/Auth", json={"UserName": login, "Password": PASSWORD})
        as_form = http.post("/Auth", data={"UserName": login, "Password": PASSWORD})
    assert as_json.status_code == 200 and as_form.status_code == 200, as_form.text
    body = as_json.json()
    return Customer(server, domain, login, body["token"], body["CustomerId"], body, tag)


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["ICCID", "IMSI", "MSISDN", "IMEI", "name", "group", "tags"])
    writer.writerows(rows)
    return out.getvalue()


@pytest.fixture(scope="module")
def imported(customer: Customer) -> list[str]:
    """1,000 SIMs, half in group ``fleet-a``; the CSV also has broken rows."""
    with customer.http() as http:
        group = http.post("/thingsgroup", json={"ThingsGroupName": "fleet-a"})
        assert group.status_code == 201, group.text
        rows = [
            [
                iccid(n, customer.digits),
                f"42501{n:010d}",
                f"97250{n:07d}",
                imei(n),
                f"sim {n:04d}",
                "fleet-a" if n % 2 == 0 else "",
                "meters;north" if n < 10 else "",
            ]
            for n in range(THINGS)
        ]
        broken = [
            [_wrong_check_digit(iccid(4999, "77")), "", "", "", "bad check digit", "", ""],
            ["12345", "", "", "", "too short", "", ""],
            [rows[0][0], "", "", "", "duplicate of row 2", "", ""],
            [iccid(5000, "77"), "", "", "not-an-imei", "bad imei", "", ""],
            [iccid(5001, "77"), "", "", "", "unknown group", "no-such-group", ""],
        ]
        response = http.post(
            "/things/import",
            content=_csv(rows + broken),
            headers={"Content-Type": "text/csv"},
            timeout=120,
        )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["Imported"] == THINGS and report["Failed"] == len(broken), report["Failed"]
    errors = {r["Row"]: r["Error"] for r in report["Results"] if r["Error"]}
    assert sorted(errors) == list(range(THINGS + 2, THINGS + 2 + len(broken)))
    assert "check digit" in errors[THINGS + 2] and "already exists" in errors[THINGS + 4]
    return [row[0] for row in rows]


def thing(iccid_text: str) -> str:
    return f"ThingId_ICCID_{iccid_text}"


# --- access -------------------------------------------------------------------------------------


def test_customer_admin_login_carries_the_seed_profile(customer, seed_auth_example):
    seed = seed_auth_example["UserProfile"]["Permissions"]
    seed["Search"] = ["view" if a == "view7" else a for a in seed["Search"]]
    profile = customer.auth["UserProfile"]
    assert profile["Permissions"] == seed and profile["Name"] == "Customer Admin"
    assert set(customer.auth) == set(seed_auth_example)


# --- inventory ----------------------------------------------------------------------------------


def test_things_are_paged_sorted_and_filtered(customer, imported):
    with customer.http() as http:
        first = http.get("/things", params={"limit": 50, "sortBy[ThingName]": "ASC"}).json()
        last = http.get(
            "/things", params={"limit": 50, "offset": 950, "sortBy[ThingName]": "ASC"}
        ).json()
        beyond = http.get("/things", params={"limit": 50, "offset": 1000}).json()
        by_imei = http.get("/things", params={"filterBy[IMEI]": imei(7)}).json()
        desc = http.get("/things", params={"limit": 1, "sortBy[ThingName]": "DESC"}).json()
        too_many = http.get("/things", params={"limit": 51})
        bad_sort = http.get("/things", params={"sortBy[Password]": "ASC"})
    assert [t["ThingName"] for t in first] == [f"sim {n:04d}" for n in range(50)]
    assert [t["ThingName"] for t in last][-1] == "sim 0999" and beyond == []
    assert [t["ThingId"] for t in by_imei] == [thing(imported[7])]
    assert by_imei[0]["Tags"] == ["meters", "north"] and by_imei[0]["IMSI"].startswith("42501")
    assert desc[0]["ThingName"] == "sim 0999"
    assert too_many.status_code == 400 and bad_sort.status_code == 400


def test_state_reads_exactly_as_the_seed_curl_does(customer, imported):
    with customer.http(Accept="application/json") as http:
        response = http.get(f"/thing/{thing(imported[1])}/state")
    assert response.status_code == 200 and response.text == "PROVISIONED"


def test_update_needs_the_current_cas(customer, imported, error_body):
    target = thing(imported[2])
    with customer.http() as http:
        cas = http.get(f"/thing/{target}").json()["cas"]
        saved = http.put(
            "/thing/update", json={"cas": cas, "ThingId": f"/thing/{target}", "ThingName": "x"}
        )
        stale = http.put("/thing/update", json={"cas": cas, "ThingId": target, "ThingName": "y"})
        wrong = http.put(
            "/thing/update", data={"cas": "12345", "ThingId": target, "ThingName": "z"}
        )
        after = http.get(f"/thing/{target}").json()
    assert saved.status_code == 200 and saved.text == "Thing undefined successfully saved."
    assert error_body(stale, 409)["code"] == 4092 and error_body(wrong, 409)["code"] == 4092
    assert after["ThingName"] == "x" and after["cas"] == str(int(cas) + 1)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"ICCID": _wrong_check_digit(iccid(1, "66"))}, 400),
        ({"ICCID": "89440000000000000a1"}, 400),
        ({"ICCID": "894400000000000000000001"}, 400),  # too long
        ({"ICCID": ""}, 400),
        ({"ICCID": ["8944"]}, 400),
        ({"ICCID": with_check_digit("894400000000000777"), "IMEI": "12"}, 400),
    ],
)
def test_bad_things_are_refused(customer, imported, body, status, error_body):
    with customer.http() as http:
        error_body(http.post("/thing", json=body), status)


def test_bad_states_transitions_and_bodies(customer, imported, error_body):
    target = thing(imported[3])
    with customer.http() as http:
        error_body(http.put(f"/thing/{target}/state", json={"state": "FLYING"}), 400)
        error_body(http.put(f"/thing/{target}/state", json={"state": "RETIRED"}), 409)
        error_body(http.put(f"/thing/{target}/state", json={}), 400)
        error_body(
            http.put(
                f"/thing/{target}/state",
                content=b'{"state": ',
                headers={"Content-Type": "application/json"},
            ),
            400,
        )
        error_body(http.post("/thing", json=[1, 2]), 400)
        error_body(http.post("/things/import", content=b"name\nx\n"), 400)
        duplicate = http.post("/thing", json={"ICCID": imported[3]})
        state = http.get(f"/thing/{target}/state").text
    assert error_body(duplicate, 409) and state == "PROVISIONED"


# --- the LwM2M side -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def relay(server: Lwm2mTestServer) -> Iterator[Relay]:
    relay = Relay(server.coap_port)
    server.call(relay.start())
    yield relay
    relay.close()


def _usage(http: httpx.Client, thing_id: str) -> tuple[int, int]:
    usage = http.get(f"/thing/{thing_id}").json()["ActualUsage"]
    return usage["DataIn_"], usage["DataOut_"]


def test_state_is_enforced_on_real_traffic_and_everything_is_recorded(
    server, customer, imported, relay, error_body
):
    sim, sim_imei = imported[0], imei(0)
    target = thing(sim)
    runtime = server.runtime
    flush = lambda: server.call(runtime.activity.flush())  # noqa: E731
    with customer.http() as http:
        assert http.put(f"/thing/{target}/state", json={"state": "ACTIVE"}).status_code == 200
    with server.admin() as http:
        # No registration reads: the device's traffic is then only what this test makes,
        # so the counts settle and the usage report can be compared with the relay's.
        off = http.put(
            "/api/coiotedm/v3/settingValues", json={"name": "registrationRead", "value": "off"}
        )
        assert off.status_code == 204, off.text
    device = SimulatedDevice(f"urn:imei:{sim_imei}", f"coap://127.0.0.1:{relay.port}")
    server.call(device.start())
    try:
        with customer.http() as http:
            linked = eventually(lambda: http.get(f"/thing/{target}").json()["DeviceEndpoint"])
            assert linked == device.endpoint_name
            status = http.get("/thing/status", params={"ThingIds": target}).json()["Data"][0]
            assert status["ConnectionStatus"] == "CONNECTED"
            assert status["ActiveSessions"][0]["IPAddress"] == "127.0.0.1"
            # ping (needs the apikey header) and a registration update trigger
            error_body(http.post(f"/thing/{target}/ping", json={}), 401)
            error_body(http.post(f"/thing/{target}/ping", json={}, headers={"apikey": "x"}), 403)
            ping = http.post(f"/thing/{target}/ping", data={}, headers=customer.apikey())
            assert ping.status_code == 200, ping.text
            assert ping.json()[0]["sent"] == 1 and ping.json()[0]["received"] == 1
            refresh = http.get(f"/thing/{target}/refreshConnection")
            assert refresh.status_code == 200, refresh.text
            sms = http.post(f"/thing/{target}/sms", json={"Message": "wake up", "From": "ops"})
            assert sms.status_code == 200 and sms.json().startswith(f"{target}_")

            # suspend: the registration ends, and the device is refused from then on
            suspended = http.put(f"/thing/{target}/state", data={"state": "SUSPENDED"})
            assert suspended.text == "Thing state updated successfully."
            flush()
            with pytest.raises(RegistrationError) as refused:
                server.call(device.update())
            assert "4.03" in str(refused.value) or "FORBIDDEN" in str(refused.value)
            status = http.get("/thing/status", params={"ThingIds": target}).json()["Data"][0]
            assert status["ConnectionStatus"] == "DISCONNECTED"
            assert status["LastDisconnectionTime"] is not None
            error_body(http.post(f"/thing/{target}/sms", json={"Message": "x"}), 409)

            # resume: it registers again
            assert http.put(f"/thing/{target}/state", json={"state": "ACTIVE"}).status_code == 200
            server.call(device.start())
            eventually(
                lambda: (
                    http.get("/thing/status", params={"ThingIds": target}).json()["Data"][0][
                        "ConnectionStatus"
                    ]
                    == "CONNECTED"
                )
            )

            # Every datagram counts, the refused Update and Register included: they went
            # to and from the address the device registers at again.
            def counted() -> tuple[int, int] | None:
                flush()
                usage = _usage(http, target)
                return usage if usage == (relay.to_server, relay.to_device) else None

            used_in, used_out = eventually(counted)

            # everything is in the event log
            cdr = http.post(
                "/thing/searchCDR",
                json={"ThingIdELK": target, "limit": "1000"},
                headers=customer.apikey(),
            )
            assert cdr.status_code == 200, cdr.text
            kinds = {hit["_source"]["EsDataType"] for hit in cdr.json()["hits"]}
            assert {
                "STATE_CHANGE",
                "REGISTRATION",
                "DEREGISTRATION",
                "REGISTRATION_REFUSED",
                "PING",
                "REFRESH_CONNECTION",
                "MT_SMS",
                "DATA",
            } <= kinds
            sms_hits = http.post(
                "/thing/searchCDR",
                data={"ThingIdELK": target, "EsDataTypeELK": "MT_SMS", "limit": 5},
                headers=customer.apikey(),
            ).json()
            assert sms_hits["totalResults"] == 1
            assert sms_hits["hits"][0]["_source"]["message"] == "Success"
            assert sms_hits["hits"][0]["_source"]["MessageType"] == "CDR"
            error_body(http.post("/thing/searchCDR", json={}), 401)

            # the usage report's numbers are the relay's
            template = http.post(
                "/report-template",
                json={
                    "Name": "usage today",
                    "ReportPeriod": {"startDate": 0, "endDate": 4_102_444_800_000},
                },
            ).json()
            history = http.post(f"/report-history/{template}").json()
            listed = http.get(
                "/report-history/byTemplate", params={"ReportTemplateId": template}
            ).json()["dbResponse"]
            assert listed[0]["ReportHistoryId"] == history
            report = http.get(
                f"/report-history/downloadReport/csv/{quote(listed[0]['csvPath'], safe='')}"
            )
            assert report.status_code == 200 and report.headers["content-type"].startswith(
                "text/csv"
            )
            rows = {row["Thing Name"]: row for row in csv.DictReader(io.StringIO(report.text))}
            row = rows["sim 0000"]
            assert int(row["Data In (bytes)"]) == used_in
            assert int(row["Data Out (bytes)"]) == used_out
            assert row["MT SMS"] == "1" and row["Roaming Partner"]
    finally:
        server.call(device.stop())


def test_imei_lock_refuses_another_device(server, customer, imported, relay, error_body):
    sim = thing(imported[4])
    with customer.http() as http:
        assert http.put(f"/thing/{sim}/state", json={"state": "ACTIVE"}).status_code == 200
        cas = http.get(f"/thing/{sim}").json()["cas"]
        locked = http.put(
            "/thing/update",
            json={"cas": cas, "ThingId": sim, "LockMasterImei": True, "MasterIMEI": imei(4)},
        )
        assert locked.status_code == 200, locked.text
        # A device of another IMEI is linked by hand: it is refused.
        intruder = SimulatedDevice(f"intruder-{customer.tag}", server.server_uri)
        with server.admin() as admin:
            created = admin.post(
                "/api/coiotedm/v3/devices",
                json={
                    "properties": {"endpointName": intruder.endpoint_name},
                    "domain": customer.domain,
                },
            )
            assert created.status_code == 201, created.text
        assert http.put(
            f"/thing/{sim}/device", json={"Endpoint": intruder.endpoint_name}
        ).is_success
        with pytest.raises(RegistrationError):
            server.call(intruder.start())
        server.call(server.runtime.activity.flush())
        hits = http.post(
            "/thing/searchCDR",
            json={"ThingIdELK": sim, "EsDataTypeELK": "IMEI_VIOLATION"},
            headers=customer.apikey(),
        ).json()
    server.call(intruder.stop(deregister=False))
    assert hits["totalResults"] >= 1 and hits["hits"][0]["_source"]["Severity"] == "Warning"


# --- who sees what --------------------------------------------------------------------------------


def test_group_monitor_and_other_domain_users(server, customer, imported, given, error_body):
    with customer.http() as http:
        group_id = http.get("/thingsgroups").json()[0]["ThingsGroupId"]
    group_user = given.user(f"grp-{customer.tag}", domain=customer.domain, roles=["Group"])
    group_token = given.token(group_user)
    with server.client(group_token) as http:
        assert http.get(f"/thing/{thing(imported[1])}").status_code == 200  # odd: no group
    # The user API limits it to the group; its token in hand sees the limit at once.
    with server.admin() as admin:
        limited = admin.patch(
            f"/api/coiotedm/v3/users/{group_user}", json={"thingsGroupIds": [group_id]}
        )
        assert limited.status_code == 204, limited.text
        shown = admin.get(f"/api/coiotedm/v3/users/{group_user}").json()
        assert shown["thingsGroupIds"] == [group_id]
    with server.client() as http:
        logged_in = http.post("/Auth", json={"UserName": group_user, "Password": PASSWORD})
        assert logged_in.json()["ThingsGroupIds"] == [group_id]
    monitor = given.user(f"mon-{customer.tag}", domain=customer.domain, roles=["Monitor"])
    outsider_domain = given.domain(f"/root/other{customer.tag}/")
    outsider = given.user(f"out-{customer.tag}", domain=outsider_domain, roles=["Customer Admin"])

    with server.client(group_token) as http:
        seen = http.get("/things", params={"limit": 50}).json()
        assert len(seen) == 50 and {t["ThingsGroupId"] for t in seen} == {group_id}
        assert http.get(f"/thing/{thing(imported[1])}").status_code == 404  # odd: no group
        assert http.get(f"/thing/{thing(imported[2])}").status_code == 200
        assert [g["ThingsGroupId"] for g in http.get("/thingsgroups").json()] == [group_id]
    with server.client(given.token(monitor)) as http:
        assert http.get(f"/thing/{thing(imported[6])}/state").text == "PROVISIONED"
        error_body(http.put(f"/thing/{thing(imported[6])}/state", json={"state": "ACTIVE"}), 403)
        error_body(http.post("/thing", json={"ICCID": iccid(9000, "55")}), 403)
        error_body(http.delete(f"/thing/{thing(imported[6])}"), 403)
        assert "IMSI" in http.get(f"/thing/{thing(imported[6])}").json()
    with server.client(given.token(outsider)) as http:
        assert http.get("/things").json() == []
        error_body(http.get(f"/thing/{thing(imported[6])}/state"), 404)
        assert http.get("/thingsgroups").json() == []
        assert http.get("/thing/status").json()["Data"] == []
