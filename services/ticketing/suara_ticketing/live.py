"""What the console needs beyond the ticket API: who signed in, the choices of its controls, what changed since
its last look (short polling for live updates), and the figures page's series."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from suara_shared import db
from suara_shared.events import Channel

from . import deadlines, places
from .auth import CurrentUser
from .lifecycle import ACTIVE, TRANSITIONS
from .routing import Router
from .tickets.models import Priority, TicketStatus
from .tickets.service import TicketService

router = APIRouter(prefix="/api/v1", tags=["console"])

#: A console polls every few seconds; more than this many changed tickets means "reload the list" anyway.
MAX_CHANGES = 200
TRIAGE = "triage"
UNKNOWN = "unknown"


class MeRead(BaseModel):
    name: str
    role: str
    department: str | None = None


class Choice(BaseModel):
    code: str
    name: str


class OptionsRead(BaseModel):
    statuses: list[str]
    #: The statuses each status may become (the lifecycle), so that the console offers only those.
    transitions: dict[str, list[str]]
    priorities: list[str]
    channels: list[str]
    departments: list[Choice]
    categories: list[Choice]
    kecamatan: list[str]


class Changed(BaseModel):
    reference: str
    updated_at: datetime


class ChangesRead(BaseModel):
    at: datetime = Field(description="pass it back as `since` on the next call")
    tickets: list[Changed]
    more: bool = Field(
        default=False,
        description=f"more tickets changed than the {MAX_CHANGES} listed (a flood): reload whatever is on screen",
    )


class Compliance(BaseModel):
    department: str
    count: int = Field(description="tickets resolved, or unresolved past their deadline")
    within: int


class FiguresRead(BaseModel):
    days: list[str] = Field(description="the last days (WIB), oldest first")
    volume: dict[str, list[int]] = Field(description="new tickets per day, by channel")
    compliance: list[Compliance]
    open_by_kecamatan: dict[str, int]
    satisfaction: dict[str, int] = Field(description="how many citizens gave each score 1-5")


def _service(request: Request) -> TicketService:
    service: TicketService = request.app.state.tickets
    return service


@router.get("/me", response_model=MeRead)
async def me(user: CurrentUser) -> MeRead:
    """The signed-in principal: the console shows the name and hides what the role may not do."""
    return MeRead(name=user.name, role=user.role.value, department=user.department)


@router.get("/options", response_model=OptionsRead)
async def options(request: Request, _: CurrentUser) -> OptionsRead:
    """The values the console's filters and controls offer, from the routing rules and Rembang's kecamatan."""
    routing: Router = request.app.state.routing
    rules = routing.rules
    return OptionsRead(
        statuses=[s.value for s in TicketStatus],
        transitions={s.value: [t.value for t in TicketStatus if t in TRANSITIONS[s]] for s in TicketStatus},
        priorities=[p.value for p in Priority],
        channels=[c.value for c in Channel],
        departments=[Choice(code=code, name=rule.name) for code, rule in rules.departments.items()],
        categories=[Choice(code=code, name=rule.name) for code, rule in rules.categories.items()],
        kecamatan=places.kecamatan_names(),
    )


#: A write stamped a moment before `now` may commit after the poll's read: each poll looks back this much more (the
#: client dedups).
LOOK_BACK = timedelta(seconds=2)


def changed_since(since: datetime, scope: dict[str, Any]) -> dict[str, Any]:
    """The tickets changed after `since` within `scope`: answered by the `updated_at` indexes, nothing else named
    (the embedded database uses a compound index only for a filter on exactly its fields)."""
    return {"updated_at": {"$gt": since - LOOK_BACK}, **scope}


def ticked_since(since: datetime) -> dict[str, Any]:
    """The tickets whose replies changed delivery status after `since` (`TicketService.mark_ticked`)."""
    return {"at": {"$gt": since - LOOK_BACK}}


@router.get("/changes", response_model=ChangesRead)
async def changes(
    request: Request,
    user: CurrentUser,
    since: Annotated[datetime | None, Query(description="the `at` of the previous answer")] = None,
) -> ChangesRead:
    """Tickets changed (new message, reply, delivery tick, note, update) after `since`, that the caller may see,
    most recent first. Without `since`, nothing but the moment to start from."""
    service = _service(request)
    now = service.now()
    if since is None:
        return ChangesRead(at=now, tickets=[])
    if since.tzinfo is None:
        since = since.replace(tzinfo=now.tzinfo)
    scope = user.scope()
    limit = MAX_CHANGES
    changed = {
        d["_id"]: d["updated_at"]
        for d in await service.tickets.find(changed_since(since, scope), {"updated_at": 1})
        .sort([("updated_at", -1)])
        .limit(limit)
        .to_list(None)
    }
    ticks = {
        d["_id"]: d["at"]
        for d in await service.ticks.find(ticked_since(since)).sort([("at", -1)]).limit(limit).to_list(None)
    }
    # Either list cut at its limit (the ticks before the caller's department is known) may have left out a ticket
    # on the caller's screen: say so, and the console reloads what it shows.
    more = len(changed) == limit or len(ticks) == limit
    if ticks and scope:  # only the tickets the caller may see; by reference alone, the embedded database's way
        named = await db.find_in(service.tickets, "_id", ticks, projection={"department": 1})
        ticks = {d["_id"]: ticks[d["_id"]] for d in named if user.can_see(d)}
    for reference, at in ticks.items():
        changed[reference] = max(at, changed.get(reference, at))
    newest = sorted(changed.items(), key=lambda item: item[1], reverse=True)
    return ChangesRead(
        at=now,
        tickets=[Changed(reference=ref, updated_at=at) for ref, at in newest[:limit]],
        more=more or len(newest) > limit,
    )


@router.get("/figures", response_model=FiguresRead)
async def figures(request: Request, user: CurrentUser, days: Annotated[int, Query(ge=1, le=90)] = 14) -> FiguresRead:
    """The figures page's charts: new tickets per day by channel, deadlines kept per department, open tickets
    per kecamatan, satisfaction scores. An agent of a department sees that department's figures."""
    service = _service(request)
    now = service.now()
    today = now.astimezone(deadlines.WIB).date()
    first = today - timedelta(days=days - 1)
    fields = ("status", "channel", "department", "kecamatan", "created_at", "resolved_at", "due_at", "satisfaction")
    docs = await service.tickets.find(user.scope(), {f: 1 for f in fields}).to_list(None)
    day_names = [(first + timedelta(days=i)).isoformat() for i in range(days)]
    volume: dict[str, list[int]] = {c.value: [0] * days for c in Channel}
    due: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    open_by: Counter[str] = Counter()
    scores: dict[str, int] = defaultdict(int)
    active = {s.value for s in ACTIVE}
    for doc in docs:
        created = doc["created_at"]
        if created.tzinfo is None:
            created = created.replace(tzinfo=now.tzinfo)
        index = (created.astimezone(deadlines.WIB).date() - first).days
        if 0 <= index < days and doc.get("channel") in volume:
            volume[doc["channel"]][index] += 1
        department = doc.get("department") or TRIAGE
        resolved, due_at = doc.get("resolved_at"), doc.get("due_at")
        if due_at is not None and (resolved or (doc["status"] in active and due_at < now)):
            due[department] += 1
            kept[department] += bool(resolved and resolved <= due_at)
        if doc["status"] in active:
            open_by[doc.get("kecamatan") or UNKNOWN] += 1
        satisfaction = doc.get("satisfaction")
        if isinstance(satisfaction, dict) and satisfaction.get("score"):
            scores[str(int(satisfaction["score"]))] += 1
    return FiguresRead(
        days=day_names,
        volume=volume,
        compliance=[Compliance(department=d, count=n, within=kept[d]) for d, n in due.most_common()],
        open_by_kecamatan=dict(open_by.most_common()),
        satisfaction={str(n): scores.get(str(n), 0) for n in range(1, 6)},
    )
