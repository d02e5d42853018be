"""The ticket API: list, get, update, reply, note, audit trail, dispositions, merging, deadlines; and the public
status of one ticket."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from suara_shared.events import Channel
from suara_shared.http import ApiError

from .. import deadlines, places, receipts
from ..access.models import Principal
from ..auth import CurrentUser, Supervisor
from ..canned import PLACEHOLDER, CannedService, rendering
from ..lifecycle import ACTIVE, InvalidTransition
from ..social import PrivateReplyRefused, ReplyTooLong
from ..texts import STATUS_LABELS
from .models import (
    REFERENCE_PATTERN,
    DeadlineOverview,
    DispositionCreate,
    MergeCreate,
    NoteCreate,
    NoteRead,
    Priority,
    PublicStatus,
    ReplyAccepted,
    ReplyCreate,
    TicketEventPage,
    TicketPage,
    TicketRead,
    TicketStatus,
    TicketSummary,
    TicketUpdate,
)
from .service import Forbidden, NotFound, TicketService, decode_cursor
from .workflow import InvalidDisposition, InvalidMerge, TicketClosed, UnknownDepartment, disposition, merge

router = APIRouter(prefix="/api/v1")

Reference = Annotated[str, Path(pattern=REFERENCE_PATTERN, examples=["RMB-2026-000001"])]
#: Plain names only: a filter value can never carry an operator or a pattern.
DEPARTMENT_PATTERN = r"^[A-Za-z][A-Za-z0-9 ./-]{0,39}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,119}$"
CATEGORY_PATTERN = r"^[a-z][a-z0-9_]{1,40}$"
HIDDEN = "(rahasia)"


class TicketFilters(BaseModel):
    """Filters of the ticket list; an unknown parameter, or a value that is not a plain name, is a 422."""

    model_config = ConfigDict(extra="forbid")

    status: TicketStatus | None = None
    channel: Channel | None = None
    department: str | None = Field(default=None, pattern=DEPARTMENT_PATTERN)
    triage: bool | None = Field(default=None, description="true: only tickets no department has yet")
    assignee: str | None = Field(default=None, pattern=NAME_PATTERN)
    category: str | None = Field(default=None, pattern=CATEGORY_PATTERN)
    priority: Priority | None = None
    kecamatan: str | None = Field(default=None, pattern=r"^[A-Za-z. ]{2,40}$", description="one of the 14")
    desa: str | None = Field(default=None, pattern=r"^[A-Za-z ]{2,60}$")
    overdue: bool | None = Field(default=None, description="true: unresolved past the deadline")
    undelivered: bool | None = Field(
        default=None, description="true: the newest answer to the citizen failed (they have not got it)"
    )
    merged_into: str | None = Field(default=None, pattern=REFERENCE_PATTERN)
    created_from: date | None = Field(default=None, description="first day (WIB), inclusive")
    created_to: date | None = Field(default=None, description="last day (WIB), inclusive")
    q: str | None = Field(
        default=None, max_length=200, description="words in the complaint, name, reference or phone number"
    )
    limit: int = Field(default=25, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500)


def _service(request: Request) -> TicketService:
    service: TicketService = request.app.state.tickets
    return service


def _not_found(reference: str) -> ApiError:
    return ApiError(404, "ticket_not_found", f"no ticket {reference}")


def _message(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "id": doc.get("outbound_id") or doc["_id"]}


def _ticket(doc: dict[str, Any], user: Principal, now: datetime) -> dict[str, Any]:
    out = {**doc, "reference": doc["_id"]}
    out["overdue"] = bool(doc.get("due_at") and doc["status"] in ACTIVE and doc["due_at"] < now)
    satisfaction = doc.get("satisfaction")
    out["satisfaction"] = satisfaction.get("score") if isinstance(satisfaction, dict) else None
    out["merged"] = doc.get("merged") or []
    if not user.sees_identity(doc):
        out["citizen"] = {"channel_user_id": HIDDEN, "display_name": HIDDEN, "phone": None, "email": None}
    if "messages" in doc:
        out["messages"] = [_message(m) for m in doc["messages"]]
    if "notes" in doc:
        out["notes"] = [{**n, "id": n["_id"]} for n in doc["notes"]]
    return out


def _filters_to_query(
    filters: TicketFilters, now: datetime
) -> tuple[dict[str, str], dict[str, datetime], dict[str, Any]]:
    """Equalities on plain values, the bounds of created_at, and the other conditions built here (never from raw
    input)."""
    equal: dict[str, str] = {}
    for key in ("status", "channel", "department", "assignee", "category", "priority", "merged_into"):
        value = getattr(filters, key)
        if value is not None:
            equal[key] = str(value)
    clauses: list[dict[str, Any]] = []
    if filters.kecamatan is not None:
        kecamatan = places.canonical_kecamatan(filters.kecamatan)
        if kecamatan is None:
            raise ApiError(
                422, "validation_error", f"kecamatan: not one of Rembang's: {', '.join(places.kecamatan_names())}"
            )
        equal["kecamatan"] = kecamatan
    if filters.desa is not None:
        clauses.append({"desa": {"$regex": f"^{re.escape(filters.desa.strip())}$", "$options": "i"}})
    if filters.triage is not None:
        clauses.append({"department": None} if filters.triage else {"department": {"$ne": None}})
    active = [s.value for s in ACTIVE]
    if filters.overdue is True:
        clauses.append({"status": {"$in": active}, "due_at": {"$lt": now}})
    elif filters.overdue is False:
        clauses.append({"$or": [{"status": {"$nin": active}}, {"due_at": {"$gte": now}}, {"due_at": None}]})
    created = deadlines.created_between(filters.created_from, filters.created_to)
    return equal, created, {"$and": clauses} if clauses else {}


@router.get("/tickets", response_model=TicketPage, tags=["tickets"])
async def list_tickets(
    request: Request, user: CurrentUser, filters: Annotated[TicketFilters, Query()]
) -> dict[str, Any]:
    """Tickets, newest first, filtered; follow `next_cursor` for the next page. An agent of a department sees
    that department's tickets only."""
    if filters.cursor is not None:
        try:
            decode_cursor(filters.cursor)
        except ValueError as exc:
            raise ApiError(422, "validation_error", "cursor: not a cursor from this API") from exc
    service = _service(request)
    now = service.now()
    equal, created, match = _filters_to_query(filters, now)
    docs, next_cursor = await service.list(
        filters=equal,
        q=filters.q,
        limit=filters.limit,
        cursor=filters.cursor,
        match=match,
        created=created,
        undelivered=filters.undelivered,
        principal=user,
    )
    return {"items": [_ticket(d, user, now) for d in docs], "next_cursor": next_cursor}


