"""ICCID, IMEI, IMSI and MSISDN checks, and the console's Thing ids."""

from __future__ import annotations

import re

from meadowlark.core.errors import InvalidInput

THING_PREFIX = "ThingId_ICCID_"
_DIGITS = re.compile(r"^[0-9]+$")
_IMEI_URN = re.compile(r"^urn:imei(?:-imsi|-msisdn)?:([0-9]{14,16})(?:-[0-9]{1,15})?$")


def luhn_valid(digits: str) -> bool:
    """Whether the last digit is the Luhn check digit of the others (ITU-T E.118)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def validate_iccid(text: str) -> str:
    """An ICCID of 19 or 20 digits starting ``89`` (telecom) with a valid check digit."""
    iccid = text.strip()
    if not _DIGITS.fullmatch(iccid) or not 19 <= len(iccid) <= 20:
        raise InvalidInput(f"ICCID must be 19 or 20 digits: {text[:40]!r}")
    if not iccid.startswith("89"):
        raise InvalidInput(f"ICCID must start with 89 (telecommunication): {iccid!r}")
    if not luhn_valid(iccid):
        raise InvalidInput(f"ICCID check digit is wrong: {iccid!r}")
    return iccid


def with_check_digit(body: str) -> str:
    """``body`` followed by its Luhn check digit."""
    for digit in "0123456789":
        if luhn_valid(body + digit):
            return body + digit
    raise AssertionError("unreachable: one digit always completes a Luhn sum")


def optional_digits(name: str, text: str, lengths: range) -> str:
    """``text`` if empty or all digits of an allowed length, else a 400."""
    value = text.strip()
    if value and (not _DIGITS.fullmatch(value) or len(value) not in lengths):
        raise InvalidInput(
            f"{name} must be {lengths.start}-{lengths.stop - 1} digits: {text[:40]!r}"
        )
    return value


def validate_imei(text: str, name: str = "IMEI") -> str:
    return optional_digits(name, text, range(14, 17))


def validate_imsi(text: str) -> str:
    return optional_digits("IMSI", text, range(6, 16))


def validate_msisdn(text: str) -> str:
    return optional_digits("MSISDN", text.removeprefix("+"), range(5, 16))


def thing_id(iccid: str) -> str:
    return THING_PREFIX + iccid


def iccid_of(thing_id_text: str) -> str | None:
    """The ICCID in ``ThingId_ICCID_<iccid>`` (also given as ``/thing/ThingId_...``)."""
    text = thing_id_text.strip().removeprefix("/thing/")
    if not text.startswith(THING_PREFIX):
        return None
    iccid = text[len(THING_PREFIX) :]
    return iccid if _DIGITS.fullmatch(iccid) and len(iccid) <= 22 else None


def imei_of_endpoint(endpoint: str) -> str | None:
    """The IMEI an endpoint name states (``urn:imei:…``, ``urn:imei-imsi:…-…``)."""
    match = _IMEI_URN.fullmatch(endpoint)
    return match.group(1) if match else None
