"""A store whose PSKs were sealed under another server key (a changed
MEADOWLARK_SECRET_KEY): the devices API keeps answering (no 500), never shows the key,
and re-sending a device's key seals it anew under the current one."""

from __future__ import annotations

import secrets

import pytest

API = "/api/coiotedm/v3"
KEY_HEX = "c0ffee00" * 4


@pytest.fixture(scope="module")
def first_and_second(server_factory, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("shared-data")
    first = server_factory(data_dir=data_dir, secret_key="first-server-secret-" + "1" * 40)
    second = server_factory(data_dir=data_dir, secret_key="second-server-secret-" + "2" * 40)
    return first, second


def test_devices_stay_usable_and_a_re_sent_key_is_sealed_anew(first_and_second):
    first, second = first_and_second
    endpoint = f"rekey-{secrets.token_hex(3)}"
    identity = f"id-{endpoint}"
    with first.admin() as http:
        response = http.post(
            f"{API}/devices",
            json={
                "properties": {"endpointName": endpoint},
                "dtlsIdentity": identity,
                "dtlsPsk": {"HexadecimalPsk": KEY_HEX},
            },
        )
        assert response.status_code == 201, response.text
    assert first.runtime.psk_keyring[identity] == bytes.fromhex(KEY_HEX)

    with second.admin() as http:
        bodies = []
        for method, path, body in (
            ("GET", f"{API}/devices/{endpoint}", None),
            ("GET", f"{API}/devices/find/details", None),
            ("PUT", f"{API}/devices/{endpoint}", {"friendlyName": "still managed"}),
            ("PUT", f"{API}/devices/{endpoint}", {"dtlsIdentity": identity + "-2"}),
            ("PUT", f"{API}/devices/{endpoint}", {"dtlsPsk": {"HexadecimalPsk": KEY_HEX}}),
        ):
            response = http.request(method, path, json=body)
            assert response.status_code in (200, 204), (path, response.text)
            bodies.append(response.text)
        assert all(KEY_HEX not in body and "enc1:" not in body for body in bodies)
        audit = http.get("/api/admin/audit?limit=100").text
        assert KEY_HEX not in audit
    # the re-sent key now opens under the second server's key (applied at commit)
    assert second.runtime.psk_keyring[identity + "-2"] == bytes.fromhex(KEY_HEX)

    with second.admin() as http:
        assert http.delete(f"{API}/devices/{endpoint}").status_code == 204
    assert identity + "-2" not in second.runtime.psk_keyring
