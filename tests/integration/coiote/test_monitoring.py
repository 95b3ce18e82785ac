# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""Monitoring end to end: simulated devices over real UDP notify known values and answer
reads; the samples, the paging (hasNext, cursors) and the numerical and textual
aggregates equal what they sent; bad input gets the reference's codes."""

from __future__ import annotations

import secrets
import statistics
import time
from typing import Any

import pytest

from lwm2m_harness import devices, eventually, server  # noqa: F401 - fixtures
from meadowlark.lwm2m.path import LwM2mPath

COIOTE = "/api/coiotedm/v3"
LWM2M = "/api/lwm2m/v1/clients"
SENSOR = "/3303/0/5700"
APPLICATION_TYPE = "/3303/0/5750"
TEMPERATURES = {0: [21.5, 22.25, -3.0, 40.125, 22.25], 1: [10.0, 11.5, 12.75]}
LABELS = {0: ["idle", "busy", "idle"], 1: ["busy"]}
SINCE = {"timeRangeStart": "0"}


@pytest.fixture(scope="module")
def fleet(server, given_on) -> dict[str, Any]:
    """Two registered devices in a group with a named monitoring; the values they sent."""
    tag = secrets.token_hex(3)
    group = f"mon-{tag}"
    endpoints = [f"mon-{tag}-{n}" for n in range(2)]
    started = []
    with server.admin() as http:
        assert http.post(f"{COIOTE}/groups", json={"id": group}).status_code == 201
        for endpoint in endpoints:
            body = {"properties": {"endpointName": endpoint}, "directGroups": [group]}
            assert http.post(f"{COIOTE}/devices", json=body).status_code == 201
        monitoring = {
            "name": f"mon-{tag}",
            "groupId": group,
            "resources": [SENSOR, APPLICATION_TYPE],
            "source": "notifications",
        }
        created = http.post(f"{COIOTE}/monitoring", json=monitoring)
        assert created.status_code == 201, created.text
    from meadowlark.simulator import SimulatedDevice

    async def register(endpoint: str) -> SimulatedDevice:
        device = SimulatedDevice(endpoint, server.server_uri)
        await device.start()
        return device

    for endpoint in endpoints:
        started.append(server.call(register(endpoint)))
    try:
        with server.admin() as http:
            for n, endpoint in enumerate(endpoints):
                first, *rest = TEMPERATURES[n]
                _set_quietly(server, started[n], first)  # the Observe's answer carries it
                observed = http.post(f"{LWM2M}/{endpoint}{SENSOR}/observe")
                assert observed.status_code == 200, observed.text
                eventually(lambda endpoint=endpoint: server.runtime.lwm2m.observed_paths(endpoint))
                _arrived(server, started[n], first)
                for value in rest:
                    _notify(server, started[n], value)
                for label in LABELS[n]:  # written, then read back: the read is sampled
                    written = http.put(
                        f"{LWM2M}/{endpoint}{APPLICATION_TYPE}", json={"value": label}
                    )
                    assert written.status_code == 200, written.text
                    assert http.get(f"{LWM2M}/{endpoint}{APPLICATION_TYPE}").status_code == 200
                    time.sleep(0.01)
        expected = len(TEMPERATURES[0]) + len(LABELS[0]) + len(TEMPERATURES[1]) + len(LABELS[1])
        eventually(lambda: _stored_samples(server) >= expected, timeout=20)
        yield {"group": group, "name": f"mon-{tag}", "endpoints": endpoints}
    finally:
        for device in started:
            server.call(device.stop())


def _set_quietly(server, device, value: float) -> None:
    async def change() -> None:
        device.objects.set_temperature(value)

    server.call(change())


def _notify(server, device, value: float) -> None:
    """Set the sensor and wait until the server has the value (one notification each)."""

    async def change() -> None:
        device.set_temperature(value)

    server.call(change())
    _arrived(server, device, value)


def _arrived(server, device, value: float) -> None:
    def arrived() -> bool:
        cached = server.call(
            server.runtime.lwm2m.cached_values(device.endpoint_name, LwM2mPath.parse(SENSOR))
        )
        return (
            cached.get(LwM2mPath.parse(SENSOR)) is not None
            and cached[LwM2mPath.parse(SENSOR)].value == value
        )

    eventually(arrived)
    time.sleep(0.005)  # samples of one resource are one per millisecond


