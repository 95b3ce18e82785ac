"""Firmware update end to end: an image uploaded over REST (streamed, size-limited) reaches
simulated devices over real UDP and HTTP, pulled over CoAP block-wise or HTTP, or pushed
block-wise to /5/0/0; the update procedure follows the device to its new version, and
reports the failures the device is told to make. Tenancy and download tokens hold."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lwm2m_harness import Lwm2mTestServer, running_lwm2m_server
from meadowlark.core.firmware_contract import FirmwareOutcome
from meadowlark.simulator import DeviceTiming, SimulatedDevice
from meadowlark.simulator.coap import CoapEndpoint, CoapErrorResponse
from meadowlark.simulator.firmware import FirmwareBehaviour, build_image

COIOTE = "/api/coiotedm/v3"
MAX_IMAGE = 512 * 1024
OCTET_STREAM = {"Content-Type": "application/octet-stream"}
TIMING = DeviceTiming(ack_timeout=1.0, firmware_delay=0.1, reboot_delay=0.2)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    settings_for: Callable[..., Any],
) -> Iterator[Lwm2mTestServer]:
    settings = settings_for(
        tmp_path_factory.mktemp("fw"),
        database_url=database_url,
        firmware={"max_bytes": MAX_IMAGE},
    )
    with running_lwm2m_server(settings) as running:
        yield running


@pytest.fixture
def device(server: Lwm2mTestServer) -> Iterator[Callable[..., SimulatedDevice]]:
    started: list[SimulatedDevice] = []

    def start(**options: Any) -> SimulatedDevice:
        options.setdefault("timing", TIMING)

        async def register() -> SimulatedDevice:
            simulated = SimulatedDevice(f"fw-{secrets.token_hex(4)}", server.server_uri, **options)
            await simulated.start()
            return simulated

        simulated = server.call(register())
        started.append(simulated)
        return simulated

    yield start
    for simulated in started:
        server.call(simulated.stop())


def _chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def given_image(server: Lwm2mTestServer, image: bytes, token: str | None = None) -> str:
    """A resource with ``image`` as its data (uploaded chunked, without Content-Length)."""
    with server.client(token or server.admin_token) as http:
        created = http.post(
            f"{COIOTE}/resources",
            json={
                "name": "sensor firmware",
                "location": {"InternalLocation": {"fileName": "sensor.bin"}},
                "category": "FIRMWARE",
                "expirationTime": "ONE_DAY",
            },
        )
        assert created.status_code == 201, created.text
        resource_id = created.json()["resourceId"]
        assert created.json()["id"] == resource_id
        uploaded = http.put(
            f"{COIOTE}/resources/{resource_id}/data", content=_chunks(image), headers=OCTET_STREAM
        )
        assert uploaded.status_code == 200, uploaded.text
    return resource_id  # type: ignore[no-any-return]


def update(
    server: Lwm2mTestServer,
    simulated: SimulatedDevice,
    resource_id: str,
    method: str,
    protocol: str = "COAP",
    timeout: float = 20,
    domain_id: str = "/root/",
) -> FirmwareOutcome:
    return server.call(
        server.runtime.firmware.update(
            domain_id=domain_id,
            device_id=simulated.endpoint_name,
            resource_id=resource_id,
            transfer_method=method,
            transfer_protocol=protocol,
            timeout_seconds=timeout,
        ),
        timeout=timeout + 10,
    )


def _firmware_files(server: Lwm2mTestServer) -> list[str]:
    folder = Path(server.settings.data_dir) / "firmware"
    return sorted(os.listdir(folder)) if folder.exists() else []


# --- resources over REST --------------------------------------------------------------------


def test_image_is_uploaded_listed_downloaded_and_deleted(server):
    image = os.urandom(200_000)
    resource_id = given_image(server, image)
    with server.admin() as http:
        resource = http.get(f"{COIOTE}/resources/{resource_id}").json()
        assert resource["size"] == len(image)
        assert resource["sha256"] == hashlib.sha256(image).hexdigest()
        assert resource["location"] == {"InternalLocation": {"fileName": "sensor.bin"}}
        assert resource["domain"] == "/root/"
        assert resource_id in [r["id"] for r in http.get(f"{COIOTE}/resources").json()]
        url = http.post(f"{COIOTE}/resources/{resource_id}/downloadUrl", json={"protocol": "http"})
        assert url.status_code == 200, url.text
        address = url.json()["address"]
        coap = http.post(f"{COIOTE}/resources/{resource_id}/downloadUrl", json={"protocol": "COAP"})
        assert coap.json()["address"].startswith(f"coap://127.0.0.1:{server.coap_port}/fw/")

    downloaded = httpx.get(address)  # no credentials: the token is the credential
    assert downloaded.status_code == 200
    assert downloaded.content == image
    assert downloaded.headers["content-type"] == "application/octet-stream"

    files_before = _firmware_files(server)
    with server.admin() as http:
        assert http.delete(f"{COIOTE}/resources/{resource_id}").status_code == 204
        assert http.get(f"{COIOTE}/resources/{resource_id}").status_code == 404
    assert len(_firmware_files(server)) == len(files_before) - 1
    assert httpx.get(address).status_code == 404


def test_image_over_the_limit_is_refused_and_nothing_is_kept(server, error_body):
    resource_id = given_image(server, b"small")
    files_before = _firmware_files(server)
    too_big = os.urandom(MAX_IMAGE + 1)
    with server.admin() as http:
        data_url = f"{COIOTE}/resources/{resource_id}/data"
        error_body(http.put(data_url, content=too_big, headers=OCTET_STREAM), 413)
        error_body(http.put(data_url, content=_chunks(too_big), headers=OCTET_STREAM), 413)
        error_body(http.put(data_url, content=b"", headers=OCTET_STREAM), 400)
        error_body(http.put(data_url, content=b"x", headers={"Content-Type": "text/plain"}), 415)
        resource = http.get(f"{COIOTE}/resources/{resource_id}").json()
    assert resource["size"] == len(b"small")
    assert _firmware_files(server) == files_before
    # Other routes keep the general body limit (1 MiB by default), not the firmware one.
    assert MAX_IMAGE < server.settings.max_body_bytes


def test_bad_resource_requests_get_clear_errors(server, error_body):
    with server.admin() as http:
        body = {"name": "x", "location": {"InternalLocation": {"fileName": "x.bin"}}}
        error_body(http.post(f"{COIOTE}/resources", json={**body, "category": "NOPE"}), 400)
        error_body(http.post(f"{COIOTE}/resources", json={**body, "id": "../etc"}), 400)
        error_body(http.post(f"{COIOTE}/resources", json={**body, "location": {}}), 400)
        error_body(http.post(f"{COIOTE}/resources", json={**body, "domain": "/root/nope/"}), 404)
        created = http.post(
            f"{COIOTE}/resources", json={**body, "id": f"fw-{secrets.token_hex(3)}"}
        )
        resource_id = created.json()["id"]
        error_body(http.post(f"{COIOTE}/resources", json={**body, "id": resource_id}), 409)
        url = f"{COIOTE}/resources/{resource_id}/downloadUrl"
        error_body(http.post(url, json={"protocol": "COAP"}), 409)  # no data yet
        unknown = f"{COIOTE}/resources/nothing-{secrets.token_hex(3)}"
        error_body(http.get(unknown), 404)
        error_body(http.delete(unknown), 404)
        error_body(http.put(f"{unknown}/data", content=b"x", headers=OCTET_STREAM), 404)
        error_body(http.post(f"{unknown}/downloadUrl", json={"protocol": "COAP"}), 404)


def test_another_domains_resource_answers_like_a_missing_one(server, given, error_body):
    resource_id = given_image(server, b"root image")
    domain = given.domain()
    token = given.token(given.user(domain=domain, roles=["Admin"], account_type="admin"))
    missing = f"nothing-{secrets.token_hex(3)}"
    with server.client(token) as http:
        assert resource_id not in http.get(f"{COIOTE}/resources").text
        for rid in (resource_id, missing):
            body = error_body(http.get(f"{COIOTE}/resources/{rid}"), 404)
            assert body["message"] == f"resource {rid!r} not found"
            error_body(
                http.post(f"{COIOTE}/resources/{rid}/downloadUrl", json={"protocol": "HTTP"}), 404
            )
            error_body(
                http.put(f"{COIOTE}/resources/{rid}/data", content=b"x", headers=OCTET_STREAM), 404
            )
            error_body(http.delete(f"{COIOTE}/resources/{rid}"), 404)
    with server.admin() as http:
        assert http.get(f"{COIOTE}/resources/{resource_id}").json()["size"] == len(b"root image")


def test_wrong_or_expired_download_tokens_get_nothing(server):
    resource_id = given_image(server, b"secret image")
    images = server.runtime.firmware_images

    async def token_of(lifetime: float) -> str:
        async with server.runtime.db.session() as session:
            return images.token_for(await images.get(session, "/root/", resource_id), lifetime)

    good = server.call(token_of(60))
    expired = server.call(token_of(-1))
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for token in (expired, forged, "garbage", "0" * 32 + ".1.AAAAAAAAAAAAAAAAAAAAAA"):
        answer = httpx.get(f"{server.url}/fw", params={"token": token})
        assert answer.status_code == 404, token
        assert answer.json()["code"] == 404

        async def coap_get(token: str = token) -> None:
            endpoint = await CoapEndpoint.open(lambda _: None, ("127.0.0.1", 0))
            try:
                with pytest.raises(CoapErrorResponse) as refused:
                    await endpoint.fetch(("127.0.0.1", server.coap_port), ("fw", token), print)
                assert str(refused.value.code) == "4.04 Not Found"
            finally:
                endpoint.close()

        server.call(coap_get())
    assert httpx.get(f"{server.url}/fw", params={"token": good}).content == b"secret image"


# --- the update procedure ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "protocol"), [("Pull", "COAP"), ("Pull", "HTTP"), ("Push", "COAP")]
)
def test_firmware_update_completes(server, device, method, protocol):
    image = build_image("2.0.0", os.urandom(96 * 1024))
    resource_id = given_image(server, image)
    simulated = device()
    outcome = update(server, simulated, resource_id, method, protocol)
    assert outcome.success, outcome.summary
    assert outcome.update_result == 1
    assert (outcome.old_version, outcome.new_version) == ("1.0.0", "2.0.0")
    assert "from 1.0.0 to 2.0.0" in outcome.summary
    assert server.call(_value(simulated, "/3/0/3")) == "2.0.0"
    # The procedure's own observation of /5/0 is gone again.
    assert server.runtime.lwm2m.observed_paths(simulated.endpoint_name) == []


def test_update_follows_a_device_that_reboots_and_registers_again(server, device):
    resource_id = given_image(server, build_image("3.1.4", b"rebooting image"))
    simulated = device(firmware=FirmwareBehaviour(reboot_after_update=True))
    registrations = simulated.stats.registrations
    outcome = update(server, simulated, resource_id, "Pull", "COAP")
    assert outcome.success, outcome.summary
    assert outcome.new_version == "3.1.4"
    assert simulated.stats.registrations == registrations + 1


@pytest.mark.parametrize(
    ("behaviour", "result", "phase"),
    [
        (FirmwareBehaviour(download_failure=5), 5, "download failed"),
        (FirmwareBehaviour(download_failure=2), 2, "download failed"),
        (FirmwareBehaviour(update_failure=True), 8, "update failed"),
    ],
)
def test_failure_the_device_reports_is_the_outcome(server, device, behaviour, result, phase):
    resource_id = given_image(server, build_image("9.9.9", b"doomed"))
    simulated = device(firmware=behaviour)
    outcome = update(server, simulated, resource_id, "Pull", "HTTP")
    assert not outcome.success
    assert outcome.update_result == result
    assert phase in outcome.summary
    assert outcome.old_version == "1.0.0" and outcome.new_version is None
    assert server.call(_value(simulated, "/3/0/3")) == "1.0.0"


def test_corrupted_push_fails_the_integrity_check(server, device):
    image = bytearray(build_image("4.0.0", b"payload" * 100))
    image[-1] ^= 0xFF
    resource_id = given_image(server, bytes(image))
    outcome = update(server, device(), resource_id, "Push")
    assert (outcome.success, outcome.update_result) == (False, 5)
    assert "integrity check failure" in outcome.summary


def test_procedure_refusals_are_outcomes(server, device, given):
    resource_id = given_image(server, b"image")
    simulated = device()
    other = given.domain()
    outcomes = [
        update(server, simulated, resource_id, "Pull", domain_id=other),  # device out of scope
        update(server, simulated, f"nothing-{secrets.token_hex(3)}", "Pull"),
        update(server, simulated, resource_id, "Teleport"),
    ]
    assert [o.success for o in outcomes] == [False, False, False]
    assert "not found" in outcomes[0].summary and "not found" in outcomes[1].summary
    assert "Pull or Push" in outcomes[2].summary


def test_update_times_out_when_the_device_never_finishes(server, device):
    resource_id = given_image(server, b"slow image")
    slow = DeviceTiming(ack_timeout=1.0, firmware_delay=60)
    simulated = device(timing=slow)
    began = time.monotonic()
    outcome = update(server, simulated, resource_id, "Push", timeout=2)
    assert not outcome.success
    assert "no update outcome within 2 s" in outcome.summary
    assert time.monotonic() - began < 8


async def _value(simulated: SimulatedDevice, path: str) -> Any:
    from meadowlark.lwm2m.path import LwM2mPath

    return simulated.objects.read(LwM2mPath.parse(path)).value  # type: ignore[union-attr]
