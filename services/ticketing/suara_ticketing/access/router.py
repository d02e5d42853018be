"""The token API (admins only): create a token with a role and department, list tokens, revoke one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, status

from suara_shared.http import ApiError

from ..auth import Admin
from .models import Role, TokenCreate, TokenCreated, TokenPage, TokenRead
from .service import NameTaken, TokenService

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])

TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


def _service(request: Request) -> TokenService:
    service: TokenService = request.app.state.access
    return service


def _read(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "id": doc["_id"]}


@router.post("", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
async def create_token(request: Request, admin: Admin, body: TokenCreate) -> dict[str, Any]:
    """A new token; the answer is the only time the token itself is shown."""
    if body.department is not None:
        known = request.app.state.routing.rules.departments
        if body.department not in known:
            raise ApiError(422, "validation_error", f"department: unknown; use one of: {', '.join(known)}")
    if body.role is not Role.AGENT and body.department is not None:
        raise ApiError(422, "validation_error", "department: only agents belong to a department")
    try:
        doc, token = await _service(request).create(
            name=body.name, role=body.role, department=body.department, created_by=admin.name
        )
    except NameTaken:
        raise ApiError(409, "name_taken", f"an active token is already named {body.name}") from None
    return {**_read(doc), "token": token}


@router.get("", response_model=TokenPage)
async def list_tokens(request: Request, _: Admin) -> dict[str, Any]:
    """Every token ever created, without the tokens themselves."""
    return {"items": [_read(d) for d in await _service(request).all()]}


@router.delete("/{token_id}", response_model=TokenRead)
async def revoke_token(request: Request, _: Admin, token_id: TokenId) -> dict[str, Any]:
    """Revoke a token: it stops working at once."""
    doc = await _service(request).revoke(token_id)
    if doc is None:
        raise ApiError(404, "token_not_found", f"no token {token_id}")
    return _read(doc)
