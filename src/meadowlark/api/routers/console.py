"""Monogoto console authentication: ``POST /Auth`` and refresh, on the same identities."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from meadowlark.api.deps import RuntimeDep, client_ip, public
from meadowlark.api.forms import FORM_BODY_SCHEMA, read_fields, required
from meadowlark.auth import permissions as catalog
from meadowlark.core.domains import own_domain
from meadowlark.core.errors import NotAuthenticated, TwoFactorRequired
from meadowlark.core.identity import IssuedTokens
from meadowlark.runtime import Runtime

router = APIRouter(tags=["console"])
ACCESS_DENIED = "Access denied"


def _epoch_ms(value: Any) -> int:
    return int(value.timestamp() * 1000)


async def auth_body(runtime: Runtime, issued: IssuedTokens) -> dict[str, Any]:
    """The ``/Auth`` reply, key for key as the Monogoto documentation shows it."""
    user = issued.user
    async with runtime.db.session() as session:
        domain = await own_domain(session, user)
    role = await runtime.roles.primary_role(user)
    permissions = await runtime.roles.effective_permissions(user)
    profile_id = role.id if role else f"UserProfileId_{user.account_type}"
    return {
        "token": issued.access_token,
        "refreshToken": issued.refresh_token,
        "CustomerId": domain.customer_id if domain else "",
        "UserId": user.id,
        "UserName": user.login,
        "Role": profile_id,
        "Realm": role.realm if role else "customer",
        "OrganizationId": domain.organization_id if domain else "",
        "AccountSettings": {"TwoFactorAuthentication": user.totp_enabled},
        "ThingsGroupIds": list(user.things_group_ids),
        "UserProfile": {
            "Permissions": catalog.collapse_to_profile(permissions),
            "DateCreated": _epoch_ms(role.created_at if role else user.created_at),
            "Name": role.name if role else user.account_type.title(),
            "Realm": role.realm if role else "customer",
            "Type": "USER_PROFILE",
            "UserProfileId": profile_id,
            "DateModified": _epoch_ms(role.modified_at if role else user.updated_at),
            "cas": str(role.cas if role else 1),
        },
    }


def _denied(message: str = ACCESS_DENIED) -> Response:
    return PlainTextResponse(message, status_code=401)


@router.post(
    "/Auth",
    dependencies=[public("console:POST /Auth")],
    openapi_extra=FORM_BODY_SCHEMA,
    response_model=None,
)
async def console_auth(request: Request, runtime: RuntimeDep) -> Response:
    """Log in with ``UserName``/``Password`` (JSON or form); bad credentials: 401 Access denied."""
    fields = await read_fields(request)
    try:
        issued = await runtime.identity.login(
            login=required(fields, "UserName", "userName", "username"),
            password=required(fields, "Password", "password"),
            client_ip=client_ip(request),
            otp=fields.get("TwoFactorCode")
            or fields.get("Code")
            or request.headers.get("x-meadowlark-otp"),
            grant="console",
        )
    except TwoFactorRequired as exc:
        return _denied(f"{ACCESS_DENIED}: {exc.message}")
    except NotAuthenticated:
        return _denied()
    return JSONResponse(await auth_body(runtime, issued), headers={"Cache-Control": "no-store"})


@router.post(
    "/Auth/refresh",
    dependencies=[public("console:POST /Auth/refresh")],
    openapi_extra=FORM_BODY_SCHEMA,
    response_model=None,
)
async def console_refresh(request: Request, runtime: RuntimeDep) -> Response:
    """Trade a refresh token for a new pair; a spent refresh token revokes the session."""
    fields = await read_fields(request)
    try:
        issued = await runtime.identity.refresh(
            refresh_token=required(fields, "refreshToken", "RefreshToken", "refresh_token"),
            client_ip=client_ip(request),
        )
    except NotAuthenticated:
        return _denied()
    return JSONResponse(await auth_body(runtime, issued), headers={"Cache-Control": "no-store"})
