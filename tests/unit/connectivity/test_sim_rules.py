"""ICCID/IMEI checks, the SIM lifecycle and the admission policy, without I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m_registrations import make_registration
from meadowlark.connectivity.enforcement import (
    IMEI_MISMATCH,
    THING_SUSPENDED,
    ThingAdmissionPolicy,
    ThingFacts,
    ThingIndex,
)
from meadowlark.connectivity.identifiers import (
    iccid_of,
    imei_of_endpoint,
    luhn_valid,
    validate_iccid,
    with_check_digit,
)
from meadowlark.connectivity.states import ThingState, check_transition, parse_state
from meadowlark.core.errors import Conflict, InvalidInput
from meadowlark.server.registration import Registration
from meadowlark.server.transport import Peer, TrafficCounter

BODIES = st.text(alphabet="0123456789", min_size=16, max_size=17).map(lambda d: "89" + d)


@given(BODIES)
def test_a_completed_iccid_validates_and_any_other_last_digit_does_not(body):
    iccid = with_check_digit(body)
    assert validate_iccid(iccid) == iccid and iccid_of(f"ThingId_ICCID_{iccid}") == iccid
    for digit in "0123456789":
        if digit != iccid[-1]:
            with pytest.raises(InvalidInput):
                validate_iccid(body + digit)


@given(st.text(max_size=30))
def test_iccid_validation_never_crashes(text):
    try:
        assert luhn_valid(validate_iccid(text))
    except InvalidInput:
        pass


def test_known_iccid_and_bad_shapes():
    assert validate_iccid("8944110063000000071")  # a Luhn-valid 19-digit example
    for bad in (
        "",
        "89441100630000000",
        "1944110063000000071",
        "8944110063000000070",
        "89441100630000000x1",
    ):
        with pytest.raises(InvalidInput):
            validate_iccid(bad)


def test_endpoint_names_that_state_an_imei():
    assert imei_of_endpoint("urn:imei:353456789012345") == "353456789012345"
    assert imei_of_endpoint("urn:imei-imsi:353456789012345-425010000000001") == "353456789012345"
    assert imei_of_endpoint("urn:imei:12") is None and imei_of_endpoint("sensor-1") is None


def test_lifecycle():
    check_transition(ThingState.PROVISIONED, ThingState.ACTIVE)
    check_transition(ThingState.ACTIVE, ThingState.SUSPENDED)
    check_transition(ThingState.SUSPENDED, ThingState.RETIRED)
    for current, target in [
        (ThingState.ACTIVE, ThingState.RETIRED),
        (ThingState.RETIRED, ThingState.ACTIVE),
        (ThingState.SUSPENDED, ThingState.PROVISIONED),
    ]:
        with pytest.raises(Conflict):
            check_transition(current, target)
    assert parse_state(" active ") is ThingState.ACTIVE
    with pytest.raises(InvalidInput):
        parse_state("ACTIVATED")


def _registration(endpoint: str) -> Registration:
    return make_registration(endpoint, registration_id="r1", peer=Peer("192.0.2.1", 5683))


def _facts(**changes: object) -> ThingFacts:
    values: dict[str, object] = {
        "id": "ThingId_ICCID_1",
        "domain_id": "/root/",
        "state": ThingState.ACTIVE,
        "imei": "353456789012345",
        "master_imei": "",
        "lock_master_imei": False,
        "group_id": None,
        "endpoint": None,
        **changes,
    }
    return ThingFacts(**values)  # type: ignore[arg-type]


def test_policy_refuses_suspended_sims_and_imei_lock_violations():
    index = ThingIndex()
    policy = ThingAdmissionPolicy(index)
    index.put(_facts())
    assert policy.refusal(_registration("urn:imei:353456789012345"), "register") is None
    assert policy.refusal(_registration("someone-else"), "register") is None
    index.put(_facts(state=ThingState.SUSPENDED))
    refusal = policy.refusal(_registration("urn:imei:353456789012345"), "update")
    assert refusal is not None and refusal.reason == THING_SUSPENDED
    index.put(_facts(endpoint="meter-7", master_imei="353456789012345", lock_master_imei=True))
    refusal = policy.refusal(_registration("meter-7"), "register")
    assert refusal is not None and refusal.reason == IMEI_MISMATCH  # no IMEI reported
    index.note_reported_imei("meter-7", "353456789012345")
    assert policy.refusal(_registration("meter-7"), "register") is None
    index.put(_facts(endpoint="meter-7", group_id="g"))
    index.put_group("g", "3599", locked=True)
    refusal = policy.refusal(_registration("meter-7"), "register")
    assert refusal is not None and refusal.reason == IMEI_MISMATCH
    index.remove("ThingId_ICCID_1")
    assert policy.refusal(_registration("meter-7"), "register") is None


def test_traffic_counter_sums_per_address_until_drained():
    counter = TrafficCounter()
    counter.add(("192.0.2.1", 5683), received=40)
    counter.add(("192.0.2.1", 5683), sent=12)
    counter.add(("192.0.2.1", 5683), received=4)
    assert counter.drain() == {("192.0.2.1", 5683): (44, 12, 2, 1)}
    assert counter.drain() == {}
