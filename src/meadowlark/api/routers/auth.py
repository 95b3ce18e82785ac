"""OAuth 2.0 endpoints (password grant, client credentials, token exchange), sign-up,
and self-service: who am I, logout, password, two-factor, personal API tokens."""

from __future__ import annotations

import base64
from datetime import datetime
from importlib import resources
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from meadowlark.api.deps import RuntimeDep, SessionDep, client_ip, public, require
from meadowlark.api.forms import FORM_BODY_SCHEMA, read_fields, required
from meadowlark.auth.principal import Principal
from meadowlark.core.errors import Forbidden, InvalidInput
from meadowlark.core.identity import IssuedTokens

router = APIRouter(tags=["auth"])

PASSWORD_GRANT = "password"  # noqa: S105 - OAuth grant type names, not secrets
CLIENT_CREDENTIALS_GRANT = "client_credentials"
REFRESH_GRANT = "refresh_token"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
OTP_FIELDS = ("otp", "totp", "code")
OTP_HEADER = "x-meadowlark-otp"


def _token_body(issued: IssuedTokens, *, exchange: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
    }
    if issued.refresh_token:
        body["refresh_token"] = issued.refresh_token
    if exchange:
        body["issued_token_type"] = ACCESS_TOKEN_TYPE
    return body


def _no_store(body: dict[str, Any], status: int) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _otp(fields: dict[str, str], request: Request) -> str | None:
    return next((fields[f] for f in OTP_FIELDS if fields.get(f)), None) or request.headers.get(
        OTP_HEADER
    )


async def _grant(
    runtime: RuntimeDep,
    request: Request,
    fields: dict[str, str],
    grant: str,
    *,
    realm: str | None = None,
) -> tuple[IssuedTokens, bool]:
    ip = client_ip(request)
    identity = runtime.identity
    if grant == PASSWORD_GRANT:
        issued = await identity.login(
            login=required(fields, "username"),
            password=required(fields, "password"),
            client_ip=ip,
            otp=_otp(fields, request),
            grant="password",
        )
        return issued, False
    if grant == TOKEN_EXCHANGE_GRANT:
        return await identity.exchange(
            subject_token=required(fields, "subject_token"), client_ip=ip
        ), True
    if grant == REFRESH_GRANT:
        return await identity.refresh(
            refresh_token=required(fields, "refresh_token"), client_ip=ip
        ), False
    if grant == CLIENT_CREDENTIALS_GRANT and realm is not None:
        client_id, secret = _client_credentials(fields, request)
        return await identity.client_credentials(
            realm=realm, client_id=client_id, client_secret=secret, client_ip=ip
        ), False
    raise InvalidInput(f"unsupported grant_type {grant!r}")


def _client_credentials(fields: dict[str, str], request: Request) -> tuple[str, str]:
    """Client id and secret from the form or from HTTP Basic client authentication."""
    if fields.get("client_id") and fields.get("client_secret"):
        return fields["client_id"], fields["client_secret"]
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            client_id, sep, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except ValueError as exc:  # binascii.Error, UnicodeDecodeError, non-ASCII input
            raise InvalidInput("malformed client credentials") from exc
        if sep:
            return unquote(client_id), unquote(secret)
    raise InvalidInput("missing field: client_id")


@router.post(
    "/api/auth/oauth_password",
    status_code=201,
    dependencies=[public("auth:POST /api/auth/oauth_password")],
    openapi_extra=FORM_BODY_SCHEMA,
    response_model=None,
)
async def oauth_password(request: Request, runtime: RuntimeDep) -> JSONResponse:
    """OAuth 2.0 password grant (grant_type may be omitted); also token exchange."""
    fields = await read_fields(request)
    issued, exchange = await _grant(
        runtime, request, fields, fields.get("grant_type") or PASSWORD_GRANT
    )
    return _no_store(_token_body(issued, exchange=exchange), 201)


@router.post(
    "/iam/realms/{realm}/protocol/openid-connect/token",
    dependencies=[public("auth:POST /iam/realms/{realm}/protocol/openid-connect/token")],
    openapi_extra=FORM_BODY_SCHEMA,
    response_model=None,
)
async def iam_token(realm: str, request: Request, runtime: RuntimeDep) -> JSONResponse:
    """Token endpoint for service accounts (client_credentials) and token exchange."""
    fields = await read_fields(request)
    issued, exchange = await _grant(
        runtime, request, fields, required(fields, "grant_type"), realm=realm
    )
    return _no_store(_token_body(issued, exchange=exchange), 200)


@router.post(
    "/api/auth/refresh",
    dependencies=[public("auth:POST /api/auth/refresh")],
    openapi_extra=FORM_BODY_SCHEMA,
    response_model=None,
)
async def refresh(request: Request, runtime: RuntimeDep) -> JSONResponse:
    """Exchange a refresh token for a new access and refresh token (rotation)."""
    fields = await read_fields(request)
    issued = await runtime.identity.refresh(
        refresh_token=required(fields, "refresh_token", "refreshToken"),
        client_ip=client_ip(request),
    )
    return _no_store(_token_body(issued), 200)


class SignUp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    login: str = Field(min_length=1, max_length=255)
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class SignedUp(BaseModel):
    login: str
    email: str
    domain: str
    accountType: str
    emailVerified: bool


@router.post(
    "/api/auth/signup",
    status_code=201,
    dependencies=[public("auth:POST /api/auth/signup")],
)
async def sign_up(
    body: SignUp, request: Request, runtime: RuntimeDep, session: SessionDep
) -> SignedUp:
    """Create a free Developer account in a domain of its own."""
    if not runtime.settings.signup:
        raise Forbidden("self sign-up is disabled on this server")
    user = await runtime.users.sign_up(
        session,
        login=body.login,
        email=body.email,
        password=body.password,
        client_ip=client_ip(request),
    )
    await session.commit()
    return SignedUp(
        login=user.login,
        email=user.email,
        domain=user.domain_id,
        accountType=user.account_type,
        emailVerified=user.email_verified,
    )