def _stored_samples(server) -> int:
    from sqlalchemy import func, select

    from meadowlark.store.monitoring_models import MonitoringSample

    async def count() -> int:
        await server.runtime.monitoring.writer.drained()
        async with server.runtime.db.session() as session:
            return int(await session.scalar(select(func.count()).select_from(MonitoringSample)))

    return server.call(count())


def _walk_samples(http, name: str, endpoint: str, limit: int) -> list[dict[str, Any]]:
    page = http.get(
        f"{COIOTE}/monitoringData/samples/{name}/{endpoint}", params={**SINCE, "limit": limit}
    )
    assert page.status_code == 200, page.text
    seen = list(page.json()["batch"])
    pages = 1
    while page.json()["hasNext"]:
        assert len(page.json()["batch"]) == limit
        page = http.get(
            f"{COIOTE}/monitoringData/moreSamples", params={"cursor": page.json()["nextCursor"]}
        )
        assert page.status_code == 200, page.text
        seen.extend(page.json()["batch"])
        pages += 1
    assert page.json()["nextCursor"] is None
    return seen


def test_samples_equal_what_the_devices_sent_and_paging_walks_each_once(server, fleet):
    with server.admin() as http:
        for n, endpoint in enumerate(fleet["endpoints"]):
            whole = _walk_samples(http, fleet["name"], endpoint, 2048)
            for limit in (1, 2, 3):
                paged = _walk_samples(http, fleet["name"], endpoint, limit)
                assert paged == whole  # every sample exactly once, in the same order
            dates = [(s["date"], s["lwm2mUrl"]) for s in whole]
            assert dates == sorted(dates)
            assert [s["value"] for s in whole if s["lwm2mUrl"] == SENSOR] == TEMPERATURES[n]
            labels = [s["value"] for s in whole if s["lwm2mUrl"] == APPLICATION_TYPE]
            assert labels == LABELS[n]
            assert {s["deviceId"] for s in whole} == {endpoint}


def test_device_data_pages_by_last_point_timestamp(server, fleet):
    endpoint = fleet["endpoints"][0]
    url = f"{COIOTE}/deviceMonitoring/data/{endpoint}/resourceUrl/{SENSOR}"
    with server.admin() as http:
        values, start, pages = [], "0", 0
        while True:
            page = http.get(url, params={"timeRangeStart": start, "limit": 2})
            assert page.status_code == 200, page.text
            body = page.json()
            assert body["metadata"] == {"deviceId": endpoint, "lwm2mUrl": SENSOR, "alias": None}
            values.extend(point["value"] for point in body["data"])
            pages += 1
            if not body["hasNext"]:
                break
            start = body["lastPointTimestamp"]
        assert values == TEMPERATURES[0]
        assert pages == 3
        # the seed's form of the same route
        seed = http.get(f"{COIOTE}/deviceMonitoring/{endpoint}/resourceUrl/{SENSOR}", params=SINCE)
        assert [p["value"] for p in seed.json()["data"]] == TEMPERATURES[0]


def test_aliases_name_urls_and_read_the_same_data(server, fleet):
    endpoint = fleet["endpoints"][1]
    base = f"{COIOTE}/deviceMonitoring/configuration/device/{endpoint}"
    with server.admin() as http:
        created = http.post(f"{base}/alias", json={"lwm2mUrl": SENSOR, "alias": "temperature"})
        assert created.status_code == 201, created.text
        assert created.json() == {"lwm2mUrl": SENSOR, "alias": "temperature"}
        taken = http.post(f"{base}/alias", json={"lwm2mUrl": "/3/0/9", "alias": "temperature"})
        assert taken.status_code == 409
        assert http.get(f"{base}/aliases").json() == [{"lwm2mUrl": SENSOR, "alias": "temperature"}]
        for url in (
            f"{COIOTE}/deviceMonitoring/data/{endpoint}/alias/temperature",
            f"{COIOTE}/deviceMonitoring/{endpoint}/alias/temperature",
        ):
            page = http.get(url, params=SINCE)
            assert page.status_code == 200, page.text
            assert [p["value"] for p in page.json()["data"]] == TEMPERATURES[1]
            assert page.json()["metadata"]["alias"] == "temperature"
        assert http.delete(f"{base}/resourceUrl/{SENSOR}").status_code == 204
        assert http.get(f"{base}/aliases").json() == []
        gone = http.get(
            f"{COIOTE}/deviceMonitoring/data/{endpoint}/alias/temperature", params=SINCE
        )
        assert gone.status_code == 404


