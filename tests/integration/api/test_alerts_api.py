# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""The alerts REST family on SQLite and PostgreSQL: rules per domain and group, bad input
refused with the reference's codes and nothing half-made, tenancy, listing with paging,
acknowledging, and a threshold alert raised and cleared by values read from a simulated
device over real UDP."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from lwm2m_harness import Lwm2mTestServer, eventually, server  # noqa: F401 - fixture
from meadowlark.simulator import SimulatedDevice

COIOTE = "/api/coiotedm/v3"
LWM2M = "/api/lwm2m/v1"
SENSOR = "/3303/0/5700"


def _threshold(**extra: Any) -> dict[str, Any]:
    return {
        "name": "too hot",
        "type": "threshold",
        "severity": "critical",
        "resourceUrl": SENSOR,
        "above": 30,
        "hysteresis": 2,
        **extra,
    }


@pytest.fixture(scope="module")
def tenant(server: Lwm2mTestServer, given: Any) -> dict[str, str]:
    tag = f"al{secrets.token_hex(4)}"
    domain = given.domain(f"/root/{tag}/")
    admin = given.user(f"{tag}-admin", domain=domain, roles=["Admin"], account_type="admin")
    return {"tag": tag, "domain": domain, "token": given.token(admin)}


@pytest.fixture(scope="module")
def device(server: Lwm2mTestServer, tenant: dict[str, str]) -> Iterator[SimulatedDevice]:
    endpoint = f"{tenant['tag']}-dev"
    with server.client(tenant["token"]) as http:
        created = http.post(f"{COIOTE}/devices", json={"properties": {"endpointName": endpoint}})
        assert created.status_code == 201, created.text
        assert http.post(f"{COIOTE}/groups", json={"id": f"{tenant['tag']}-g"}).status_code == 201

    async def start() -> SimulatedDevice:
        simulated = SimulatedDevice(endpoint, server.server_uri)
        await simulated.start()
        return simulated

    simulated = server.call(start())
    yield simulated
    server.call(simulated.stop())


def _rules_count(http: Any) -> int:
    return len(http.get(f"{COIOTE}/alerts/rules").json())


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "x", "type": "cpuLoad"}, 4000),
        (_threshold(resourceUrl="/3303/zero/5700"), 4003),
        (_threshold(resourceUrl="/3303/0"), 4003),
        (_threshold(resourceUrl="3303/0/5700"), 4003),
        (_threshold(above=None), 4000),
        (_threshold(hysteresis=-1), 4000),
        (_threshold(below=40), 4000),
        ({"name": "silent", "type": "noContact", "noContactMinutes": -5}, 4000),
        ({"name": "silent", "type": "noContact", "noContactMinutes": 0}, 4000),
        ({"name": "silent", "type": "noContact"}, 4000),
        ({"name": "", "type": "taskFailed"}, 4000),
        ({"name": "x", "type": "taskFailed", "severity": "apocalyptic"}, 4000),
    ],
)
def test_bad_rule_is_refused_with_its_code_and_nothing_is_made(
    server, tenant, error_body, body, code
):
    with server.client(tenant["token"]) as http:
        before = _rules_count(http)
        assert error_body(http.post(f"{COIOTE}/alerts/rules", json=body), 400)["code"] == code
        assert _rules_count(http) == before


def test_threshold_nan_is_refused(server, tenant, error_body):
    payload = '{"name": "nan", "type": "threshold", "resourceUrl": "/3303/0/5700", "above": NaN}'
    with server.client(tenant["token"]) as http:
        before = _rules_count(http)
        response = http.post(
            f"{COIOTE}/alerts/rules",
            content=payload,
            headers={"Content-Type": "application/json"},
        )
        assert 400 <= response.status_code < 500, response.text
        assert _rules_count(http) == before


def test_unknown_group_is_refused(server, tenant, error_body):
    with server.client(tenant["token"]) as http:
        before = _rules_count(http)
        body = _threshold(groupId=f"nogroup-{secrets.token_hex(3)}")
        error_body(http.post(f"{COIOTE}/alerts/rules", json=body), 404)
        assert _rules_count(http) == before


def test_rule_crud(server, tenant, device, error_body):
    with server.client(tenant["token"]) as http:
        created = http.post(
            f"{COIOTE}/alerts/rules",
            json={
                "name": "silent",
                "type": "noContact",
                "noContactMinutes": 15,
                "groupId": f"{tenant['tag']}-g",
            },
        )
        assert created.status_code == 201, created.text
        rule = created.json()
        assert rule["domain"] == tenant["domain"] and rule["severity"] == "warning"
        assert http.get(f"{COIOTE}/alerts/rules/{rule['id']}").json() == rule
        changed = http.put(f"{COIOTE}/alerts/rules/{rule['id']}", json={"noContactMinutes": 20})
        assert changed.status_code == 200, changed.text
        assert changed.json()["noContactMinutes"] == 20
        assert changed.json()["groupId"] == f"{tenant['tag']}-g"
        error_body(
            http.put(f"{COIOTE}/alerts/rules/{rule['id']}", json={"noContactMinutes": -1}), 400
        )
        assert http.get(f"{COIOTE}/alerts/rules/{rule['id']}").json()["noContactMinutes"] == 20
        ungrouped = http.put(f"{COIOTE}/alerts/rules/{rule['id']}", json={"groupId": None})
        assert ungrouped.json()["groupId"] is None
        assert ungrouped.json()["domain"] == tenant["domain"]  # never wider than it was
        assert rule["id"] in [r["id"] for r in http.get(f"{COIOTE}/alerts/rules").json()]
        assert http.delete(f"{COIOTE}/alerts/rules/{rule['id']}").status_code == 204
        error_body(http.get(f"{COIOTE}/alerts/rules/{rule['id']}"), 404)


