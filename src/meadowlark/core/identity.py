"""Authentication and token service shared by every surface.

One login creates one ``AuthSession``; access tokens (JWT, short-lived) name the session,
refresh tokens (opaque, single use) belong to it. Logout revokes a session; a password
change, disabling, deleting or moving a user bumps its token generation. A request is
checked against the session and the generation as the store had them at most
``PRINCIPAL_CACHE_SECONDS`` ago (``auth.principal_cache``); every revocation made here
drops the cached callers it concerns once committed (``invalidate_after_commit``), so in
this process it takes effect on the very next request.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import bindparam, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth import permissions as catalog
from meadowlark.auth import tokens, totp
from meadowlark.auth.credential_cache import VerifiedCredentialCache
from meadowlark.auth.passwords import hash_password, verify_password
from meadowlark.auth.principal import Principal
from meadowlark.auth.principal_cache import PrincipalCache
from meadowlark.auth.throttle import SlidingWindowLimiter
from meadowlark.config import Settings
from meadowlark.core import audit
from meadowlark.core.domains import in_scope
from meadowlark.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    Throttled,
    TwoFactorRequired,
)
from meadowlark.core.roles import RoleCache, ensure_grantable
from meadowlark.store.db import Database, rows_affected
from meadowlark.store.models import (
    ApiToken,
    AuthSession,
    RecoveryCode,
    RefreshToken,
    ServiceAccount,
    User,
    utcnow,
)

API_TOKEN_MAX_DAYS = 3650
BASIC_CREDENTIAL_SECONDS = 60.0
LAST_USED_PRECISION = timedelta(minutes=1)
INVALID_CREDENTIALS = "invalid username or password"


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str | None
    user: User
    session_id: str


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    secret: str
    otpauth_uri: str


class Identity:
    def __init__(self, db: Database, settings: Settings, roles: RoleCache) -> None:
        self.db = db
        self.settings = settings
        self.roles = roles
        limits = settings.rate_limits
        self._account_failures = SlidingWindowLimiter(
            limits.login_failures_per_account, limits.login_window_seconds
        )
        self._ip_failures = SlidingWindowLimiter(
            limits.login_failures_per_ip, limits.login_window_seconds
        )
        self._basic_credentials = VerifiedCredentialCache(BASIC_CREDENTIAL_SECONDS)
        self._jwks_client: jwt.PyJWKClient | None = None
        self._claims = tokens.ClaimsCache(settings.signing_key)
        self.principals = PrincipalCache()
        roles.on_change(lambda local: self.principals.invalidate(notify=local))

    # -- logging in -----------------------------------------------------------------

    def _check_throttle(self, account: str, client_ip: str) -> None:
        """429 while the account or the address has failed too often; only failures count."""
        wait = max(
            self._ip_failures.retry_after(client_ip),
            self._account_failures.retry_after(account.lower()),
        )
        if wait:
            raise Throttled("too many login attempts; try again later", retry_after=wait)

    def _record_failure(self, account: str, client_ip: str) -> None:
        self._account_failures.hit(account.lower())
        self._ip_failures.hit(client_ip)

    async def _verified_user(
        self, session: AsyncSession, login: str, password: str, client_ip: str
    ) -> User:
        """The active user with these credentials, or throttle/raise (audited)."""
        self._check_throttle(login, client_ip)
        user = await session.scalar(select(User).where(User.login == login))
        valid, new_hash = await verify_password(password, user.password_hash if user else None)
        usable = user is not None and valid and user.active and not _expired(user)
        if not usable:
            self._record_failure(login, client_ip)
            reason = "bad_credentials" if not valid else "account_disabled"
            audit.record(session, "login.failed", actor=login, client_ip=client_ip, reason=reason)
            await session.commit()
            raise NotAuthenticated(INVALID_CREDENTIALS)
        assert user is not None
        if new_hash:
            user.password_hash = new_hash
        return user

    async def _check_second_factor(
        self, session: AsyncSession, user: User, code: str | None, client_ip: str
    ) -> None:
        if not user.totp_enabled:
            return
        if code and user.totp_secret and totp.verify_code(user.totp_secret, code):
            return
        if code and await _use_recovery_code(session, user, code):
            audit.record(session, "2fa.recovery_code_used", actor=user.login, client_ip=client_ip)
            return
        self._record_failure(user.login, client_ip)
        audit.record(
            session,
            "login.failed",
            actor=user.login,
            domain_id=user.domain_id,
            client_ip=client_ip,
            reason="2fa_missing" if not code else "2fa_invalid",
        )
        await session.commit()
        raise TwoFactorRequired(
            "two-factor authentication code required" if not code else "invalid two-factor code"
        )

    async def login(
        self, *, login: str, password: str, client_ip: str, otp: str | None, grant: str
    ) -> IssuedTokens:
        async with self.db.session() as session:
            user = await self._verified_user(session, login, password, client_ip)
            await self._check_second_factor(session, user, otp, client_ip)
            self._account_failures.reset(login.lower())
            return await self.open_session(session, user, grant=grant, client_ip=client_ip)

    async def client_credentials(
        self, *, realm: str, client_id: str, client_secret: str, client_ip: str
    ) -> IssuedTokens:
        async with self.db.session() as session:
            self._check_throttle(f"client:{client_id}", client_ip)
            account = await session.get(ServiceAccount, client_id)
            stored = account.secret_hash if account else tokens.digest("no such client")
            valid = tokens.secret_matches(client_secret, stored)
            user = await session.get(User, account.user_id) if account and valid else None
            if account is None or not valid or account.realm != realm or user is None:
                self._record_failure(f"client:{client_id}", client_ip)
                audit.record(
                    session,
                    "login.failed",
                    actor=client_id,
                    client_ip=client_ip,
                    reason="bad_client_credentials",
                )
                await session.commit()
                raise NotAuthenticated("invalid client credentials")
            if not user.active:
                raise NotAuthenticated("invalid client credentials")
            return await self.open_session(
                session, user, grant=client_grant(client_id), client_ip=client_ip, refresh=False
            )

    async def exchange(self, *, subject_token: str, client_ip: str) -> IssuedTokens:
        """RFC 8693: trade an identity token of the configured issuer for our token."""
        config = self.settings.token_exchange
        if not config.issuer:
            raise InvalidInput("token exchange is not configured on this server")
        self._check_throttle("exchange", client_ip)
        try:
            key, algorithms = await self._exchange_key(subject_token)
            claims = jwt.decode(
                subject_token,
                key,
                algorithms=algorithms,
                issuer=config.issuer,
                audience=config.audience,
                options={"require": ["exp", "iss"], "verify_aud": config.audience is not None},
            )
        except (jwt.PyJWTError, ValueError) as exc:
            self._record_failure("exchange", client_ip)
            raise NotAuthenticated(f"subject token rejected: {exc}") from exc
        login = claims.get(config.subject_claim)
        async with self.db.session() as session:
            user = (
                await session.scalar(select(User).where(User.login == login))
                if isinstance(login, str)
                else None
            )
            if user is None or not user.active:
                self._record_failure("exchange", client_ip)
                audit.record(
                    session,
                    "login.failed",
                    actor=str(login),
                    client_ip=client_ip,
                    reason="exchange_unknown_subject",
                )
                await session.commit()
                raise NotAuthenticated("the subject token maps to no active user")
            return await self.open_session(
                session, user, grant="token_exchange", client_ip=client_ip, refresh=False
            )

    async def _exchange_key(self, token: str) -> tuple[Any, list[str]]:
        config = self.settings.token_exchange
        if config.shared_key is not None:
            return config.shared_key.get_secret_value(), ["HS256", "HS384", "HS512"]
        asymmetric = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
        header = jwt.get_unverified_header(token)
        if config.jwks_file is not None:
            jwks = jwt.PyJWKSet.from_dict(json.loads(config.jwks_file.read_text()))
            kid = header.get("kid")
            for jwk in jwks.keys:
                if kid is None or jwk.key_id == kid:
                    return jwk.key, asymmetric
            raise ValueError("no key in the JWKS matches the token")
        if config.jwks_url:
            if self._jwks_client is None:
                self._jwks_client = jwt.PyJWKClient(config.jwks_url, cache_keys=True)
            signing_key = await asyncio.to_thread(self._jwks_client.get_signing_key_from_jwt, token)
            return signing_key.key, asymmetric
        raise ValueError("token exchange has no verification key configured")

    async def open_session(
        self,
        session: AsyncSession,
        user: User,
        *,
        grant: str,
        client_ip: str,
        refresh: bool = True,
    ) -> IssuedTokens:
        now = utcnow()
        lifetime = self.settings.token_lifetime
        horizon = self.settings.refresh_token_lifetime if refresh else lifetime
        auth_session = AuthSession(
            id=uuid.uuid4().hex,
            user_id=user.id,
            grant=grant,
            created_at=now,
            expires_at=now + timedelta(seconds=horizon),
        )
        session.add(auth_session)
        refresh_token = self._new_refresh_token(session, auth_session.id, now) if refresh else None
        audit.record(
            session,
            "login.succeeded",
            actor=user.login,
            domain_id=user.domain_id,
            client_ip=client_ip,
            grant=grant,
        )
        audit.record(
            session,
            "token.issued",
            actor=user.login,
            domain_id=user.domain_id,
            client_ip=client_ip,
            session_id=auth_session.id,
            grant=grant,
        )
        await session.commit()
        return IssuedTokens(
            access_token=self._access_token(user, auth_session.id, now),
            expires_in=lifetime,
            refresh_token=refresh_token,
            user=user,
            session_id=auth_session.id,
        )

    def _access_token(self, user: User, session_id: str, now: datetime) -> str:
        return tokens.issue_access_token(
            key=self.settings.signing_key,
            user_id=user.id,
            session_id=session_id,
            generation=user.token_generation,
            now=now,
            lifetime=self.settings.token_lifetime,
        )

    def _new_refresh_token(self, session: AsyncSession, session_id: str, now: datetime) -> str:
        token, token_id, token_digest = tokens.new_opaque_token(tokens.REFRESH_TOKEN_PREFIX)
        session.add(
            RefreshToken(
                id=token_id,
                session_id=session_id,
                token_hash=token_digest,
                expires_at=now + timedelta(seconds=self.settings.refresh_token_lifetime),
            )
        )
        return token

    async def refresh(self, *, refresh_token: str, client_ip: str) -> IssuedTokens:
        """Rotate: the presented token is spent; presenting a spent one revokes its session."""
        parts = tokens.split_opaque_token(refresh_token, tokens.REFRESH_TOKEN_PREFIX)
        if parts is None:
            raise NotAuthenticated("invalid refresh token")
        token_id, secret = parts
        now = utcnow()
        async with self.db.session() as session:
            row = await session.get(RefreshToken, token_id)
            if row is None or not tokens.secret_matches(secret, row.token_hash):
                raise NotAuthenticated("invalid refresh token")
            auth_session = await session.get(AuthSession, row.session_id)
            user = await session.get(User, auth_session.user_id) if auth_session else None
            if auth_session is None or user is None or auth_session.revoked_at is not None:
                raise NotAuthenticated("refresh token revoked")
            spent = await session.execute(
                update(RefreshToken)
                .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None))
                .values(used_at=now)
            )
            if rows_affected(spent) != 1:
                self.invalidate_after_commit(session, user.id)
                auth_session.revoked_at = now
                auth_session.revoked_reason = "refresh_token_reuse"
                audit.record(
                    session,
                    "token.revoked",
                    actor=user.login,
                    domain_id=user.domain_id,
                    client_ip=client_ip,
                    session_id=auth_session.id,
                    reason="refresh_token_reuse",
                )
                await session.commit()
                raise NotAuthenticated("refresh token already used; the session is revoked")
            if row.expires_at <= now or not user.active:
                await session.commit()
                raise NotAuthenticated("refresh token expired")
            new_refresh = self._new_refresh_token(session, auth_session.id, now)
            audit.record(
                session,
                "token.refreshed",
                actor=user.login,
                domain_id=user.domain_id,
                client_ip=client_ip,
                session_id=auth_session.id,
            )
            await session.commit()
            return IssuedTokens(
                access_token=self._access_token(user, auth_session.id, now),
                expires_in=self.settings.token_lifetime,
                refresh_token=new_refresh,
                user=user,
                session_id=auth_session.id,
            )

    # -- authenticating requests ----------------------------------------------------

    async def authenticate_bearer(self, token: str) -> Principal:
        """The caller behind a bearer token.

        What revocation changes (session revoked, user disabled, deleted or expired,
        token generation bumped) is checked against the store, as read at most
        ``PRINCIPAL_CACHE_SECONDS`` ago (one indexed query, no ORM), so a revoked token
        fails on its next use here and within that bound in other processes.
        """
        if token.startswith(tokens.API_TOKEN_PREFIX + "_"):
            return await self._authenticate_api_token(token)
        try:
            claims = self._claims.decode(token)
        except tokens.InvalidTokenError as exc:
            raise NotAuthenticated("invalid or expired token") from exc
        key = f"session:{claims.session_id}"
        cached = self.principals.lookup(key)
        if (
            cached is not None
            and cached.principal.user_id == claims.user_id
            and cached.generation == claims.generation
            and _before_expiry(cached.account_expires_at)
        ):
            return cached.principal
        epoch = self.principals.epoch
        [rows] = await self.db.hot_reads.rows(
            (_BEARER_QUERY, {"sid": claims.session_id}), inline=True
        )
        row = rows[0] if rows else None
        if (
            row is None
            or row.id != claims.user_id
            or row.revoked_at is not None
            or not _usable_account(row, claims.generation)
        ):
            raise NotAuthenticated("invalid or expired token")
        principal = await self._principal_from_row(row, via="bearer", session_id=claims.session_id)
        self.principals.store(
            key,
            epoch,
            principal,
            generation=row.token_generation,
            account_expires_at=_expiry_of(row),
        )
        return principal

    async def _principal_from_row(
        self, row: Any, *, via: str, session_id: str | None = None
    ) -> Principal:
        return Principal(
            user_id=row.id,
            login=row.login,
            domain_id=row.domain_id,
            account_type=row.account_type,
            permissions=await self.roles.permissions_of(
                row.account_type, row.roles, row.extra_permissions, row.domain_id
            ),
            via=via,
            session_id=session_id,
            things_group_ids=tuple(row.things_group_ids or ()),
        )

    async def _authenticate_api_token(self, token: str) -> Principal:
        parts = tokens.split_opaque_token(token, tokens.API_TOKEN_PREFIX)
        if parts is None:
            raise NotAuthenticated("invalid or expired token")
        token_id, secret = parts
        key = f"api_token:{token_id}"
        cached = self.principals.lookup(key)
        if (
            cached is not None
            and cached.secret_digest is not None
            and tokens.secret_matches(secret, cached.secret_digest)
            and _before_expiry(cached.account_expires_at)
        ):
            return cached.principal
        epoch = self.principals.epoch
        now = utcnow()
        async with self.db.session() as session:
            row = (
                await session.execute(
                    select(ApiToken, User)
                    .join(User, User.id == ApiToken.user_id)
                    .where(ApiToken.id == token_id)
                )
            ).first()
            if row is None or not tokens.secret_matches(secret, row[0].token_hash):
                raise NotAuthenticated("invalid or expired token")
            api_token, user = row
            if api_token.revoked_at or api_token.expires_at <= now or not user.active:
                raise NotAuthenticated("invalid or expired token")
            if api_token.last_used_at is None or now - api_token.last_used_at > LAST_USED_PRECISION:
                api_token.last_used_at = now
                await session.commit()
        principal = await self.principal_for(user, via="api_token")
        allowed = frozenset(api_token.permissions) | catalog.SELF_SERVICE
        principal = replace(principal, permissions=principal.permissions & allowed)
        self.principals.store(
            key,
            epoch,
            principal,
            generation=user.token_generation,
            account_expires_at=_as_utc(api_token.expires_at),
            secret_digest=api_token.token_hash,
        )
        return principal

    async def authenticate_basic(self, login: str, password: str, client_ip: str) -> Principal:
        """The caller behind HTTP Basic credentials.

        A credential verified in the last ``BASIC_CREDENTIAL_SECONDS`` skips Argon2, but
        the account is still checked, as read at most ``PRINCIPAL_CACHE_SECONDS`` ago: a
        changed token generation (password change, disabled account, domain move) makes
        it verify in full again, and fail.
        """
        self._check_throttle(login, client_ip)
        remembered = self._basic_credentials.lookup(login, password)
        if remembered is not None:
            key = f"basic:{remembered.user_id}"
            cached = self.principals.lookup(key)
            if (
                cached is not None
                and cached.principal.login == login
                and cached.generation == remembered.generation
                and _before_expiry(cached.account_expires_at)
            ):
                return cached.principal
            epoch = self.principals.epoch
            [rows] = await self.db.hot_reads.rows(
                (_ACCOUNT_QUERY, {"uid": remembered.user_id}), inline=True
            )
            row = rows[0] if rows else None
            if (
                row is not None
                and row.login == login
                and not row.totp_enabled
                and _usable_account(row, remembered.generation)
            ):
                principal = await self._principal_from_row(row, via="basic")
                self.principals.store(
                    key,
                    epoch,
                    principal,
                    generation=row.token_generation,
                    account_expires_at=_expiry_of(row),
                )
                return principal
            self._basic_credentials.forget(login, password)
        async with self.db.session() as session:
            user = await self._verified_user(session, login, password, client_ip)
            if user.totp_enabled:
                raise TwoFactorRequired("accounts with two-factor authentication need a token")
            await session.commit()
        self._account_failures.reset(login.lower())
        self._basic_credentials.remember(
            login, password, user_id=user.id, generation=user.token_generation
        )
        return await self.principal_for(user, via="basic")

    async def principal_for(
        self, user: User, *, via: str, session_id: str | None = None
    ) -> Principal:
        return await self._principal_from_row(user, via=via, session_id=session_id)

    # -- revocation -----------------------------------------------------------------

    def invalidate_after_commit(self, session: AsyncSession, user_id: str | None) -> None:
        """Drop the cached callers of ``user_id`` (everyone: ``None``) once ``session``
        commits: the change that revokes or narrows them is then visible to the re-read."""
        event.listen(
            session.sync_session,
            "after_commit",
            lambda _: self.principals.invalidate(user_id),
            once=True,
        )

    def invalidate_principals(self, user_id: str | None = None) -> None:
        """Entry point for revocation signals from other processes or nodes (PostgreSQL
        LISTEN/NOTIFY): forget the cached callers of ``user_id``, everyone for ``None``.
        To pass local revocations on, register with ``principals.on_invalidate``."""
        self.principals.invalidate(user_id, notify=False)

    async def logout(self, principal: Principal, client_ip: str) -> None:
        if principal.session_id is None:
            raise InvalidInput("only session tokens can log out; revoke API tokens instead")
        async with self.db.transaction() as session:
            self.invalidate_after_commit(session, principal.user_id)
            await session.execute(
                update(AuthSession)
                .where(AuthSession.id == principal.session_id, AuthSession.revoked_at.is_(None))
                .values(revoked_at=utcnow(), revoked_reason="logout")
            )
            audit.record(
                session,
                "token.revoked",
                actor=principal.login,
                domain_id=principal.domain_id,
                client_ip=client_ip,
                session_id=principal.session_id,
                reason="logout",
            )

    def revoke_all(self, session: AsyncSession, user: User, *, actor: str, reason: str) -> None:
        """Invalidate every access token of ``user`` at once (and their refresh sessions)."""
        user.token_generation += 1
        self.invalidate_after_commit(session, user.id)
        audit.record(
            session,
            "token.revoked",
            actor=actor,
            subject=user.login,
            domain_id=user.domain_id,
            reason=reason,
            scope="all",
        )

    async def revoke_user_sessions(self, session: AsyncSession, user: User) -> None:
        self.invalidate_after_commit(session, user.id)
        await session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoked_reason="credentials_changed")
        )

    async def change_password(
        self, principal: Principal, *, current: str, new: str, client_ip: str
    ) -> None:
        async with self.db.transaction() as session:
            user = await session.get(User, principal.user_id)
            if user is None:
                raise NotAuthenticated("account no longer exists")
            valid, _ = await verify_password(current, user.password_hash)
            if not valid:
                raise Forbidden("current password is wrong")
            user.password_hash = await hash_password(validate_password(new))
            self.revoke_all(session, user, actor=principal.login, reason="password_changed")
            await self.revoke_user_sessions(session, user)

    # -- personal API tokens ----------------------------------------------------------

    async def create_api_token(
        self,
        principal: Principal,
        *,
        name: str,
        expires_in_days: int,
        permissions: list[str] | None,
        client_ip: str,
    ) -> tuple[str, ApiToken]:
        if not 1 <= expires_in_days <= API_TOKEN_MAX_DAYS:
            raise InvalidInput(f"expiresInDays must be 1..{API_TOKEN_MAX_DAYS}")
        held = principal.permissions - catalog.SELF_SERVICE
        wanted = frozenset(permissions) if permissions is not None else held
        try:
            catalog.validate_names(wanted)
        except catalog.UnknownPermissionError as exc:
            raise InvalidInput(str(exc)) from exc
        ensure_grantable(principal.permissions, wanted)
        token, token_id, token_digest = tokens.new_opaque_token(tokens.API_TOKEN_PREFIX)
        row = ApiToken(
            id=token_id,
            user_id=principal.user_id,
            name=name,
            token_hash=token_digest,
            permissions=sorted(wanted),
            expires_at=utcnow() + timedelta(days=expires_in_days),
        )
        async with self.db.transaction() as session:
            session.add(row)
            audit.record(
                session,
                "api_token.created",
                actor=principal.login,
                domain_id=principal.domain_id,
                client_ip=client_ip,
                token_id=token_id,
                name=name,
            )
        return token, row

    async def list_api_tokens(self, principal: Principal) -> list[ApiToken]:
        async with self.db.session() as session:
            rows = await session.scalars(
                select(ApiToken)
                .where(ApiToken.user_id == principal.user_id)
                .order_by(ApiToken.created_at)
            )
            return list(rows.all())

    async def revoke_api_token(self, principal: Principal, token_id: str, client_ip: str) -> None:
        async with self.db.transaction() as session:
            row = await session.get(ApiToken, token_id)
            if row is None or row.user_id != principal.user_id:
                raise NotFound(f"API token {token_id!r} not found")
            if row.revoked_at is None:
                self.invalidate_after_commit(session, principal.user_id)
                row.revoked_at = utcnow()
                audit.record(
                    session,
                    "api_token.revoked",
                    actor=principal.login,
                    domain_id=principal.domain_id,
                    client_ip=client_ip,
                    token_id=token_id,
                )

    # -- two-factor authentication ----------------------------------------------------

    async def enroll_totp(self, principal: Principal) -> TotpEnrolment:
        async with self.db.transaction() as session:
            user = await _user_of(session, principal)
            if user.totp_enabled:
                raise InvalidInput("two-factor authentication is already enabled")
            user.totp_secret = totp.new_secret()
            return TotpEnrolment(
                user.totp_secret, totp.provisioning_uri(user.totp_secret, user.login)
            )

    async def confirm_totp(self, principal: Principal, code: str, client_ip: str) -> list[str]:
        async with self.db.transaction() as session:
            user = await _user_of(session, principal)
            if user.totp_enabled:
                raise InvalidInput("two-factor authentication is already enabled")
            if not user.totp_secret:
                raise InvalidInput("enrol first: POST /api/auth/2fa/enroll")
            if not totp.verify_code(user.totp_secret, code):
                raise InvalidInput("invalid two-factor code")
            user.totp_enabled = True
            self.invalidate_after_commit(session, user.id)  # Basic credentials stop working
            codes = await _replace_recovery_codes(session, user)
            audit.record(
                session,
                "2fa.enabled",
                actor=user.login,
                domain_id=user.domain_id,
                client_ip=client_ip,
            )
            return codes

    async def disable_totp(self, principal: Principal, code: str, client_ip: str) -> None:
        async with self.db.transaction() as session:
            user = await self._user_with_valid_code(session, principal, code)
            user.totp_enabled = False
            user.totp_secret = None
            await session.execute(
                RecoveryCode.__table__.delete().where(RecoveryCode.user_id == user.id)
            )
            audit.record(
                session,
                "2fa.disabled",
                actor=user.login,
                domain_id=user.domain_id,
                client_ip=client_ip,
            )

    async def regenerate_recovery_codes(self, principal: Principal, code: str) -> list[str]:
        async with self.db.transaction() as session:
            user = await self._user_with_valid_code(session, principal, code)
            return await _replace_recovery_codes(session, user)

    async def _user_with_valid_code(
        self, session: AsyncSession, principal: Principal, code: str
    ) -> User:
        user = await _user_of(session, principal)
        if not user.totp_enabled or not user.totp_secret:
            raise InvalidInput("two-factor authentication is not enabled")
        if not totp.verify_code(user.totp_secret, code):
            raise Forbidden("invalid two-factor code")
        return user

    # -- service accounts -------------------------------------------------------------

    async def create_service_account(
        self, actor: Principal, *, realm: str, client_id: str, login: str
    ) -> tuple[str, ServiceAccount]:
        """An OAuth2 client acting as ``login``; returns the secret (shown once) and row.

        A service account is a credential for its user, so it follows the rule of user
        management and API tokens: the caller must hold every permission the user holds.
        """
        secret = tokens.new_opaque_token("mls")[0]
        async with self.db.transaction() as session:
            user = await session.scalar(select(User).where(User.login == login))
            if user is None or not actor.sees_domain(user.domain_id):
                raise NotFound(f"user {login!r} not found")
            # Also for oneself: an API token narrowed to a few permissions gets no more.
            if await self.roles.effective_permissions(user) - actor.permissions:
                raise Forbidden(
                    "cannot create a credential for a user holding permissions you do not hold"
                )
            if await session.get(ServiceAccount, client_id) is not None:
                raise Conflict(f"client {client_id!r} already exists")
            account = ServiceAccount(
                client_id=client_id,
                realm=realm,
                secret_hash=tokens.digest(secret),
                user_id=user.id,
                created_at=utcnow(),
            )
            session.add(account)
            audit.record(
                session,
                "service_account.created",
                actor=actor.login,
                subject=login,
                domain_id=user.domain_id,
                client_id=client_id,
            )
        return secret, account

    async def list_service_accounts(self, actor: Principal) -> list[tuple[ServiceAccount, str]]:
        """Service accounts acting as users of the caller's subtree, with their logins."""
        async with self.db.session() as session:
            rows = await session.execute(
                select(ServiceAccount, User.login)
                .join(User, User.id == ServiceAccount.user_id)
                .where(in_scope(User.domain_id, actor.domain_id))
                .order_by(ServiceAccount.client_id)
            )
            return [(account, login) for account, login in rows.all()]

    async def delete_service_account(self, actor: Principal, client_id: str) -> None:
        """Delete a service account of the caller's subtree and revoke its sessions."""
        async with self.db.transaction() as session:
            row = (
                await session.execute(
                    select(ServiceAccount, User)
                    .join(User, User.id == ServiceAccount.user_id)
                    .where(ServiceAccount.client_id == client_id)
                )
            ).first()
            if row is None or not actor.sees_domain(row[1].domain_id):
                raise NotFound(f"service account {client_id!r} not found")
            self.invalidate_after_commit(session, row[1].id)
            await session.delete(row[0])
            await session.execute(
                update(AuthSession)
                .where(
                    AuthSession.grant == client_grant(client_id), AuthSession.revoked_at.is_(None)
                )
                .values(revoked_at=utcnow(), revoked_reason="service_account_deleted")
            )
            audit.record(
                session,
                "service_account.deleted",
                actor=actor.login,
                subject=client_id,
                domain_id=row[1].domain_id,
            )