def test_numerical_and_textual_aggregates_equal_the_sent_values(server, fleet):
    everything = [v for values in TEMPERATURES.values() for v in values]
    route = f"{COIOTE}/monitoringData/aggregates"
    one_bucket = {"timeRangeStart": str(int(time.time() * 1000) - 3_600_000), "interval": "7200"}
    with server.admin() as http:
        numeric = http.get(
            f"{route}/numerical/{fleet['name']}/{fleet['group']}{SENSOR}",
            params=one_bucket,
        )
        assert numeric.status_code == 200, numeric.text
        (bucket,) = numeric.json()
        assert bucket["min"] == min(everything)
        assert bucket["max"] == max(everything)
        assert bucket["avg"] == pytest.approx(statistics.fmean(everything))
        assert bucket["count"] == len(everything)
        textual = http.get(
            f"{route}/textual/{fleet['name']}/{fleet['group']}{APPLICATION_TYPE}",
            params=one_bucket,
        )
        assert textual.status_code == 200, textual.text
        (counts,) = textual.json()
        assert counts["counts"] == {"idle": 2, "busy": 2}
        # narrow buckets: every sample in exactly one, counts add up
        recent = http.get(
            f"{route}/numerical/{fleet['name']}/{fleet['group']}{SENSOR}",
            params={"timeRangeStart": str(int(time.time() * 1000) - 600_000), "interval": "1"},
        )
        assert sum(b["count"] for b in recent.json()) == len(everything)
        assert min(b["min"] for b in recent.json()) == min(everything)


