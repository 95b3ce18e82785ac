"""Queue mode through REST: 202 for a sleeping device, delivery after its next Update,
AWAKE/SLEEPING events; 504 when a device that should listen does not answer."""

from __future__ import annotations

import time

import pytest

from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.simulator import DeviceTiming

API = "/api/lwm2m/v1/clients"


@pytest.fixture(scope="module")
def sleepy(lab):
    """Listens for 30 s after each uplink, but the server deems it asleep after 1 s."""
    return lab.device(
        "api-sleepy",
        "1.1",
        queue_mode=True,
        timing=DeviceTiming(ack_timeout=1.0, queue_window=30.0),
    )


@pytest.fixture(scope="module")
def mute(lab):
    """Falls asleep 50 ms after each uplink, long before the server thinks it does."""
    return lab.device(
        "api-mute", "1.0", queue_mode=True, timing=DeviceTiming(ack_timeout=0.2, queue_window=0.05)
    )


def _wait_until_sleeping(lab, device) -> None:
    deadline = time.monotonic() + 5
    with lab.admin() as http:
        while not http.get(f"{API}/{device.endpoint_name}").json()["sleeping"]:
            assert time.monotonic() < deadline, "the server never deemed the device asleep"
            time.sleep(0.05)


def test_a_sleeping_device_gets_requests_after_its_update(lab, sleepy):
    ep = sleepy.endpoint_name
    with lab.events(ep=ep) as events:
        events.next("SLEEPING", timeout=5)
        with lab.admin() as http:
            written = http.put(f"{API}/{ep}/3303/0/5750", json={"value": "queued"})
            assert written.status_code == 202, written.text
            read = http.get(f"{API}/{ep}/3/0/0")
            assert read.status_code == 202, read.text
        write_id, read_id = written.json()["requestId"], read.json()["requestId"]
        assert written.json() == {"requestId": write_id, "delayed": True}
        assert lab.call(sleepy.objects.read, LwM2mPath(3303, 0, 5750)).value != "queued"
        lab.run(sleepy.update())
        events.next("AWAKE")
        done = events.next("REQUEST_RESPONSE", lambda data: data["requestId"] == write_id)
        assert done == {"ep": ep, "requestId": write_id, "operation": "write", "success": True}
        content = events.next("REQUEST_RESPONSE", lambda data: data["requestId"] == read_id)
        assert (
            content["content"]["value"] == lab.call(sleepy.objects.read, LwM2mPath(3, 0, 0)).value
        )
    assert lab.call(sleepy.objects.read, LwM2mPath(3303, 0, 5750)).value == "queued"


def test_a_device_that_does_not_answer_is_504(lab, mute, error_body):
    lab.run(mute.update())
    time.sleep(0.2)  # the device sleeps now; the server deems it awake for another 0.8 s
    with lab.admin() as http:
        started = time.monotonic()
        response = http.get(f"{API}/{mute.endpoint_name}/3/0/0", params={"timeout": "0.5"})
    body = error_body(response, 504)
    assert "no answer" in body["message"]
    assert time.monotonic() - started < 3
