"""``MEADOWLARK_BOOTSTRAP``: the bootstrap server's address, or ``off``."""

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
