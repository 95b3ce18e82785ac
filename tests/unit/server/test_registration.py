"""Register/Update validation, the registration store and the per-address rate limit."""

from __future__ import annotations

import pytest

from meadowlark.lwm2m.codec.link_format import format_links
from meadowlark.server.registration import (
    RegistrationRateLimiter,
    RegistrationRejected,
    SharedObjectLists,
    parse_register,
    parse_update,
)
from meadowlark.server.transport import BAD_REQUEST, PRECONDITION_FAILED

VERSIONS = ("1.0", "1.1", "1.2")
OBJECTS = b'</>;rt="oma.lwm2m";ct=110,</1>;ver=1.1,</1/0>,</3/0>'


def register(*query: str, payload: bytes = OBJECTS):
    return parse_register(query, payload, 40, VERSIONS)


def rejected_code(*query: str, payload: bytes = OBJECTS):
    with pytest.raises(RegistrationRejected) as caught:
        register(*query, payload=payload)
    return caught.value.code


def test_can_parse_a_1_1_registration_with_queue_mode():
    params = register("ep=dev-1", "lt=300", "lwm2m=1.1", "b=U", "Q")
    assert params.endpoint == "dev-1"
    assert params.lifetime == 300
    assert params.queue_mode
    assert params.objects.content_formats == (110,)
    assert params.objects.objects[1].version == "1.1"


def test_defaults_apply_when_optional_parameters_are_missing():
    params = register("ep=dev-1")
    assert (params.lifetime, params.lwm2m_version, params.binding) == (86400, "1.0", "U")
    assert not params.queue_mode


def test_1_0_queue_mode_comes_from_the_binding():
    assert register("ep=a", "b=UQ").queue_mode


@pytest.mark.parametrize(
    "query",
    [
        ("lt=60",),
        ("ep=",),
        ("ep=" + "x" * 151,),
        ("ep=a", "lt=0"),
        ("ep=a", "lt=-5"),
        ("ep=a", "lt=ten"),
        ("ep=a", "ep=b"),
        ("ep=a", "lwm2m=one"),
        ("ep=a", "b=X"),
        ("ep=a", "lwm2m=1.1", "b=UU"),
        ("ep=a", "lwm2m=1.1", "Q=1"),
    ],
)
def test_refuses_bad_parameters_with_4_00(query):
    assert rejected_code(*query) == BAD_REQUEST


def test_refuses_a_bad_link_format_with_4_00():
    assert rejected_code("ep=a", payload=b"</3/0") == BAD_REQUEST


@pytest.mark.parametrize("version", ["1.3", "2.0", "0.9"])
def test_refuses_unsupported_versions_with_4_12(version):
    assert rejected_code("ep=a", f"lwm2m={version}") == PRECONDITION_FAILED


def test_a_server_without_1_2_answers_1_2_with_4_12():
    with pytest.raises(RegistrationRejected) as caught:
        parse_register(("ep=a", "lwm2m=1.2"), OBJECTS, 40, ("1.0", "1.1"))
    assert caught.value.code == PRECONDITION_FAILED


def test_update_changes_only_what_it_carries():
    params = parse_update(("lt=120",), b"", None, "1.1")
    assert params.lifetime == 120
    assert params.binding is None and params.objects is None and params.queue_mode is None


def test_1_0_update_binding_without_q_ends_queue_mode():
    assert parse_update(("b=U",), b"", None, "1.0").queue_mode is False


def test_rate_limiter_counts_per_host_per_minute():
    now = [0.0]
    limiter = RegistrationRateLimiter(2, clock=lambda: now[0])
    assert limiter.retry_after("10.0.0.1") is None
    assert limiter.retry_after("10.0.0.1") is None
    assert limiter.retry_after("10.0.0.1") == 60
    assert limiter.retry_after("10.0.0.2") is None
    now[0] = 61.0
    assert limiter.retry_after("10.0.0.1") is None


def test_devices_sending_the_same_links_share_one_object_list():
    links = b"</1/0>,</3/0>,</3303>;ver=1.1"
    first = parse_register(["ep=a"], links, 40, VERSIONS)
    second = parse_register(["ep=b"], bytearray(links), 40, VERSIONS)
    other = parse_register(["ep=c"], b"</1/0>,</3/0>", 40, VERSIONS)
    assert first.objects is second.objects
    assert other.objects is not first.objects and 3303 not in other.objects.objects
    assert first.objects.objects[3303].version == "1.1"


def test_a_full_cache_forgets_the_oldest_list_and_still_parses():
    shared = SharedObjectLists(capacity=2)
    one, two, three = (shared.parse(f"</{n}/0>".encode()) for n in (1, 2, 3))
    assert shared.parse(b"</3/0>") is three and shared.parse(b"</2/0>") is two
    again = shared.parse(b"</1/0>")
    assert again is not one and again == one
    assert shared.versions(one) is shared.versions(one)


def test_a_shared_list_is_formatted_once_for_the_store():
    shared = SharedObjectLists()
    objects = shared.parse(b'</>;rt="oma.lwm2m",</1/0>,</3/0>,</3303>;ver=1.1')
    text = shared.links_text(objects)
    assert text == format_links(objects.links)
    assert shared.links_text(objects) is text
    assert shared.links_text(shared.parse(b"</1/0>")) == "</1/0>"


def test_an_object_list_a_fleet_shares_is_parsed_once_and_errors_stay_errors():
    links = b'</>;ct="60 112",</1/0>,</3/0>,</3303/0>;ver=1.1'
    first = parse_register(["ep=a", "lwm2m=1.1"], links, 40, ["1.1"])
    second = parse_register(["ep=b", "lwm2m=1.1"], bytes(links), 40, ["1.1"])
    assert first.objects is second.objects
    assert set(first.objects.objects) == {1, 3, 3303}
    for _ in range(2):
        with pytest.raises(RegistrationRejected) as caught:
            parse_register(["ep=c", "lwm2m=1.1"], b"</3/0", 40, ["1.1"])
        assert caught.value.code == BAD_REQUEST
