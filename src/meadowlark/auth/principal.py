"""Who is calling: the authenticated user, their domain and their effective permissions."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    login: str
    domain_id: str
    account_type: str
    permissions: frozenset[str]
    via: str
    """How the caller authenticated: ``bearer``, ``api_token``, ``basic``."""
    session_id: str | None = None
    things_group_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_admin(self) -> bool:
        return self.account_type == "admin"

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def sees_domain(self, domain_id: str) -> bool:
        """Tenancy: a caller sees its own domain and everything below it."""
        return domain_id.startswith(self.domain_id)
