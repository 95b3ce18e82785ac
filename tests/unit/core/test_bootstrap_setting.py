"""``MEADOWLARK_BOOTSTRAP`` and ``MEADOWLARK_BOOTSTRAP_DTLS``: the bootstrap ports, or ``off``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from meadowlark.config import Settings


def test_default_and_off_and_an_address(monkeypatch):
    monkeypatch.delenv("MEADOWLARK_BOOTSTRAP", raising=False)
    default = Settings(dev=True).bootstrap
    assert default is not None and (default.host, default.port) == ("0.0.0.0", 5783)
    for off in ("off", "OFF", " off "):
        monkeypatch.setenv("MEADOWLARK_BOOTSTRAP", off)
        assert Settings(dev=True).bootstrap is None
    monkeypatch.setenv("MEADOWLARK_BOOTSTRAP", "[::1]:5800")
    address = Settings(dev=True).bootstrap
    assert address is not None and (address.host, address.port) == ("::1", 5800)


@pytest.mark.parametrize("bad", ["", "5783", "host:", "host:99999", "on"])
def test_bad_addresses_are_refused(monkeypatch, bad):
    monkeypatch.setenv("MEADOWLARK_BOOTSTRAP", bad)
    with pytest.raises(ValidationError):
        Settings(dev=True)


def test_the_dtls_bootstrap_port_defaults_to_5784_and_can_be_off(monkeypatch):
    monkeypatch.delenv("MEADOWLARK_BOOTSTRAP_DTLS", raising=False)
    default = Settings(dev=True).bootstrap_dtls
    assert default is not None and (default.host, default.port) == ("0.0.0.0", 5784)
    monkeypatch.setenv("MEADOWLARK_BOOTSTRAP_DTLS", "off")
    assert Settings(dev=True).bootstrap_dtls is None
    monkeypatch.setenv("MEADOWLARK_BOOTSTRAP_DTLS", "127.0.0.1:0")
    address = Settings(dev=True).bootstrap_dtls
    assert address is not None and (address.host, address.port) == ("127.0.0.1", 0)
    monkeypatch.setenv("MEADOWLARK_BOOTSTRAP_DTLS", "host:99999")
    with pytest.raises(ValidationError):
        Settings(dev=True)
