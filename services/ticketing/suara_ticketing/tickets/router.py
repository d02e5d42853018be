"""The ticket API of the contract: list, get, update, reply, note; and the public status of one ticket."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status

from suara_shared.events import Channel
from suara_shared.http import ApiError

from ..auth import Actor
from ..texts import STATUS_LABELS
from .models import (
    NoteCreate,
    NoteRead,
    PublicStatus,
    ReplyAccepted,
    ReplyCreate,
    TicketPage,
    TicketRead,
    TicketStatus,
    TicketSummary,
    TicketUpdate,
)
from .service import NotFound, TicketService, decode_cursor

router = APIRouter(prefix="/api/v1")

Reference = Annotated[str, Path(pattern=r"^[A-Z]{2,10}-\d{4}-\d{6}$", examples=["RMB-2026-000001"])]
Name = Annotated[str | None, Query(max_length=120)]


def _service(request: Request) -> TicketService:
    service: TicketService = request.app.state.tickets
    return service


def _not_found(reference: str) -> ApiError:
    return ApiError(404, "ticket_not_found", f"no ticket {reference}")


def _message(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "id": doc.get("outbound_id") or doc["_id"]}


def _ticket(doc: dict[str, Any]) -> dict[str, Any]:
    out = {**doc, "reference": doc["_id"]}
    if "messages" in doc:
        out["messages"] = [_message(m) for m in doc["messages"]]
    if "notes" in doc:
        out["notes"] = [{**n, "id": n["_id"]} for n in doc["notes"]]
    return out


@router.get("/tickets", response_model=TicketPage, tags=["tickets"])
async def list_tickets(
    request: Request,
    _: Actor,
    status_: Annotated[TicketStatus | None, Query(alias="status")] = None,
    channel: Channel | None = None,
    department: Name = None,
    assignee: Name = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """Tickets, newest first, filtered; follow `next_cursor` for the next page."""
    filters = {
        k: v
        for k, v in {"status": status_, "channel": channel, "department": department, "assignee": assignee}.items()
        if v is not None
    }
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except ValueError as exc:
            raise ApiError(422, "validation_error", "cursor: not a cursor from this API") from exc
    docs, next_cursor = await _service(request).list(
        filters={k: str(v) for k, v in filters.items()}, q=q, limit=limit, cursor=cursor
    )
    return {"items": [_ticket(d) for d in docs], "next_cursor": next_cursor}


@router.get("/tickets/{reference}", response_model=TicketRead, tags=["tickets"])
async def get_ticket(request: Request, _: Actor, reference: Reference) -> dict[str, Any]:
    """One ticket with its whole conversation and internal notes."""
    try:
        return _ticket(await _service(request).get(reference))
    except NotFound:
        raise _not_found(reference) from None


@router.patch("/tickets/{reference}", response_model=TicketRead, tags=["tickets"])
async def update_ticket(request: Request, actor: Actor, reference: Reference, body: TicketUpdate) -> dict[str, Any]:
    """Change status, assignee, department, category or priority."""
    changes = body.model_dump(exclude_unset=True)
    if any(v is None for k, v in changes.items() if k in ("status", "priority")):
        raise ApiError(422, "validation_error", "status and priority cannot be empty")
    try:
        return _ticket(await _service(request).update(reference, changes, actor=actor))
    except NotFound:
        raise _not_found(reference) from None


@router.post(
    "/tickets/{reference}/replies", response_model=ReplyAccepted, status_code=status.HTTP_202_ACCEPTED, tags=["tickets"]
)
async def reply(request: Request, actor: Actor, reference: Reference, body: ReplyCreate) -> ReplyAccepted:
    """Queue a reply to the citizen; it leaves on the channel the ticket came from."""
    text = body.text.strip()
    if not text:
        raise ApiError(422, "validation_error", "text: must not be blank")
    try:
        outbound_id = await _service(request).reply(reference, text, actor=actor)
    except NotFound:
        raise _not_found(reference) from None
    return ReplyAccepted(id=outbound_id)


@router.post(
    "/tickets/{reference}/notes", response_model=NoteRead, status_code=status.HTTP_201_CREATED, tags=["tickets"]
)
async def add_note(request: Request, actor: Actor, reference: Reference, body: NoteCreate) -> dict[str, Any]:
    """An internal note, never sent to the citizen."""
    text = body.text.strip()
    if not text:
        raise ApiError(422, "validation_error", "text: must not be blank")
    try:
        note = await _service(request).add_note(reference, text, actor=actor)
    except NotFound:
        raise _not_found(reference) from None
    return {**note, "id": note["_id"]}


@router.get("/public/status/{key}", response_model=PublicStatus, tags=["public"])
async def public_status(
    request: Request, key: Annotated[str, Path(min_length=6, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
) -> dict[str, Any]:
    """What the citizen's status page shows: status and Suara's replies, without identity or the complaint."""
    try:
        doc = await _service(request).public_status(key)
    except NotFound:
        raise ApiError(404, "not_found", "no ticket with that reference or submission id") from None
    return {
        **doc,
        "reference": doc["_id"],
        "status_label": STATUS_LABELS.get(doc["status"], doc["status"]),
        "replies": [{**r, "id": r["outbound_id"]} for r in doc["replies"]],
    }


__all__ = ["TicketSummary", "router"]
