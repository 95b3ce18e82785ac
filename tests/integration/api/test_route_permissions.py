"""Every route declares exactly one catalog permission, and it names that very route."""

from __future__ import annotations

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from meadowlark.api.app import create_app, iter_api_routes
from meadowlark.api.routers import console_ui
from meadowlark.auth import permissions as catalog
from meadowlark.runtime import Runtime


def _guards(dependant: Dependant) -> list:
    found = []
    for sub in dependant.dependencies:
        if hasattr(sub.call, "permission"):
            found.append(sub.call)
        found.extend(_guards(sub))
    return found


@pytest.fixture(scope="module")
def app(tmp_path_factory, settings_for):
    runtime = Runtime.from_settings(settings_for(tmp_path_factory.mktemp("routes")))
    return create_app(runtime)


@pytest.fixture(scope="module")
def routes(app):
    return list(iter_api_routes(app.routes))


def _leaf_routes(routes):
    """Every route, those of included routers too (FastAPI nests them)."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is None:
            yield route
        else:
            yield from _leaf_routes(nested.routes)


def test_routes_outside_the_catalog_are_only_documentation_and_static_assets(app):
    """A route that is no API route has no permission guard: only FastAPI's documentation
    and the web console's static files (public, no data: the app signs in and calls the
    API) may be such routes; any other must be declared with require()/public()."""
    documentation = {
        app.openapi_url,
        app.docs_url,
        app.redoc_url,
        app.swagger_ui_oauth2_redirect_url,
    }
    unguarded = {
        route.path for route in _leaf_routes(app.routes) if not isinstance(route, APIRoute)
    }
    assert unguarded - documentation == set(console_ui.STATIC_ASSET_ROUTES)


def test_there_are_routes(routes):
    assert len(routes) >= 39


def test_every_route_declares_one_permission_matching_method_and_path(routes):
    problems = []
    seen: dict[str, str] = {}
    for route in routes:
        guards = _guards(route.dependant)
        label = f"{sorted(route.methods)} {route.path}"
        if len(guards) != 1:
            problems.append(f"{label}: {len(guards)} require()/public() guards")
            continue
        permission = guards[0].permission
        if catalog.CATALOG.get(permission.name) is not permission:
            problems.append(f"{label}: {permission.name!r} is not the catalog's entry")
        if set(route.methods) != {permission.method}:
            problems.append(f"{label}: declares {permission.method} {permission.name!r}")
        if catalog.normalize_path(route.path) != catalog.normalize_path(permission.path):
            problems.append(f"{label}: declares path {permission.path!r}")
        if permission.name in seen:
            problems.append(f"{label}: shares {permission.name!r} with {seen[permission.name]}")
        seen[permission.name] = label
    assert not problems, "\n".join(problems)


def test_every_platform_catalog_entry_has_its_route(routes):
    routed = {(m, catalog.normalize_path(r.path)) for r in routes for m in r.methods}
    missing = [
        p.name
        for p in catalog.CATALOG.values()
        if not p.path.startswith(catalog.COIOTE) and not p.capability and p.route_key not in routed
    ]
    assert not missing


def test_users_and_domains_routes_are_all_implemented(routes):
    coiote = {
        (m, catalog.normalize_path(r.path))
        for r in routes
        for m in r.methods
        if r.path.startswith("/api/coiotedm/v3/")
    }
    expected = {
        catalog.CATALOG[name].route_key
        for name in (
            "POST users",
            "GET users/{id}",
            "PATCH users/{id}",
            "DELETE users/{id}",
            "GET users/search/usernames",
            "GET domains",
            "POST domains",
            "GET domains/{id}",
            "PUT domains/{id}",
            "DELETE domains/{id}",
        )
    }
    assert expected <= coiote
