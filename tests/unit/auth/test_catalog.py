"""The permission catalog against the Coiote access document (seed 000)."""

from __future__ import annotations

import pytest

from meadowlark.auth import permissions as catalog
from meadowlark.auth.catalog_data import COIOTE


def test_seed_lists_exactly_47_developer_endpoints(seed_developer_endpoints):
    assert len(seed_developer_endpoints) == 47
    assert len(set(seed_developer_endpoints)) == 47


def test_developer_set_is_the_seed_list_word_for_word(seed_developer_endpoints):
    assert catalog.DEVELOPER == frozenset(seed_developer_endpoints)
    assert len(catalog.DEVELOPER) == 47


@pytest.mark.parametrize("name", sorted(catalog.DEVELOPER))
def test_every_developer_permission_is_a_grantable_catalog_entry(name):
    permission = catalog.CATALOG[name]
    assert not permission.public and not permission.self_service
    assert name in catalog.GRANTABLE
    method, _, _ = name.partition(" ")
    assert permission.method == method
    assert permission.path.startswith(COIOTE)


def test_developer_and_business_roles_hold_exactly_the_seed_list(seed_developer_endpoints):
    roles = {role.name: role for role in catalog.BUILTIN_ROLES}
    assert roles["Developer"].permissions == frozenset(seed_developer_endpoints)
    assert roles["Business"].permissions == frozenset(seed_developer_endpoints)
    assert roles["Admin"].permissions == catalog.GRANTABLE


def test_one_permission_per_route():
    keys = [p.route_key for p in catalog.CATALOG.values() if not p.capability]
    assert len(keys) == len(set(keys)), "two catalog entries share one method and path"
    routed = {p for p in catalog.CATALOG.values() if not p.capability}
    assert set(catalog.BY_ROUTE.values()) == routed


def test_coiote_names_are_method_and_relative_path():
    for permission in catalog.CATALOG.values():
        if permission.path.startswith(COIOTE):
            method, _, relative = permission.name.partition(" ")
            assert method == permission.method
            # The name may follow the document's rendering; the route must still be a Coiote one.
            assert relative and not relative.startswith("/")


def test_monitor_role_only_views_and_api_user_adds_api_tokens():
    roles = {role.name: role for role in catalog.BUILTIN_ROLES}
    assert all(catalog.CATALOG[n].action == "view" for n in roles["Monitor"].permissions)
    assert "GET users/{id}" in roles["Monitor"].permissions
    assert "auth:POST /api/auth/tokens" in roles["API user"].permissions
    assert not any(
        catalog.CATALOG[n].resource in catalog.USER_MANAGEMENT
        for n in roles["Standard"].permissions
    )


def _whole_cells(profile):
    """Every permission of the given (resource, action) cells."""
    return frozenset(
        p.name
        for p in catalog.CATALOG.values()
        if not p.public and p.resource in profile and p.action in profile[p.resource]
    )


@pytest.mark.parametrize("resource", catalog.RESOURCES)
def test_profile_round_trip_for_whole_cells(resource):
    for actions in (["view"], ["edit"], ["delete"], ["view", "edit"], ["view", "edit", "delete"]):
        profile = {resource: actions}
        names = catalog.expand_profile(profile)
        assert names == _whole_cells(profile)
        held = [a for a in actions if any(catalog.CATALOG[n].action == a for n in names)]
        expected = {resource: held} if held else {}
        assert catalog.collapse_to_profile(names) == expected
        assert catalog.expand_profile(catalog.collapse_to_profile(names)) == names


def test_full_profile_round_trip():
    everything = {resource: list(catalog.ACTIONS) for resource in catalog.RESOURCES}
    names = catalog.expand_profile(everything)
    assert names == catalog.GRANTABLE - catalog.SELF_SERVICE
    collapsed = catalog.collapse_to_profile(names)
    assert catalog.expand_profile(collapsed) == names


def test_collapse_ignores_public_and_self_service_and_unknown_names():
    names = set(catalog.SELF_SERVICE) | {"auth:POST /api/auth/oauth_password", "no such thing"}
    assert catalog.collapse_to_profile(names) == {}


@pytest.mark.parametrize(
    "profile",
    [
        {"NoSuchResource": ["view"]},
        {"Users": ["fly"]},
        {"Users": ["view", "view7"]},
        {"Login": ["edit"]},
    ],
)
def test_expand_profile_rejects_unknown_resources_and_actions(profile):
    with pytest.raises(catalog.UnknownPermissionError):
        catalog.expand_profile(profile)


@pytest.mark.parametrize(
    "names",
    [
        ["GET nothing"],
        ["get devices"],
        ["GET devices "],
        ["auth:POST /api/auth/oauth_password"],
        ["GET devices", "POST devices/"],
    ],
)
def test_validate_names_rejects_unknown_and_public_names(names):
    with pytest.raises(catalog.UnknownPermissionError):
        catalog.validate_names(names)


def test_validate_names_accepts_catalog_names():
    assert catalog.validate_names(["GET devices", "GET devices"]) == {"GET devices"}


@pytest.mark.parametrize(
    ("path", "normalized"),
    [
        ("/api/coiotedm/v3/users/{login}", "/api/coiotedm/v3/users/{}"),
        ("/api/coiotedm/v3/domains/{domain_id:path}", "/api/coiotedm/v3/domains/{}"),
        ("/x/", "/x"),
        ("/", "/"),
    ],
)
def test_normalize_path(path, normalized):
    assert catalog.normalize_path(path) == normalized


def test_customer_admin_is_the_seed_profile_word_for_word(seed_auth_example):
    seed = seed_auth_example["UserProfile"]["Permissions"]
    seed["Search"] = ["view" if a == "view7" else a for a in seed["Search"]]  # the seed's typo
    assert len(seed) == 52
    customer_admin = {r.name: r for r in catalog.BUILTIN_ROLES}["Customer Admin"]
    assert catalog.collapse_to_profile(customer_admin.permissions) == seed
    assert catalog.expand_profile(seed) == customer_admin.permissions


def test_other_console_profiles_are_subsets_of_the_resource_names():
    roles = {role.name: role for role in catalog.BUILTIN_ROLES}
    names = set(catalog.RESOURCES)
    for name in ("Standard", "Group", "Monitor", "API user"):
        assert set(catalog.collapse_to_profile(roles[name].permissions)) <= names
    assert "PricePlanDetails" not in catalog.collapse_to_profile(roles["Standard"].permissions)
    monitor = catalog.collapse_to_profile(roles["Monitor"].permissions)
    assert monitor["Things"] == ["view"] and monitor["ThingsGroup"] == ["view"]


def test_capabilities_have_no_route_and_routes_cover_their_cells():
    capabilities = [p for p in catalog.CATALOG.values() if p.capability]
    assert catalog.SENSITIVE_VIEW in {p.name for p in capabilities}
    routed = {(p.resource, p.action) for p in catalog.CATALOG.values() if not p.capability}
    assert not [p.name for p in capabilities if (p.resource, p.action) in routed]
