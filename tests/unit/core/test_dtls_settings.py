"""The DTLS listener and its limits in the settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from meadowlark.config import Settings


def test_coaps_defaults_to_5684_and_can_be_switched_off(monkeypatch):
    assert str(Settings(dev=True).coaps) == "0.0.0.0:5684"
    for off in ("off", "OFF", ""):
        monkeypatch.setenv("MEADOWLARK_COAPS", off)
        assert Settings(dev=True).coaps is None
    monkeypatch.setenv("MEADOWLARK_COAPS", "[::1]:15684")
    coaps = Settings(dev=True).coaps
    assert coaps is not None and (coaps.host, coaps.port) == ("::1", 15684)


def test_dtls_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("MEADOWLARK_DTLS__MAX_SESSIONS", "500")
    monkeypatch.setenv("MEADOWLARK_DTLS__HANDSHAKES_PER_ADDRESS_PER_SECOND", "2.5")
    dtls = Settings(dev=True).dtls
    assert dtls.max_sessions == 500 and dtls.handshakes_per_address_per_second == 2.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MEADOWLARK_COAPS", "nonsense"),
        ("MEADOWLARK_DTLS__MAX_SESSIONS", "0"),
        ("MEADOWLARK_DTLS__HANDSHAKE_TIMEOUT", "-1"),
    ],
)
def test_bad_dtls_settings_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings(dev=True)
