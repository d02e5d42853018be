"""Canned responses: the team's prepared answers, with placeholders filled in for each ticket."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from suara_shared import db
from suara_shared.events import new_id, utcnow
from suara_shared.http import ApiError

from . import texts
from .auth import CurrentUser, Supervisor

if TYPE_CHECKING:
    from .routing import Router

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class CannedCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=120)
    text: str = Field(
        min_length=1,
        max_length=4000,
        description="may use {reference}, {name}, {department}, {due_date}, {category}, {kecamatan}",
    )

    @field_validator("text")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        unknown = sorted({p for p in PLACEHOLDER.findall(value) if p not in texts.CANNED_PLACEHOLDERS})
        if unknown:
            known = ", ".join("{" + p + "}" for p in texts.CANNED_PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; use {known}")
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class CannedRead(BaseModel):
    id: str
    title: str
    text: str
    created_by: str
    created_at: datetime


class CannedPage(BaseModel):
    items: list[CannedRead]


def render(template: str, *, ticket: dict[str, Any], routing: Router) -> str:
    """The canned text for one ticket. A confidential or anonymous citizen is greeted without a name, so that the
    stored reply does not show it to those who may not see it."""
    citizen = ticket.get("citizen") or {}
    hidden = ticket.get("confidential") or ticket.get("anonymous")
    values = {
        "reference": ticket["_id"],
        "name": (None if hidden else citizen.get("display_name")) or texts.SALUTATION,
        "department": routing.department_name(ticket.get("department")) or "Tim Pengaduan Pemkab Rembang",
        "due_date": texts.due_date(ticket.get("due_at")),
        "category": routing.category_name(ticket.get("category")) or "-",
        "kecamatan": ticket.get("kecamatan") or "-",
    }
    return PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), template)


def rendering(template: str, *, routing: Router) -> Callable[[dict[str, Any]], str]:
    """The canned text for whichever ticket it is sent on: each reporter of a merged complaint gets their own
    reference and name."""
    return lambda ticket: render(template, ticket=ticket, routing=routing)


class CannedService:
    def __init__(self, *, database: db.Database) -> None:
        self.items = database["canned_responses"]

    async def create(self, *, title: str, text: str, actor: str) -> dict[str, Any]:
        doc = {"_id": new_id(), "title": title, "text": text, "created_by": actor, "created_at": utcnow()}
        await self.items.insert_one(doc)
        return doc

    async def all(self) -> list[dict[str, Any]]:
        return await self.items.find({}).sort([("title", 1), ("_id", 1)]).to_list(500)

    async def get(self, canned_id: str) -> dict[str, Any] | None:
        return await self.items.find_one({"_id": canned_id})

    async def delete(self, canned_id: str) -> bool:
        return (await self.items.delete_one({"_id": canned_id})).deleted_count == 1


router = APIRouter(prefix="/api/v1/canned-responses", tags=["canned responses"])
CannedId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


def _service(request: Request) -> CannedService:
    service: CannedService = request.app.state.canned
    return service


def _read(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "id": doc["_id"]}


@router.get("", response_model=CannedPage)
async def list_canned(request: Request, _: CurrentUser) -> dict[str, Any]:
    """Every canned response, by title."""
    return {"items": [_read(d) for d in await _service(request).all()]}


@router.post("", response_model=CannedRead, status_code=status.HTTP_201_CREATED)
async def create_canned(request: Request, user: Supervisor, body: CannedCreate) -> dict[str, Any]:
    """A new canned response (supervisors); reply with it by `canned_id`."""
    return _read(await _service(request).create(title=body.title.strip(), text=body.text, actor=user.name))


@router.delete("/{canned_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_canned(request: Request, _: Supervisor, canned_id: CannedId) -> None:
    """Remove a canned response."""
    if not await _service(request).delete(canned_id):
        raise ApiError(404, "canned_response_not_found", f"no canned response {canned_id}")