def client_grant(client_id: str) -> str:
    """The grant recorded on sessions opened by a service account."""
    return f"client_credentials:{client_id}"


def validate_password(password: str) -> str:
    if len(password) < 8:
        raise InvalidInput("password must have at least 8 characters")
    if len(password) > 1024:
        raise InvalidInput("password is too long")
    return password


_ACCOUNT_COLUMNS = (
    User.id,
    User.login,
    User.domain_id,
    User.account_type,
    User.active,
    User.expiration_date,
    User.token_generation,
    User.roles,
    User.extra_permissions,
    User.things_group_ids,
    User.totp_enabled,
)
_BEARER_QUERY = (
    select(*_ACCOUNT_COLUMNS, AuthSession.revoked_at)
    .join(AuthSession, AuthSession.user_id == User.id)
    .where(AuthSession.id == bindparam("sid"))
)
_ACCOUNT_QUERY = select(*_ACCOUNT_COLUMNS).where(User.id == bindparam("uid"))


def _usable_account(row: Any, generation: int) -> bool:
    """Active, not expired, and not revoked since ``generation`` was handed out."""
    return bool(
        row.active
        and (row.expiration_date is None or _as_utc(row.expiration_date) > utcnow())
        and row.token_generation == generation
    )


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _expiry_of(row: Any) -> datetime | None:
    return None if row.expiration_date is None else _as_utc(row.expiration_date)


def _before_expiry(expires_at: datetime | None) -> bool:
    return expires_at is None or expires_at > utcnow()


def _expired(user: User) -> bool:
    return user.expiration_date is not None and user.expiration_date <= utcnow()


async def _user_of(session: AsyncSession, principal: Principal) -> User:
    user = await session.get(User, principal.user_id)
    if user is None:
        raise NotAuthenticated("account no longer exists")
    return user


async def _replace_recovery_codes(session: AsyncSession, user: User) -> list[str]:
    await session.execute(RecoveryCode.__table__.delete().where(RecoveryCode.user_id == user.id))
    codes = totp.new_recovery_codes()
    session.add_all(RecoveryCode(user_id=user.id, code_hash=tokens.digest(code)) for code in codes)
    return codes


async def _use_recovery_code(session: AsyncSession, user: User, code: str) -> bool:
    candidates = (
        await session.scalars(
            select(RecoveryCode).where(
                RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
            )
        )
    ).all()
    wanted = tokens.digest(code.strip().lower())
    for candidate in candidates:
        if hmac.compare_digest(candidate.code_hash, wanted):
            candidate.used_at = utcnow()
            return True
    return False
