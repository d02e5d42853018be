"""Bearer-token authentication of the ticket API."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from suara_shared.http import ApiError

_bearer = HTTPBearer(auto_error=False)


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """Return the acting user's name; 401 without a valid token."""
    expected = request.app.state.settings.admin_api_token.get_secret_value()
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "a valid bearer token is required")
    return "admin"


Actor = Annotated[str, Depends(require_token)]