def test_threshold_alert_from_read_values_with_hysteresis_and_acknowledge(
    server, tenant, device, error_body
):
    endpoint = device.endpoint_name
    with server.client(tenant["token"]) as http:
        rule = http.post(f"{COIOTE}/alerts/rules", json=_threshold()).json()

        def read_at(value: float) -> None:
            async def change() -> None:
                device.set_temperature(value)

            server.call(change())
            assert http.get(f"{LWM2M}/clients/{endpoint}{SENSOR}").status_code == 200
            server.call(server.runtime.alerts.idle())

        def alerts(**query: str) -> list[dict[str, Any]]:
            answer = http.get(f"{COIOTE}/alerts", params={"deviceId": endpoint, **query})
            assert answer.status_code == 200, answer.text
            return [a for a in answer.json()["alerts"] if a["ruleId"] == rule["id"]]

        read_at(25.0)
        assert alerts() == []
        read_at(31.5)
        (raised,) = alerts()
        assert raised["state"] == "raised" and raised["value"] == 31.5
        assert raised["severity"] == "critical" and "above 30" in raised["message"]
        read_at(29.0)  # back below 30 but not by the hysteresis of 2: still open
        assert [a["state"] for a in alerts()] == ["raised"]

        acknowledged = http.post(f"{COIOTE}/alerts/{raised['id']}/acknowledge")
        assert acknowledged.status_code == 200, acknowledged.text
        assert acknowledged.json()["state"] == "acknowledged"
        assert acknowledged.json()["acknowledgedBy"] == f"{tenant['tag']}-admin"
        error_body(http.post(f"{COIOTE}/alerts/{raised['id']}/acknowledge"), 409)
        read_at(35.0)  # still the same open alert
        assert len(alerts()) == 1

        read_at(27.5)
        (cleared,) = alerts()
        assert cleared["state"] == "cleared" and cleared["clearedAt"]
        read_at(33.0)  # a new alert after a cleared one
        states = [a["state"] for a in alerts()]
        assert states == ["raised", "cleared"]
        assert [a["state"] for a in alerts(state="open")] == ["raised"]
        assert http.get(f"{COIOTE}/alerts/{raised['id']}").json()["state"] == "cleared"

        # Paging: one at a time, every alert exactly once.
        seen, bookmark = [], None
        while True:
            query = {"deviceId": endpoint, "limit": "1"}
            if bookmark:
                query["pageBookmark"] = bookmark
            page = http.get(f"{COIOTE}/alerts", params=query).json()
            seen += [a["id"] for a in page["alerts"]]
            if not page["hasNext"]:
                break
            bookmark = page["nextPageBookmark"]
        assert seen == [a["id"] for a in alerts()]
        for limit in ("0", "5000"):
            assert (
                error_body(http.get(f"{COIOTE}/alerts", params={"limit": limit}), 400)["code"]
                == 4001
            )
        error_body(http.get(f"{COIOTE}/alerts", params={"state": "sleepy"}), 400)
        http.delete(f"{COIOTE}/alerts/rules/{rule['id']}")


def test_alerts_are_not_seen_from_another_domain(server, tenant, device, given, error_body):
    other = given.domain(f"/root/ot{secrets.token_hex(4)}/")
    admin = given.user(
        f"ot{secrets.token_hex(4)}", domain=other, roles=["Admin"], account_type="admin"
    )
    outsider = given.token(admin)
    with server.client(tenant["token"]) as http:
        rule = http.post(f"{COIOTE}/alerts/rules", json=_threshold(above=-1000)).json()
        assert http.get(f"{LWM2M}/clients/{device.endpoint_name}{SENSOR}").status_code == 200
        server.call(server.runtime.alerts.idle())
        alert = eventually(
            lambda: http.get(f"{COIOTE}/alerts", params={"state": "raised"}).json()["alerts"]
        )[0]
    with server.client(outsider) as http:
        assert http.get(f"{COIOTE}/alerts").json()["alerts"] == []
        assert http.get(f"{COIOTE}/alerts/rules").json() == []
        error_body(http.get(f"{COIOTE}/alerts/{alert['id']}"), 404)
        error_body(http.post(f"{COIOTE}/alerts/{alert['id']}/acknowledge"), 404)
        error_body(http.get(f"{COIOTE}/alerts/rules/{rule['id']}"), 404)
        error_body(http.delete(f"{COIOTE}/alerts/rules/{rule['id']}"), 404)
    with server.client(tenant["token"]) as http:
        assert http.get(f"{COIOTE}/alerts/{alert['id']}").json()["state"] == "raised"
        assert http.delete(f"{COIOTE}/alerts/rules/{rule['id']}").status_code == 204
