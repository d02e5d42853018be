"""How a ticket is worked: routing on arrival, status changes and what they send, dispositions of agencies,
deadlines and their breaches, automatic closing, satisfaction surveys and merging of one problem's reports.

These are functions of the TicketService (the only writer of tickets), kept apart so that the service's own
module stays about messages; each takes the service as its first argument."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from suara_shared import db
from suara_shared.events import InboundMessage, MessageKind, ReplyPurpose, TicketEventType

from .. import deadlines, places, texts
from ..lifecycle import ACTIVE, check
from ..metrics import DEADLINE_BREACHES, TICKETS_BY_STATUS, TRIAGE_DEPARTMENT_LABEL
from .models import Priority, TicketStatus

if TYPE_CHECKING:
    from ..access.models import Principal
    from ..routing import Router
    from .service import TicketService

log = logging.getLogger(__name__)

#: The tickets a satisfaction answer may be for: resolved (asked on resolution), or closed since.
SURVEYED = [TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value]
#: A satisfaction answer's words, as citizens write them ("4", "4/5", "nilai 4", "5 pak, matur nuwun", "lima",
#: "⭐⭐⭐⭐"); anything else beside a score makes the message a message ("3 lubang belum ditambal").
_WORD = re.compile(r"@\w+|(\d+)(?:\s*/\s*5)?|[^\W\d_]+")
#: Scores in words, Indonesian and Javanese.
SCORE_WORDS = {"satu": 1, "dua": 2, "tiga": 3, "empat": 4, "lima": 5}
SCORE_WORDS |= {"siji": 1, "loro": 2, "telu": 3, "papat": 4, "limo": 5}
STARS = ("⭐", "★")
#: Words that thank or address, which may stand beside a score, or alone: a "terima kasih, sudah beres" after a
#: resolution is kept on the ticket without reopening it.
_COURTESY_WORDS = (
    "pak bu bapak ibu mas mbak kak nilai nilainya skor angka puas sangat cukup sekali banyak terima kasih makasih "
    "trims thanks thank you matur nuwun suwun sanget ok oke okay sip mantap bagus baik sudah beres selesai dari "
    "alhamdulillah"
)
COURTESY = frozenset(_COURTESY_WORDS.split())
#: Marks that thank without words (a message of them alone, or beside courtesy words): 👍 is thanks, 👎 is not.
THANKS_MARKS = frozenset("👍🙏❤♥😊🙂😀😁😄🥰🤗👌💯✅⭐★🌟🙌👏🤝.,!\ufe0f\u200d") | {
    chr(c) for c in range(0x1F3FB, 0x1F400)
}
#: The messages whose text is what the citizen wrote, answered where it was written: a survey answer or a status
#: query may be a direct message, a comment or a mention.
WORDED_KINDS = frozenset({MessageKind.TEXT, MessageKind.COMMENT, MessageKind.MENTION})
#: Longer than this, a message is a message whatever its words.
SURVEY_WORDS_MAX = 8
#: Everything the citizens of one ticket wrote, lower-cased, for search without a text index; bounded.
SEARCH_TEXT_MAX = 20_000


class TicketClosed(Exception):
    """A closed ticket takes no more replies or changes."""


class UnknownDepartment(ValueError):
    """A department (or category) the routing file does not list."""


class InvalidMerge(Exception):
    """Tickets that cannot be merged, and why."""


class InvalidDisposition(Exception):
    """A disposition that does not fit the ticket, and why."""


# --- arrival ---------------------------------------------------------------------------------------------------


async def route_new(service: TicketService, event: InboundMessage, now: datetime) -> dict[str, Any]:
    """Category, agency, priority, deadline, place and assignee of a new ticket."""
    meta = event.metadata
    hint = meta.get("category") if isinstance(meta.get("category"), str) else None
    routing = service.routing.classify(event.text, category=hint)
    location = event.location
    place = places.locate(
        text=event.text,
        kecamatan=_str(meta.get("kecamatan")) or (location.kecamatan if location else None),
        desa=_str(meta.get("desa")) or (location.desa if location else None),
        latitude=location.latitude if location else None,
        longitude=location.longitude if location else None,
        address=" ".join(p for p in ((location.name, location.address) if location else ()) if p) or None,
    )
    days = service.routing.deadline_days(routing.priority, department=routing.department)
    return {
        "category": routing.category,
        "department": routing.department,
        "priority": routing.priority.value,
        "forwarded_to": routing.forward_to,
        "kecamatan": place.kecamatan,
        "desa": place.desa,
        "due_at": deadlines.due_at(now, days),
        "breached": False,
        "extensions": [],
        "search_text": searchable("", event),
        "assignee": await round_robin(service, routing.department),
        "geo": {"lat": location.latitude, "long": location.longitude}
        if location and location.latitude is not None and location.longitude is not None
        else None,
    }


async def enrich_on_message(service: TicketService, ticket: dict[str, Any], event: InboundMessage) -> dict[str, Any]:
    """What a later message adds: searchable text, a place if none was known, a route if none was found (with the
    department's next agent in turn, as a ticket routed on arrival gets)."""
    changes: dict[str, Any] = {"search_text": searchable(ticket.get("search_text") or "", event)}
    if not ticket.get("summary") and event.text:
        changes["summary"] = event.text[:280]
    if not ticket.get("kecamatan"):
        location = event.location
        place = places.locate(
            text=event.text,
            latitude=location.latitude if location else None,
            longitude=location.longitude if location else None,
            address=" ".join(p for p in ((location.name, location.address) if location else ()) if p) or None,
        )
        if place.kecamatan:
            changes.update(kecamatan=place.kecamatan, desa=place.desa)
    if ticket.get("category") is None and ticket["status"] == TicketStatus.NEW and event.text:
        routing = service.routing.classify(event.text)
        if routing.category is not None:
            changes.update(
                category=routing.category,
                department=routing.department,
                priority=routing.priority.value,
                forwarded_to=routing.forward_to,
            )
            changes["due_at"] = compute_due({**ticket, **changes}, service)
            if not ticket.get("assignee") and (agent := await round_robin(service, routing.department)):
                changes["assignee"] = agent
    return changes


def searchable(existing: str, event: InboundMessage) -> str:
    parts = [existing, event.text or ""]
    parts += [a.caption or "" for a in event.attachments]
    return " ".join(" ".join(parts).casefold().split())[:SEARCH_TEXT_MAX]


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def acknowledgement_extra(service: TicketService, ticket: dict[str, Any]) -> str:
    """What the acknowledgement adds: the finished ticket this one follows, the outside body it goes to."""
    extra = ""
    if ticket.get("previous_reference"):
        extra += texts.linked(ticket["previous_reference"])
    if ticket.get("forwarded_to"):
        rule = service.routing.rules.categories.get(ticket.get("category") or "")
        extra += texts.forwarded(forward_to=ticket["forwarded_to"], advice=rule.forward_advice if rule else None)
    return extra


async def round_robin(service: TicketService, department: str | None) -> str | None:
    """The department's next agent in turn, when the routing file asks for round robin there."""
    if department is None:
        return None
    rule = service.routing.rules.departments.get(department)
    if rule is None or not rule.round_robin:
        return None
    agents = await service.access.agents_of(department)
    if not agents:
        return None
    counter = await service.counters.find_one_and_update(
        {"_id": f"round-robin:{department}"},
        {"$inc": {"seq": 1}},
        upsert=True,
        return_document=db.ReturnDocument.AFTER,
    )
    seq = int(counter["seq"]) if counter else 1
    return str(agents[(seq - 1) % len(agents)])


# --- reopening and surveys -------------------------------------------------------------------------------------


def reopenable(service: TicketService, ticket: dict[str, Any], now: datetime) -> bool:
    """Whether the citizen's next message joins this ticket (a resolved one only within the reopen window)."""
    if ticket["status"] != TicketStatus.RESOLVED:
        return True
    resolved_at = ticket.get("resolved_at") or ticket["updated_at"]
    return deadlines.elapsed_working_days(resolved_at, now) < service.policy.reopen_window_working_days


async def after_citizen_reopened(service: TicketService, ticket: dict[str, Any], now: datetime) -> None:
    """A reporter wrote again: the resolution is undone, and a merged report's master is reopened with it."""
    if ticket["status"] != TicketStatus.RESOLVED:
        return
    await service.tickets.update_one({"_id": ticket["_id"]}, {"$unset": {"resolved_at": "", "survey_asked_at": ""}})
    master = ticket.get("merged_into")
    if master:
        reopened = await service.tickets.update_one(
            {"_id": master, "status": TicketStatus.RESOLVED.value},
            {"$set": {"status": TicketStatus.OPEN.value, "updated_at": now}, "$unset": {"resolved_at": ""}},
        )
        if reopened.modified_count:
            await service._add_event(
                master,
                TicketEventType.UPDATED,
                actor="citizen",
                data={"status": ["resolved", "open"], "reopened_by": ticket["_id"]},
            )


def conversation_tickets(channel: str, conversation_key: str, statuses: Iterable[str]) -> dict[str, Any]:
    """A conversation's tickets in these statuses: exactly the fields of the index on them (the embedded database
    reads every ticket for a filter naming one more). Callers check anything else on what comes back."""
    return {"channel": channel, "conversation_key": conversation_key, "status": {"$in": list(statuses)}}


class Courtesy(NamedTuple):
    """A message that only answers the survey, or only thanks: `score` is None for thanks alone."""

    score: int | None


def courtesy(event: InboundMessage) -> Courtesy | None:
    """What a short text, comment or mention is if it only scores ("1".."5", in digits, words or stars) or only
    thanks; None for anything else, which `record_survey_answer` leaves to the ticket."""
    if event.kind not in WORDED_KINDS or not event.text:
        return None
    text = event.text.casefold()
    scores: list[int] = []
    count = 0
    for found in _WORD.finditer(text):
        word = found.group(0)
        if word.startswith("@"):
            continue  # a mention's handle
        count += 1
        if found.group(1) is not None:
            scores.append(int(found.group(1)))
        elif word in SCORE_WORDS:
            scores.append(SCORE_WORDS[word])
        elif word not in COURTESY:
            return None
    if count > SURVEY_WORDS_MAX:
        return None
    if scores[-1:] == [5] and "dari" in text:
        scores.pop()  # "4 dari 5": the scale
    stars = sum(text.count(star) for star in STARS)
    if not scores and 1 <= stars <= 5:
        scores.append(stars)
    if len(scores) > 1 or any(not 1 <= score <= 5 for score in scores):
        return None
    marks = _WORD.sub("", text)
    if not scores and any(not c.isspace() and c not in THANKS_MARKS and not c.isdigit() for c in marks):
        return None  # "😡", "???", "👎": not thanks, whatever the words beside them; the ticket hears it
    return Courtesy(scores[0] if scores else None)


def survey_score(event: InboundMessage) -> int | None:
    """The satisfaction score the message gives, if it does nothing else."""
    answer = courtesy(event)
    return answer.score if answer else None


async def record_survey_answer(service: TicketService, event: InboundMessage) -> bool:
    """A score after a resolution is the citizen's satisfaction: recorded, thanked, and nothing reopened. Thanks
    alone after it is kept on the ticket, reopening nothing. Neither while the conversation has a ticket still
    being worked: there "3" answers the agent's question. True if handled."""
    answer = courtesy(event)
    if answer is None:
        return False
    channel, conversation = event.channel.value, event.conversation_key
    if await service.tickets.find_one(conversation_tickets(channel, conversation, ACTIVE), {"_id": 1}):
        return False
    if answer.score is None:
        return await _keep_thanks(service, event)
    score = answer.score
    now = service.now()
    asked_since = now - timedelta(days=service.policy.survey_window_days)
    finished = await service.tickets.find(
        conversation_tickets(event.channel.value, event.conversation_key, SURVEYED), sort=[("created_at", -1)]
    ).to_list(None)
    ticket = next(
        (
            t
            for t in finished
            if t.get("satisfaction") is None
            and isinstance(asked := t.get("survey_asked_at"), datetime)
            and asked >= asked_since
        ),
        None,
    )
    if ticket is None:
        return False
    reference = ticket["_id"]
    numbered = await db.increment(
        service.tickets,
        reference,
        "message_count",
        also={"satisfaction": {"score": score, "at": now}, "updated_at": now},
    )
    await service._insert_inbound(event, ticket=reference, seq=(numbered or ticket)["message_count"])
    await service._add_event(reference, TicketEventType.SURVEY_ANSWERED, actor="citizen", data={"score": score})
    await service._queue_outbound(
        outbound_id=_stable("survey", event.dedup_key),
        ticket=reference,
        channel=ticket["channel"],
        conversation_key=ticket["conversation_key"],
        recipient=ticket["citizen"]["channel_user_id"],
        text=texts.survey_thanks(reference=reference, score=score),
        purpose=ReplyPurpose.SURVEY,
        reply_to=event.platform_message_id,
        cause=event.dedup_key,
    )
    await service.publish_pending({"ticket": reference})
    return True


async def _keep_thanks(service: TicketService, event: InboundMessage) -> bool:
    """Thanks after a resolution, kept on the resolved ticket as it is; under a closed one (or none) it opens no new
    ticket and is kept alone."""
    found = await service.tickets.find_one(
        conversation_tickets(event.channel.value, event.conversation_key, SURVEYED), sort=[("created_at", -1)]
    )
    if found is None:
        return False  # thanks for nothing Suara knows: a message like any other
    await service._keep_quietly(event, found["_id"] if found["status"] == TicketStatus.RESOLVED else None)
    return True


def _stable(*parts: str) -> str:
    from .service import _stable_id

    return _stable_id(*parts)


# --- changes by the response team -----------------------------------------------------------------------------


def compute_due(ticket: dict[str, Any], service: TicketService) -> datetime:
    """The deadline: the priority's working days from arrival (triage's, while no agency has it), plus extensions."""
    days = service.routing.deadline_days(ticket.get("priority") or "normal", department=ticket.get("department"))
    due = deadlines.due_at(ticket["created_at"], days)
    for extension in ticket.get("extensions") or []:
        due = deadlines.extend(due, int(extension["working_days"]))
    return due


def check_department(service: TicketService, department: str | None) -> None:
    if department is not None and department not in service.routing.rules.departments:
        known = ", ".join(service.routing.rules.departments)
        raise UnknownDepartment(f"department: unknown; use one of: {known}")


async def apply_changes(service: TicketService, ticket: dict[str, Any], changes: dict[str, Any], *, actor: str) -> None:
    """Store the changed fields with what follows from them (deadline, round robin, resolution, closing)."""
    if ticket["status"] == TicketStatus.CLOSED:
        raise TicketClosed(ticket["_id"])
    now = service.now()
    sets: dict[str, Any] = {**changes, "updated_at": now}
    unsets: dict[str, Any] = {}
    if "status" in changes:
        check(ticket["status"], changes["status"])
    if changes.get("category") is not None and changes["category"] not in service.routing.rules.categories:
        known = ", ".join(service.routing.rules.categories)
        raise UnknownDepartment(f"category: unknown; use one of: {known}")
    if "department" in changes:
        check_department(service, changes["department"])
        if "assignee" not in changes:
            sets["assignee"] = await round_robin(service, changes["department"])
    if "priority" in changes or "department" in changes:
        sets["due_at"] = compute_due({**ticket, **changes}, service)
        if sets["due_at"] > now:
            sets["breached"] = False
    status = changes.get("status")
    if status == TicketStatus.RESOLVED:
        sets.update(resolved_at=now, survey_asked_at=now, satisfaction=None)
    elif status == TicketStatus.CLOSED:
        sets["closed_at"] = now
    elif status == TicketStatus.OPEN and ticket["status"] == TicketStatus.RESOLVED:
        unsets.update(resolved_at="", survey_asked_at="")
    update: dict[str, Any] = {"$set": sets}
    if unsets:
        update["$unset"] = unsets
    await service.tickets.update_one({"_id": ticket["_id"]}, update)
    if status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
        await _follow_master(service, ticket, status, actor=actor, now=now)
    if status == TicketStatus.RESOLVED:
        for target in await reporters(service, ticket):
            await service._queue_outbound(
                outbound_id=_stable("resolution", target["_id"], now.isoformat()),
                ticket=target["_id"],
                channel=target["channel"],
                conversation_key=target["conversation_key"],
                recipient=target["citizen"]["channel_user_id"],
                text=texts.resolved_with_survey(reference=target["_id"]),
                purpose=ReplyPurpose.RESOLUTION,
                reply_to=None,
                cause=None,
                author=actor,
            )


async def _follow_master(
    service: TicketService, master: dict[str, Any], status: TicketStatus, *, actor: str, now: datetime
) -> None:
    """Merged reports are resolved and closed with their master."""
    for child in master.get("merged") or []:
        sets: dict[str, Any] = {"status": status.value, "updated_at": now}
        if status == TicketStatus.RESOLVED:
            sets.update(resolved_at=now, survey_asked_at=now, satisfaction=None)
        else:
            sets["closed_at"] = now
        # Read, then update guarded by the status read: findAndModify reads every ticket on the embedded database.
        before = await service.tickets.find_one({"_id": child}, {"status": 1})
        if before is None or before["status"] in (status.value, TicketStatus.CLOSED.value):
            continue
        moved = await service.tickets.update_one({"_id": child, "status": before["status"]}, {"$set": sets})
        if moved.modified_count:
            await service._add_event(
                child, TicketEventType.UPDATED, actor=actor, data={"status": [before["status"], status.value]}
            )


async def reporters(service: TicketService, ticket: dict[str, Any]) -> list[dict[str, Any]]:
    """Everyone to tell about a ticket: its own reporter and, on a master, the reporter of every merged one."""
    children = ticket.get("merged") or []
    if not children:
        return [ticket]
    others = await service.tickets.find(
        {"_id": {"$in": children}, "status": {"$ne": TicketStatus.CLOSED.value}}
    ).to_list(None)
    return [ticket, *sorted(others, key=lambda t: t["_id"])]


# --- dispositions ----------------------------------------------------------------------------------------------


async def disposition(
    service: TicketService,
    reference: str,
    *,
    action: str,
    reason: str | None,
    department: str | None,
    working_days: int | None,
    actor: str,
    principal: Principal | None,
) -> dict[str, Any]:
    """An agency acts on a ticket: accept it, decline it ("not our authority"), or extend its deadline."""
    from .service import NotFound

    ticket = await service.tickets.find_one({"_id": reference})
    if ticket is None or (principal is not None and not principal.can_see(ticket)):
        raise NotFound(reference)
    if ticket["status"] not in ACTIVE:
        raise InvalidDisposition(f"a {ticket['status']} ticket takes no disposition")
    now = service.now()
    data: dict[str, Any] = {"action": action}
    sets: dict[str, Any] = {"updated_at": now}
    push: dict[str, Any] = {}
    if action == "accept":
        if ticket.get("department") is None:
            raise InvalidDisposition("a ticket in triage is accepted by routing it to a department first")
        sets.update(accepted_at=now, accepted_by=actor)
        if ticket["status"] == TicketStatus.NEW:
            sets["status"] = TicketStatus.OPEN.value
            data["status"] = [ticket["status"], TicketStatus.OPEN.value]
        data["department"] = ticket.get("department")
    elif action == "decline":
        if department == ticket.get("department"):
            raise InvalidDisposition("decline sends the ticket to another department or back to triage")
        check_department(service, department)
        sets.update(department=department, assignee=await round_robin(service, department), accepted_at=None)
        sets["due_at"] = compute_due({**ticket, "department": department}, service)
        push["declines"] = {"department": ticket.get("department"), "reason": reason, "by": actor, "at": now}
        data.update(reason=reason, department=[ticket.get("department"), department])
    elif action == "extend":
        assert working_days is not None  # the API model requires it
        extension = {"working_days": working_days, "reason": reason, "by": actor, "at": now}
        sets["due_at"] = deadlines.extend(ticket.get("due_at") or compute_due(ticket, service), working_days)
        if sets["due_at"] > now:
            sets["breached"] = False
        push["extensions"] = extension
        data.update(reason=reason, working_days=working_days, due_at=[ticket.get("due_at"), sets["due_at"]])
    update: dict[str, Any] = {"$set": sets}
    if push:
        update["$push"] = push
    await service.tickets.update_one({"_id": reference}, update)
    await service._add_event(reference, TicketEventType.DISPOSITION, actor=actor, data=data)
    await service._publish_quietly({"ticket": reference})
    return await service.get(reference)


# --- merging ---------------------------------------------------------------------------------------------------


async def merge(
    service: TicketService, master_ref: str, children: list[str], *, actor: str, principal: Principal | None
) -> dict[str, Any]:
    """Join several reports of one public problem under a master: its replies and resolution reach them all."""
    from .service import NotFound

    master = await service.tickets.find_one({"_id": master_ref})
    if master is None or (principal is not None and not principal.can_see(master)):
        raise NotFound(master_ref)
    if master["status"] == TicketStatus.CLOSED:
        raise InvalidMerge(f"{master_ref} is closed")
    if master.get("merged_into"):
        raise InvalidMerge(f"{master_ref} is itself merged into {master['merged_into']}")
    wanted = list(dict.fromkeys(children))
    if master_ref in wanted:
        raise InvalidMerge("a ticket cannot be merged into itself")
    docs = {d["_id"]: d for d in await service.tickets.find({"_id": {"$in": wanted}}).to_list(None)}
    for ref in wanted:
        child = docs.get(ref)
        if child is None or (principal is not None and not principal.can_see(child)):
            raise NotFound(ref)
        if child["status"] == TicketStatus.CLOSED:
            raise InvalidMerge(f"{ref} is closed")
        if child.get("merged_into") and child["merged_into"] != master_ref:
            raise InvalidMerge(f"{ref} is already merged into {child['merged_into']}")
        if child.get("merged"):
            raise InvalidMerge(f"{ref} is itself a master of merged reports")
    now = service.now()
    added = [ref for ref in wanted if docs[ref].get("merged_into") != master_ref]
    for ref in added:
        await service.tickets.update_one(
            {"_id": ref},
            {
                "$set": {
                    "merged_into": master_ref,
                    "department": master.get("department"),
                    "category": master.get("category"),
                    "updated_at": now,
                }
            },
        )
        await service._add_event(ref, TicketEventType.MERGED, actor=actor, data={"into": master_ref})
    if added:
        await service.tickets.update_one(
            {"_id": master_ref}, {"$addToSet": {"merged": {"$each": added}}, "$set": {"updated_at": now}}
        )
        await service._add_event(master_ref, TicketEventType.MERGED, actor=actor, data={"merged": added})
        await service._publish_quietly({"ticket": master_ref})
    return await service.get(master_ref)


# --- the sweep: deadlines, automatic closing, the status gauge -------------------------------------------------


def count_breaches_from_zero(routing: Router) -> None:
    """Every department's and priority's breach count, shown from 0: a series born at 1 has no increase for
    Prometheus, so the first breach of a department after a restart would raise no alert."""
    for department in [*routing.rules.departments, TRIAGE_DEPARTMENT_LABEL]:
        for priority in Priority:
            DEADLINE_BREACHES.labels(department, priority.value)


async def sweep(service: TicketService) -> dict[str, int]:
    """Detect deadline breaches, close resolved tickets nobody answered, refresh the status gauge."""
    count_breaches_from_zero(service.routing)
    now = service.now()
    breached = closed = 0
    # Overdue and not counted yet: each active status through the (status, due_at) index, by exactly its fields
    # (with `$in` on the status, or the `breached` flag beside them, the embedded database read every ticket each
    # minute); the flag is checked here.
    overdue = [
        ticket
        for status in ACTIVE
        for ticket in await service.tickets.find(
            {"status": status.value, "due_at": {"$lt": now}},
            {"department": 1, "priority": 1, "due_at": 1, "breached": 1},
        ).to_list(None)
        if ticket.get("breached") is not True
    ]
    for ticket in overdue:
        marked = await service.tickets.update_one(
            {"_id": ticket["_id"], "breached": {"$ne": True}}, {"$set": {"breached": True, "breached_at": now}}
        )
        if marked.modified_count != 1:
            continue  # another replica counted it
        breached += 1
        department = ticket.get("department") or TRIAGE_DEPARTMENT_LABEL
        DEADLINE_BREACHES.labels(department, ticket.get("priority") or "normal").inc()
        await service._add_event(
            ticket["_id"],
            TicketEventType.DEADLINE_BREACHED,
            data={"due_at": ticket["due_at"], "department": ticket.get("department")},
        )
        await service._publish_quietly({"ticket": ticket["_id"]})
    resolved = service.tickets.find({"status": TicketStatus.RESOLVED.value}, {"resolved_at": 1, "updated_at": 1})
    after = service.policy.auto_close_working_days
    async for ticket in resolved:
        since = ticket.get("resolved_at") or ticket["updated_at"]
        if deadlines.elapsed_working_days(since, now) < after:
            continue
        done = await service.tickets.update_one(
            {"_id": ticket["_id"], "status": TicketStatus.RESOLVED.value},
            {"$set": {"status": TicketStatus.CLOSED.value, "closed_at": now, "updated_at": now}},
        )
        if done.modified_count != 1:
            continue
        closed += 1
        await service._add_event(
            ticket["_id"],
            TicketEventType.UPDATED,
            data={"status": ["resolved", "closed"], "reason": f"no reply within {after} working days"},
        )
        await service._publish_quietly({"ticket": ticket["_id"]})
    for status in TicketStatus:
        TICKETS_BY_STATUS.labels(status.value).set(await service.tickets.count_documents({"status": status.value}))
    if breached or closed:
        log.info("sweep", extra={"breached": breached, "closed": closed})
    return {"breached": breached, "closed": closed}