def _error(response, status: int, code: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert body["error"] and body["message"]


def test_bad_input_gets_the_reference_codes(server, fleet, given_on, given_role):
    endpoint = fleet["endpoints"][0]
    data = f"{COIOTE}/deviceMonitoring/data/{endpoint}/resourceUrl"
    samples = f"{COIOTE}/monitoringData/samples/{fleet['name']}/{endpoint}"
    with server.admin() as http:
        for limit in ("0", "5000", "-1", "x"):
            _error(http.get(f"{data}{SENSOR}", params={**SINCE, "limit": limit}), 400, 4001)
            _error(http.get(samples, params={**SINCE, "limit": limit}), 400, 4001)
        for url in ("/3303/x/5700", "/3303", "/1/2/3/4/5", "/3303/0/70000"):
            _error(http.get(f"{data}{url}", params=SINCE), 400, 4003)
        _error(http.get(f"{data}/0/0/3", params=SINCE), 400, 4042)
        backwards = {"timeRangeStart": "2000", "timeRangeEnd": "1000"}
        _error(http.get(f"{data}{SENSOR}", params=backwards), 400, 4000)
        _error(http.get(samples, params=backwards), 400, 4000)
        _error(http.get(f"{data}{SENSOR}"), 400, 4000)  # timeRangeStart is required
        _error(
            http.get(f"{COIOTE}/monitoringData/moreSamples", params={"cursor": "forged"}), 400, 4000
        )
        # monitoring is off for a device outside every monitoring
        loner = f"mon-loner-{secrets.token_hex(3)}"
        assert (
            http.post(f"{COIOTE}/devices", json={"properties": {"endpointName": loner}}).status_code
            == 201
        )
        _error(
            http.get(f"{COIOTE}/deviceMonitoring/data/{loner}/resourceUrl{SENSOR}", params=SINCE),
            503,
            5031,
        )
        enabled = f"{COIOTE}/deviceMonitoring/configuration/device/{loner}/enabled"
        assert http.get(enabled).json() == {"enabled": False}
        assert (
            http.post(f"{COIOTE}/deviceMonitoring/configuration/device/{loner}/enable").status_code
            == 200
        )
        assert http.get(enabled).json() == {"enabled": True}
        page = http.get(f"{COIOTE}/deviceMonitoring/data/{loner}/resourceUrl{SENSOR}", params=SINCE)
        assert page.status_code == 200 and page.json()["data"] == []
        # nothing half-created on bad input
        before = http.get(f"{COIOTE}/monitoring").json()
        bad_bodies = [
            {"name": "half", "groupId": fleet["group"], "resources": [SENSOR, "/0/0/1"]},
            {"name": "half", "groupId": fleet["group"], "resources": ["/bad"]},
            {"name": "half", "groupId": fleet["group"], "resources": [SENSOR], "source": "x"},
            {
                "name": "half",
                "groupId": fleet["group"],
                "resources": [SENSOR],
                "source": "periodicReads",
            },
            {"name": "half", "groupId": "no-such-group", "resources": [SENSOR]},
        ]
        for body in bad_bodies:
            assert http.post(f"{COIOTE}/monitoring", json=body).status_code in (400, 404)
        assert http.get(f"{COIOTE}/monitoring").json() == before
        _error(
            http.post(
                f"{COIOTE}/deviceMonitoring/configuration/device/{loner}/alias",
                json={"lwm2mUrl": "/x", "alias": "a"},
            ),
            400,
            4003,
        )
        assert (
            http.get(f"{COIOTE}/deviceMonitoring/configuration/device/{loner}/aliases").json() == []
        )
    # a caller without the monitoring permission: 403 with code 4030
    given = given_on(server)
    viewer = given.user(roles=[given_role(["GET devices"])])
    with server.client(given.token(viewer)) as http:
        _error(http.get(f"{data}{SENSOR}", params=SINCE), 403, 4030)
        _error(http.get(f"{COIOTE}/monitoring"), 403, 4030)


def test_periodic_reads_sample_the_configured_resources(server, devices, given_on):
    tag = secrets.token_hex(3)
    group, endpoint = f"reads-{tag}", f"reads-{tag}-0"
    with server.admin() as http:
        assert http.post(f"{COIOTE}/groups", json={"id": group}).status_code == 201
        body = {"properties": {"endpointName": endpoint}, "directGroups": [group]}
        assert http.post(f"{COIOTE}/devices", json=body).status_code == 201
    device = devices(endpoint)

    async def set_value() -> None:
        device.objects.set_temperature(7.5)

    server.call(set_value())
    with server.admin() as http:
        monitoring = {
            "name": f"reads-{tag}",
            "groupId": group,
            "resources": [SENSOR],
            "source": "periodicReads",
            "readInterval": 10,
        }
        assert http.post(f"{COIOTE}/monitoring", json=monitoring).status_code == 201
        # the server's own round (every second) may have sent it already
        server.call(server.runtime.monitoring.read_due())

        def sampled() -> list[Any]:
            server.call(server.runtime.monitoring.writer.drained())
            page = http.get(f"{COIOTE}/monitoringData/samples/reads-{tag}/{endpoint}", params=SINCE)
            return [s["value"] for s in page.json()["batch"]]

        assert eventually(sampled) == [7.5]
        # not due again before its interval is over
        assert server.call(server.runtime.monitoring.read_due(time.monotonic() + 1)) == 0


def test_periodic_reads_of_a_sleeping_device_wait_for_it_to_wake(server, devices):
    """The read goes through the queue-mode machinery: queued while the device sleeps,
    sent at its next Update, and the answer is a sample."""
    tag = secrets.token_hex(3)
    group, endpoint = f"sleepy-{tag}", f"sleepy-{tag}-0"
    with server.admin() as http:
        assert http.post(f"{COIOTE}/groups", json={"id": group}).status_code == 201
        body = {"properties": {"endpointName": endpoint}, "directGroups": [group]}
        assert http.post(f"{COIOTE}/devices", json=body).status_code == 201
    device = devices(endpoint, queue_mode=True)

    async def asleep_at(value: float) -> None:
        device.objects.set_temperature(value)
        server.runtime.lwm2m.queue_mode._on_awake_over(endpoint)

    server.call(asleep_at(3.25))
    with server.admin() as http:
        monitoring = {
            "name": f"sleepy-{tag}",
            "groupId": group,
            "resources": [SENSOR],
            "source": "periodicReads",
            "readInterval": 10,
        }
        assert http.post(f"{COIOTE}/monitoring", json=monitoring).status_code == 201
        server.call(server.runtime.monitoring.read_due())  # or the server's own round did
        route = f"{COIOTE}/monitoringData/samples/sleepy-{tag}/{endpoint}"

        def sampled() -> list[Any]:
            server.call(server.runtime.monitoring.writer.drained())
            return [s["value"] for s in http.get(route, params=SINCE).json()["batch"]]

        time.sleep(0.3)
        assert sampled() == []  # queued: the device sleeps
        server.call(device.update())  # it wakes up
        assert eventually(sampled) == [3.25]
