"""Authentication, permissions and domain scoping of the LwM2M REST API."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest

from meadowlark.auth.permissions import CATALOG
from meadowlark.simulator import SimulatedDevice

API = "/api/lwm2m/v1"
ALL = sorted(name for name in CATALOG if name.startswith("lwm2m:"))
VIEW = sorted(name for name in ALL if CATALOG[name].action == "view")
DEVICE_ROUTES = [
    ("get", ""),
    ("get", "/3/0/0"),
    ("get", "/3/0/discover"),
    ("put", "/3/0/15"),
    ("put", "/3303/0/5700/attributes?pmin=1"),
    ("post", "/3303/0/5605"),
    ("post", "/3303"),
    ("delete", "/3303/0"),
    ("post", "/3303/0/5700/observe"),
    ("delete", "/3303/0/5700/observe"),
    ("get", "/composite?paths=/3/0/0"),
    ("put", "/composite"),
    ("post", "/composite/observe?paths=/3/0/0"),
    ("delete", "/composite/observe?paths=/3/0/0"),
]


@dataclass
class Tenancy:
    acme_device: SimulatedDevice
    acme: str
    """Token of a user of the device's domain with every LwM2M permission."""
    stranger: str
    """Token of a user of a sibling domain with every LwM2M permission."""
    viewer: str
    """Token of a user of the device's domain with the view permissions only."""
    nobody: str
    """Token of a Developer account: no LwM2M permission at all."""


@pytest.fixture(scope="module")
def tenancy(lab, given) -> Tenancy:
    acme = given.domain(f"/root/acme-{secrets.token_hex(3)}/")
    other = given.domain(f"/root/other-{secrets.token_hex(3)}/")
    endpoint = f"acme-dev-{secrets.token_hex(3)}"
    lab.provision(endpoint, acme)
    device = lab.device(endpoint, "1.1")
    return Tenancy(
        acme_device=device,
        acme=given.token(given.user(domain=acme, permissions=ALL)),
        stranger=given.token(given.user(domain=other, permissions=ALL)),
        viewer=given.token(given.user(domain=acme, permissions=VIEW)),
        nobody=given.token(given.user(domain=acme)),
    )


def _call(lab, token, method: str, url: str):
    kwargs = {"json": {"value": "x"}} if method == "put" else {}
    with lab.client(token) as http:
        return getattr(http, method)(url, **kwargs)


@pytest.mark.parametrize(("method", "path"), DEVICE_ROUTES)
def test_without_credentials_is_401(lab, tenancy, method, path, error_body):
    url = f"{API}/clients/{tenancy.acme_device.endpoint_name}{path}"
    error_body(_call(lab, None, method, url), 401)


def test_listing_and_events_without_credentials_are_401(lab, error_body):
    with lab.client() as http:
        error_body(http.get(f"{API}/clients"), 401)
        error_body(http.get(f"{API}/events"), 401)


@pytest.mark.parametrize(("method", "path"), DEVICE_ROUTES)
def test_without_permission_is_403(lab, tenancy, method, path, error_body):
    url = f"{API}/clients/{tenancy.acme_device.endpoint_name}{path}"
    error_body(_call(lab, tenancy.nobody, method, url), 403)


@pytest.mark.parametrize(("method", "path"), DEVICE_ROUTES)
def test_a_device_of_another_domain_is_404_like_an_unknown_one(
    lab, tenancy, method, path, error_body
):
    url = f"{API}/clients/{tenancy.acme_device.endpoint_name}{path}"
    body = error_body(_call(lab, tenancy.stranger, method, url), 404)
    unknown = error_body(_call(lab, tenancy.stranger, method, f"{API}/clients/nobody{path}"), 404)
    assert (
        body["message"].replace(tenancy.acme_device.endpoint_name, "nobody") == unknown["message"]
    )


def test_a_device_of_a_parent_domain_is_404(lab, tenancy, dev11, error_body):
    error_body(_call(lab, tenancy.acme, "get", f"{API}/clients/{dev11.endpoint_name}/3/0/0"), 404)


def test_listing_shows_the_callers_subtree_only(lab, tenancy, dev11):
    acme_device = tenancy.acme_device.endpoint_name
    with lab.client(tenancy.acme) as http:
        assert [c["endpoint"] for c in http.get(f"{API}/clients").json()] == [acme_device]
    with lab.client(tenancy.stranger) as http:
        assert http.get(f"{API}/clients").json() == []
    with lab.admin() as http:
        seen = {c["endpoint"] for c in http.get(f"{API}/clients").json()}
    assert {acme_device, dev11.endpoint_name} <= seen


def test_a_domain_user_operates_its_devices(lab, tenancy):
    url = f"{API}/clients/{tenancy.acme_device.endpoint_name}"
    with lab.client(tenancy.acme) as http:
        assert http.put(f"{url}/3303/0/5750", json={"value": "acme"}).status_code == 200
        assert http.get(f"{url}/3303/0/5750").json()["content"]["value"] == "acme"


def test_view_permissions_read_but_do_not_change(lab, tenancy, error_body):
    url = f"{API}/clients/{tenancy.acme_device.endpoint_name}"
    with lab.client(tenancy.viewer) as http:
        assert http.get(f"{url}/3/0/0").status_code == 200
        assert http.get(f"{url}/3/0/discover").status_code == 200
        error_body(http.put(f"{url}/3/0/15", json={"value": "x"}), 403)
        error_body(http.post(f"{url}/3303/0/5605"), 403)
        error_body(http.delete(f"{url}/3303/0"), 403)
        error_body(http.post(f"{url}/3/0/9/observe"), 403)


def test_events_reach_only_the_devices_domain(lab, tenancy, dev11):
    name = tenancy.acme_device.endpoint_name
    with lab.events(tenancy.acme) as acme, lab.events(tenancy.stranger) as stranger:
        lab.run(dev11.update())
        lab.run(tenancy.acme_device.update())
        acme.next("UPDATED", lambda data: data["endpoint"] == name)
        more_for_acme = acme.drain(0.2)
        for_stranger = stranger.drain(0.2)
    assert all(data.get("endpoint", data.get("ep")) == name for _, data in more_for_acme)
    assert for_stranger == []
