"""Bearer-token authentication and role checks of the ticket API.

`ADMIN_API_TOKEN` is the bootstrap token with every right; every other token is created through the token API
and resolved from its hash. `Actor` (the caller's name) stays for handlers that only need to know who acted;
`CurrentUser` carries the role and department for handlers that decide what the caller may see."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from suara_shared.http import ApiError

from .access.models import Principal, Role
from .access.service import TokenService

_bearer = HTTPBearer(auto_error=False)
ADMIN = Principal(name="admin", role=Role.ADMIN)


async def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller; 401 without a valid token."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    if credentials is None:
        raise ApiError(401, "unauthorized", "a valid bearer token is required")
    expected = request.app.state.settings.admin_api_token.get_secret_value()
    principal: Principal | None
    if hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        principal = ADMIN
    else:
        tokens: TokenService = request.app.state.access
        principal = await tokens.resolve(credentials.credentials)
    if principal is None:
        raise ApiError(401, "unauthorized", "a valid bearer token is required")
    request.state.principal = principal
    return principal


async def require_token(principal: Annotated[Principal, Depends(current_principal)]) -> str:
    """Return the acting user's name; 401 without a valid token."""
    return principal.name


async def require_supervisor(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.oversees:
        raise ApiError(403, "forbidden", "only a supervisor or an admin may do this")
    return principal


async def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "only an admin may do this")
    return principal


Actor = Annotated[str, Depends(require_token)]
CurrentUser = Annotated[Principal, Depends(current_principal)]
Supervisor = Annotated[Principal, Depends(require_supervisor)]
Admin = Annotated[Principal, Depends(require_admin)]