@router.get("/deadlines", response_model=DeadlineOverview, tags=["tickets"])
async def deadline_overview(
    request: Request,
    user: Supervisor,
    within_working_days: Annotated[int, Query(ge=0, le=10, description="due before the end of this working day")] = 1,
) -> dict[str, Any]:
    """For supervisors: unresolved tickets past their deadline, and those due within the coming working days."""
    service = _service(request)
    now = service.now()
    active = [s.value for s in ACTIVE]
    horizon = deadlines.due_at(now, within_working_days)
    overdue, _ = await service.list(
        filters={}, q=None, limit=100, cursor=None, match={"status": {"$in": active}, "due_at": {"$lt": now}}
    )
    soon, _ = await service.list(
        filters={},
        q=None,
        limit=100,
        cursor=None,
        match={"status": {"$in": active}, "due_at": {"$gte": now, "$lte": horizon}},
    )
    return {
        "overdue": [_ticket(d, user, now) for d in sorted(overdue, key=lambda d: d["due_at"])],
        "due_soon": [_ticket(d, user, now) for d in sorted(soon, key=lambda d: d["due_at"])],
    }


@router.get("/tickets/{reference}", response_model=TicketRead, tags=["tickets"])
async def get_ticket(request: Request, user: CurrentUser, reference: Reference) -> dict[str, Any]:
    """One ticket with its whole conversation and internal notes. Opening it marks the citizen's messages read on
    their channel (WhatsApp's blue ticks)."""
    service = _service(request)
    try:
        ticket = await service.get(reference, principal=user)
    except NotFound:
        raise _not_found(reference) from None
    receipts.on_ticket_opened(request.app, service, ticket)
    return _ticket(ticket, user, service.now())


@router.get("/tickets/{reference}/events", response_model=TicketEventPage, tags=["tickets"])
async def ticket_events(request: Request, user: CurrentUser, reference: Reference) -> dict[str, Any]:
    """The audit trail, oldest first: who did what, when."""
    try:
        events = await _service(request).history(reference, principal=user)
    except NotFound:
        raise _not_found(reference) from None
    return {"items": [{**e, "id": e["_id"]} for e in events]}


@router.patch("/tickets/{reference}", response_model=TicketRead, tags=["tickets"])
async def update_ticket(
    request: Request, user: CurrentUser, reference: Reference, body: TicketUpdate
) -> dict[str, Any]:
    """Change status (following the lifecycle; 409 otherwise), assignee, department, category, priority or
    confidentiality (supervisors)."""
    changes = body.model_dump(exclude_unset=True)
    if any(v is None for k, v in changes.items() if k in ("status", "priority", "confidential")):
        raise ApiError(422, "validation_error", "status, priority and confidential cannot be empty")
    if "confidential" in changes and not user.oversees:
        raise ApiError(403, "forbidden", "only a supervisor changes whether a report is confidential")
    service = _service(request)
    try:
        return _ticket(await service.update(reference, changes, actor=user.name, principal=user), user, service.now())
    except NotFound:
        raise _not_found(reference) from None
    except InvalidTransition as exc:
        raise ApiError(409, "invalid_transition", str(exc)) from None
    except TicketClosed:
        raise ApiError(409, "ticket_closed", f"{reference} is closed; a new message opens a new ticket") from None
    except UnknownDepartment as exc:
        raise ApiError(422, "validation_error", str(exc)) from None
    except Forbidden as exc:
        raise ApiError(403, "forbidden", str(exc)) from None


