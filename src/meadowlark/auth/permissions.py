"""The one permission catalog behind both REST surfaces.

Every endpoint has exactly one permission. A Coiote permission set (a list of names) and
a Monogoto user profile (resource -> view/edit/delete) are two ways to write the same
grant: a profile expands to every permission of each (resource, action) cell it lists,
and a permission set reads back as the cells in which it holds at least one permission.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from meadowlark.auth.catalog_data import (
    COIOTE,
    COIOTE_ENDPOINTS,
    CONSOLE_ENDPOINTS,
    CUSTOMER_ADMIN_PROFILE,
    DEVELOPER_ENDPOINTS,
    LWM2M_ENDPOINTS,
    NODE_WIDE_RESOURCES,
    PLATFORM_ENDPOINTS,
    PRICING_RESOURCES,
    Action,
)

ACTIONS: tuple[Action, ...] = ("view", "edit", "delete")
_PARAM = re.compile(r"\{[^}]*\}")


@dataclass(frozen=True, slots=True)
class Permission:
    name: str
    method: str
    path: str
    resource: str
    action: Action
    public: bool = False
    self_service: bool = False
    capability: bool = False
    """A profile cell no route covers (``method`` and ``path`` are ``-``): granted and
    shown like the others, checked by the services that need it."""

    @property
    def route_key(self) -> tuple[str, str]:
        return (self.method, normalize_path(self.path))


def normalize_path(path: str) -> str:
    """Route path with parameter names erased (``{id}`` and ``{login:path}`` both -> ``{}``)."""
    return _PARAM.sub("{}", path.rstrip("/") or "/")


def _default_action(method: str) -> Action:
    by_method: dict[str, Action] = {"GET": "view", "DELETE": "delete"}
    return by_method.get(method, "edit")


def _parse(table: str) -> list[Permission]:
    permissions = []
    for line in filter(None, (row.strip() for row in table.splitlines())):
        name, method, path, resource, *rest = (cell.strip() for cell in line.split("|"))
        extra = rest[0].split() if rest else []
        action = next((word for word in extra if word in ACTIONS), _default_action(method))
        full_path = path if path.startswith("/") else COIOTE + path
        permissions.append(
            Permission(
                name=name,
                method=method,
                path=full_path,
                resource=resource,
                action=action,
                public="public" in extra,
                self_service="self" in extra,
            )
        )
    return permissions


def _capabilities(routes: Iterable[Permission]) -> list[Permission]:
    """``profile:<Resource>:<action>`` for each Customer Admin cell without a route."""
    covered = {(p.resource, p.action) for p in routes}
    return [
        Permission(f"profile:{resource}:{action}", "-", "-", resource, action, capability=True)
        for resource, actions in CUSTOMER_ADMIN_PROFILE.items()
        for action in actions
        if (resource, action) not in covered
    ]


_ROUTES = _parse(COIOTE_ENDPOINTS + PLATFORM_ENDPOINTS + LWM2M_ENDPOINTS + CONSOLE_ENDPOINTS)
CATALOG: dict[str, Permission] = {p.name: p for p in [*_ROUTES, *_capabilities(_ROUTES)]}
BY_ROUTE: dict[tuple[str, str], Permission] = {
    p.route_key: p for p in CATALOG.values() if not p.capability
}
GRANTABLE: frozenset[str] = frozenset(p.name for p in CATALOG.values() if not p.public)
SELF_SERVICE: frozenset[str] = frozenset(p.name for p in CATALOG.values() if p.self_service)
DEVELOPER: frozenset[str] = frozenset(DEVELOPER_ENDPOINTS.strip().splitlines())
RESOURCES: tuple[str, ...] = tuple(
    sorted({p.resource for p in CATALOG.values() if not p.public and not p.self_service})
)


class UnknownPermissionError(ValueError):
    pass


def validate_names(names: Iterable[str]) -> frozenset[str]:
    """The given permission names, or an error naming the first unknown one."""
    result = frozenset(names)
    unknown = sorted(result - GRANTABLE)
    if unknown:
        raise UnknownPermissionError(f"unknown permission: {unknown[0]!r}")
    return result


def expand_profile(profile: Mapping[str, Iterable[str]]) -> frozenset[str]:
    """Permission names granted by a Monogoto-style map ``{"Users": ["view"]}``."""
    granted: set[str] = set()
    for resource, actions in profile.items():
        if resource not in RESOURCES:
            raise UnknownPermissionError(f"unknown resource: {resource!r}")
        wanted = set(actions)
        bad = wanted - set(ACTIONS)
        if bad:
            raise UnknownPermissionError(f"unknown action: {sorted(bad)[0]!r}")
        granted.update(
            p.name
            for p in CATALOG.values()
            if p.resource == resource and p.action in wanted and not p.public
        )
    return frozenset(granted)


def collapse_to_profile(names: Iterable[str]) -> dict[str, list[str]]:
    """The Monogoto map of a permission set: actions with at least one permission held."""
    cells: dict[str, set[str]] = {}
    for name in names:
        permission = CATALOG.get(name)
        if permission is None or permission.public or permission.self_service:
            continue
        cells.setdefault(permission.resource, set()).add(permission.action)
    return {resource: [a for a in ACTIONS if a in cells[resource]] for resource in sorted(cells)}


def permissions_where(
    *, exclude_resources: Iterable[str] = (), actions: Iterable[str] = ACTIONS
) -> frozenset[str]:
    excluded, allowed = {*exclude_resources, *NODE_WIDE_RESOURCES}, set(actions)
    return frozenset(
        p.name
        for p in CATALOG.values()
        if not p.public and p.resource not in excluded and p.action in allowed
    )


ALL = GRANTABLE
USER_MANAGEMENT = ("Users", "UserProfile", "ServiceAccounts", "AuditLogs")
CUSTOMER_ADMIN: frozenset[str] = expand_profile(CUSTOMER_ADMIN_PROFILE)
"""The seed's Customer Admin: exactly its map, none of Meadowlark's own resources."""
SENSITIVE_VIEW = "profile:ThingsSensitiveData:view"
SENSITIVE_EDIT = "profile:ThingsSensitiveData:edit"


@dataclass(frozen=True, slots=True)
class BuiltinRole:
    id: str
    name: str
    permissions: frozenset[str]
    things_group_scoped: bool = False


BUILTIN_ROLES: tuple[BuiltinRole, ...] = (
    BuiltinRole("UserProfileId_admin", "Admin", ALL),
    BuiltinRole("UserProfileId_customer_admin", "Customer Admin", CUSTOMER_ADMIN),
    BuiltinRole("UserProfileId_developer", "Developer", DEVELOPER),
    BuiltinRole("UserProfileId_business", "Business", DEVELOPER),
    BuiltinRole(
        "UserProfileId_standard",
        "Standard",
        permissions_where(exclude_resources=USER_MANAGEMENT + PRICING_RESOURCES),
    ),
    BuiltinRole(
        "UserProfileId_group",
        "Group",
        permissions_where(exclude_resources=USER_MANAGEMENT + PRICING_RESOURCES),
        things_group_scoped=True,
    ),
    BuiltinRole("UserProfileId_monitor", "Monitor", permissions_where(actions=("view",))),
    BuiltinRole(
        "UserProfileId_api",
        "API user",
        permissions_where(actions=("view",)) | expand_profile({"API": ACTIONS}),
    ),
)
ROLE_FOR_ACCOUNT_TYPE = {"developer": "Developer", "business": "Business", "admin": "Admin"}