@router.get(
    "/signup",
    dependencies=[public("auth:GET /signup")],
    response_class=HTMLResponse,
    include_in_schema=False,
)
async def sign_up_page() -> HTMLResponse:
    """A minimal sign-up form."""
    page = resources.files("meadowlark.api").joinpath("static/signup.html").read_text()
    return HTMLResponse(page)


class Me(BaseModel):
    userId: str
    login: str
    domain: str
    accountType: str
    via: str
    permissions: list[str]


@router.get("/api/auth/me")
async def me(principal: Annotated[Principal, require("auth:GET /api/auth/me")]) -> Me:
    """The caller and its effective permissions."""
    return Me(
        userId=principal.user_id,
        login=principal.login,
        domain=principal.domain_id,
        accountType=principal.account_type,
        via=principal.via,
        permissions=sorted(principal.permissions),
    )


@router.post("/api/auth/logout", status_code=204, response_class=Response)
async def logout(
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("auth:POST /api/auth/logout")],
) -> Response:
    """Revoke the session of the presented token (its refresh tokens too)."""
    await runtime.identity.logout(principal, client_ip(request))
    return Response(status_code=204)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currentPassword: str = Field(max_length=1024)
    newPassword: str = Field(max_length=1024)


@router.put("/api/auth/password", status_code=204, response_class=Response)
async def change_password(
    body: PasswordChange,
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("auth:PUT /api/auth/password")],
) -> Response:
    """Change your password; every token of yours is revoked."""
    await runtime.identity.change_password(
        principal, current=body.currentPassword, new=body.newPassword, client_ip=client_ip(request)
    )
    return Response(status_code=204)


class TotpEnrolmentOut(BaseModel):
    secret: str
    otpauthUri: str


class TotpCode(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=32)


class RecoveryCodes(BaseModel):
    recoveryCodes: list[str]


@router.post("/api/auth/2fa/enroll")
async def enroll_totp(
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("auth:POST /api/auth/2fa/enroll")],
) -> TotpEnrolmentOut:
    """Start two-factor enrolment: a TOTP secret and its otpauth:// URI."""
    enrolment = await runtime.identity.enroll_totp(principal)
    return TotpEnrolmentOut(secret=enrolment.secret, otpauthUri=enrolment.otpauth_uri)


@router.post("/api/auth/2fa/confirm")
async def confirm_totp(
    body: TotpCode,
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("auth:POST /api/auth/2fa/confirm")],
) -> RecoveryCodes:
    """Turn two-factor on with a first valid code; returns one-time recovery codes."""
    codes = await runtime.identity.confirm_totp(principal, body.code, client_ip(request))
    return RecoveryCodes(recoveryCodes=codes)


@router.delete("/api/auth/2fa", status_code=204, response_class=Response)
async def disable_totp(
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("auth:DELETE /api/auth/2fa")],
    body: Annotated[TotpCode, Body()],
) -> Response:
    """Turn two-factor off (needs a current code)."""
    await runtime.identity.disable_totp(principal, body.code, client_ip(request))
    return Response(status_code=204)


@router.post("/api/auth/2fa/recovery-codes")
async def regenerate_recovery_codes(
    body: TotpCode,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("auth:POST /api/auth/2fa/recovery-codes")],
) -> RecoveryCodes:
    """Replace all recovery codes (needs a current code)."""
    return RecoveryCodes(
        recoveryCodes=await runtime.identity.regenerate_recovery_codes(principal, body.code)
    )


class ApiTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    expiresInDays: int = Field(default=90, ge=1, le=3650)
    permissions: list[str] | None = Field(default=None, max_length=500)


class ApiTokenOut(BaseModel):
    id: str
    name: str
    permissions: list[str]
    createdAt: datetime
    expiresAt: datetime
    lastUsedAt: datetime | None
    revoked: bool


class ApiTokenCreated(ApiTokenOut):
    token: str


def _token_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "permissions": row.permissions,
        "createdAt": row.created_at,
        "expiresAt": row.expires_at,
        "lastUsedAt": row.last_used_at,
        "revoked": row.revoked_at is not None,
    }


@router.get("/api/auth/tokens")
async def list_api_tokens(
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("auth:GET /api/auth/tokens")],
) -> list[ApiTokenOut]:
    """Your personal API tokens (never their secrets)."""
    return [ApiTokenOut(**_token_out(r)) for r in await runtime.identity.list_api_tokens(principal)]


@router.post("/api/auth/tokens", status_code=201)
async def create_api_token(
    body: ApiTokenCreate,
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("auth:POST /api/auth/tokens")],
) -> ApiTokenCreated:
    """Create a long-lived token with a subset of your permissions; shown only once."""
    token, row = await runtime.identity.create_api_token(
        principal,
        name=body.name,
        expires_in_days=body.expiresInDays,
        permissions=body.permissions,
        client_ip=client_ip(request),
    )
    return ApiTokenCreated(token=token, **_token_out(row))


@router.delete("/api/auth/tokens/{token_id}", status_code=204, response_class=Response)
async def revoke_api_token(
    token_id: str,
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("auth:DELETE /api/auth/tokens/{id}")],
) -> Response:
    """Revoke one of your API tokens."""
    await runtime.identity.revoke_api_token(principal, token_id, client_ip(request))
    return Response(status_code=204)