@router.post(
    "/tickets/{reference}/disposition", response_model=TicketRead, tags=["tickets"], status_code=status.HTTP_200_OK
)
async def ticket_disposition(
    request: Request, user: CurrentUser, reference: Reference, body: DispositionCreate
) -> dict[str, Any]:
    """An agency's answer: `accept`; `decline` ("not our authority", with a reason: back to triage, or to the
    `department` named); `extend` the deadline by `working_days`, with a reason."""
    service = _service(request)
    try:
        doc = await disposition(
            service,
            reference,
            action=body.action.value,
            reason=body.reason.strip() if body.reason else None,
            department=body.department,
            working_days=body.working_days,
            actor=user.name,
            principal=user,
        )
    except NotFound:
        raise _not_found(reference) from None
    except InvalidDisposition as exc:
        raise ApiError(409, "invalid_disposition", str(exc)) from None
    except UnknownDepartment as exc:
        raise ApiError(422, "validation_error", str(exc)) from None
    return _ticket(doc, user, service.now())


@router.post("/tickets/{reference}/merge", response_model=TicketRead, tags=["tickets"])
async def merge_tickets(request: Request, user: CurrentUser, reference: Reference, body: MergeCreate) -> dict[str, Any]:
    """Merge other reports of the same public problem into this master ticket: from now on its replies and its
    resolution go to every reporter, each on their own channel."""
    service = _service(request)
    try:
        doc = await merge(service, reference, body.references, actor=user.name, principal=user)
    except NotFound as exc:
        raise _not_found(str(exc)) from None
    except InvalidMerge as exc:
        raise ApiError(409, "invalid_merge", str(exc)) from None
    return _ticket(doc, user, service.now())


@router.post(
    "/tickets/{reference}/replies", response_model=ReplyAccepted, status_code=status.HTTP_202_ACCEPTED, tags=["tickets"]
)
async def reply(request: Request, user: CurrentUser, reference: Reference, body: ReplyCreate) -> ReplyAccepted:
    """Queue a reply to the citizen (its text, or a canned response filled in); it leaves on the channel the
    ticket came from, and on a master ticket to every merged reporter too."""
    service = _service(request)
    typed = (body.text or "").strip()
    text: str | Callable[[dict[str, Any]], str] = typed
    if PLACEHOLDER.search(typed):
        # A canned text the agent edited (or sent after the page reloaded) still names its placeholders: they are
        # filled in for each reporter's ticket, never sent as "{reference}".
        text = rendering(typed, routing=service.routing)
    if body.canned_id is not None:
        canned: CannedService = request.app.state.canned
        template = await canned.get(body.canned_id)
        if template is None:
            raise ApiError(404, "canned_response_not_found", f"no canned response {body.canned_id}")
        try:
            ticket = await service.get(reference, principal=user)
        except NotFound:
            raise _not_found(reference) from None
        text = rendering(template["text"], routing=service.routing)  # a merged reporter is never told the master's
        if not text(ticket).strip():
            raise ApiError(422, "validation_error", "text: must not be blank")
    elif not text:
        raise ApiError(422, "validation_error", "text: must not be blank")
    try:
        outbound_id = await service.reply(reference, text, actor=user.name, principal=user, private=body.private)
    except NotFound:
        raise _not_found(reference) from None
    except TicketClosed:
        raise ApiError(409, "ticket_closed", f"{reference} is closed; a new message opens a new ticket") from None
    except PrivateReplyRefused as exc:
        raise ApiError(409, "private_reply_refused", str(exc)) from None
    except ReplyTooLong as exc:
        raise ApiError(422, "reply_too_long", str(exc), limit=exc.limit) from None
    return ReplyAccepted(id=outbound_id)


@router.post(
    "/tickets/{reference}/notes", response_model=NoteRead, status_code=status.HTTP_201_CREATED, tags=["tickets"]
)
async def add_note(request: Request, user: CurrentUser, reference: Reference, body: NoteCreate) -> dict[str, Any]:
    """An internal note, never sent to the citizen."""
    text = body.text.strip()
    if not text:
        raise ApiError(422, "validation_error", "text: must not be blank")
    try:
        note = await _service(request).add_note(reference, text, actor=user.name, principal=user)
    except NotFound:
        raise _not_found(reference) from None
    return {**note, "id": note["_id"]}


@router.get("/public/status/{key}", response_model=PublicStatus, tags=["public"])
async def public_status(
    request: Request, key: Annotated[str, Path(min_length=6, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
) -> dict[str, Any]:
    """What the citizen's status page shows: status and Suara's replies, without identity or the complaint."""
    service = _service(request)
    try:
        doc = await service.public_status(key)
    except NotFound:
        raise ApiError(404, "not_found", "no ticket with that reference or submission id") from None
    return {
        **doc,
        "reference": doc["_id"],
        "status_label": STATUS_LABELS.get(doc["status"], doc["status"]),
        "category_name": service.routing.category_name(doc.get("category")),
        "department_name": service.routing.department_name(doc.get("department")),
        "replies": [{**r, "id": r["outbound_id"]} for r in doc["replies"]],
    }


__all__ = ["TicketSummary", "router"]
