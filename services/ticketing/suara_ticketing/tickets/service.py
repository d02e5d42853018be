"""The ticket domain: threading inbound messages, references, acknowledgements, replies, delivery statuses.

Ticketing is the only writer of tickets. Every write is idempotent on a natural key held by a unique `_id`
(`in:<channel>:<platform id>` for inbound messages, `out:<outbound id>` for outbound ones), so a message
delivered twice, or reprocessed after a crash, changes nothing the second time. Outbound messages and ticket
events are stored first and marked published only after the broker took them (a transactional outbox): a crash
in between means they are published again, never lost."""

from __future__ import annotations

import base64
import builtins
import contextlib
import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import orjson

from suara_shared import db, topics
from suara_shared.events import (
    DELIVERY_RANK,
    DeliveryState,
    DeliveryStatus,
    Event,
    InboundMessage,
    OutboundReply,
    ReplyPurpose,
    TicketEvent,
    TicketEventType,
    new_id,
    utcnow,
)
from suara_shared.identity import normalize_phone
from suara_shared.kafka import BrokerUnavailable, Publisher
from suara_shared.public import public_text

from .. import conversations, deliveries, social, texts, window
from ..access.models import Principal
from ..access.service import TokenService
from ..lifecycle import Policy
from ..routing import Router, load_rules
from . import workflow
from .models import TicketStatus

log = logging.getLogger(__name__)

WIB = ZoneInfo("Asia/Jakarta")
#: "cek RMB-2026-000123" as citizens type it: after a mention's handles, "cek", "status" or "lacak" and filler
#: ("no", "nomor", "laporan", ":", "#"), or the reference alone; any separators (RMB 2026 123, rmb-2026-123),
#: the number unpadded; then nothing but courtesy ("pak", "terima kasih", 🙏). See `_status_query`.
STATUS_QUERY = re.compile(
    r"^\s*(?:@\w+[\s,:]*)*"
    r"(?P<ask>(?:cek|cék|check|status|lacak|periksa)\b[\W_]*(?:(?:status|no|nomor|nomer|laporan|tiket|pengaduan)\b[\W_]*)*)?"
    r"#?(?P<prefix>[a-z]{2,10})[\s.\-_/]*(?P<year>\d{4})[\s.\-_/]*(?P<number>\d{1,6})(?!\d)(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)
#: How long a delivery status waits for its message's send report before it is dropped.
ORPHANS_KEPT = timedelta(days=7)
#: A delivery tick is kept this long for the consoles' poll for changes (`ticket_ticks`); a console away longer
#: reloads what it shows anyway.
TICKS_KEPT = timedelta(days=1)
#: A ticket in one of these takes the conversation's next message; a closed one does not.
THREADABLE = [s.value for s in TicketStatus if s is not TicketStatus.CLOSED]
#: An outbox batch whose replies are still not stored after this long is said so in the log (see publish_outbox).
OUTBOX_HELD_TOO_LONG = timedelta(minutes=5)
#: How far back the ticket list looks before it looks at everything (`TicketService._newest`)...
LIST_SPANS = tuple(timedelta(days=8**n) for n in range(4))
#: ... when its query is one equality on one of these (or none): each has an index with created_at...
SPANNED = frozenset({"status", "department"})
#: ... or equalities on these only, which no index serves better than created_at's: the spans walk that one.
WALKED_BY_TIME = frozenset({"kecamatan", "channel", "category", "priority", "assignee"})
#: The replies that answer the complaint: when the newest of a ticket's fails, the inbox says so (`undelivered`)
#: until another is queued. A status answer or the survey's thanks failing leaves the complaint as answered.
ANSWERS = frozenset({ReplyPurpose.ACKNOWLEDGEMENT.value, ReplyPurpose.AGENT_REPLY.value, ReplyPurpose.RESOLUTION.value})
#: The condition of the tickets whose newest answer failed, named as the sparse index on them serves it.
UNDELIVERED = {"undelivered.at": {"$exists": True}}
#: What a search's words may be if they are part of a reference, lower-cased (see `_may_be_in_reference`).
REFERENCE_PART = re.compile(r"[a-z0-9-]+")
#: A phone number typed whole or in part, as an agent writes what a caller says: 0812-3456-7890, +62 812…
PHONE_TYPED = re.compile(r"\+?[\d\s().-]+")
#: Fewer digits than this are too short to stand for a number (a year, part of a reference).
PHONE_DIGITS = 6


class NotFound(Exception):
    """No such ticket (or none the caller may see)."""


class Forbidden(Exception):
    """The caller's role does not allow this change."""


def _stable_id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def encode_cursor(created_at: datetime, reference: str) -> str:
    raw = orjson.dumps([created_at.astimezone(UTC).isoformat(), reference])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raise ValueError for anything that is not a cursor we made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, reference = orjson.loads(raw)
        return datetime.fromisoformat(created), str(reference)
    except Exception as exc:
        raise ValueError("invalid cursor") from exc


def _inbound_doc(event: InboundMessage, *, ticket: str | None, **extra: Any) -> dict[str, Any]:
    """A citizen's message as stored, under its natural key."""
    return {
        "_id": event.dedup_key,
        "ticket": ticket,
        "direction": "inbound",
        "channel": event.channel.value,
        "channel_message_id": event.platform_message_id,
        "conversation_key": event.conversation_key,
        "kind": event.kind.value,
        "text": event.text,
        # An anonymous report keeps only what replying needs.
        "sender": {"channel_user_id": event.sender.channel_user_id}
        if event.metadata.get("anonymous")
        else event.sender.model_dump(),
        "attachments": [a.model_dump(exclude_none=True) for a in event.attachments],
        "location": event.location.model_dump(exclude_none=True) if event.location else None,
        "reply_context": event.reply_context.model_dump(exclude_none=True) if event.reply_context else None,
        "raw": None if event.metadata.get("anonymous") else event.raw,
        "created_at": event.received_at,
        "stored_at": utcnow(),
        **extra,
    }


def _outbound_doc(
    *,
    outbound_id: str,
    seq: int | None,
    ticket: str | None,
    channel: str,
    conversation_key: str,
    recipient: str,
    text: str,
    purpose: ReplyPurpose,
    reply_to: str | None,
    cause: str | None,
    author: str,
    private: bool,
    window_expires_at: datetime | None,
    reply_context: dict[str, Any] | None,
) -> dict[str, Any]:
    """A reply as stored in the outbox, unpublished, under `out:<outbound id>`."""
    return {
        "_id": f"out:{outbound_id}",
        "seq": seq,
        "outbound_id": outbound_id,
        "ticket": ticket,
        "direction": "outbound",
        "channel": channel,
        "channel_message_id": None,
        "conversation_key": conversation_key,
        "recipient": recipient,
        "kind": "text",
        "text": text,
        "purpose": purpose.value,
        "reply_to": reply_to,
        "cause": cause,
        "author": author,
        "delivery_status": DeliveryState.QUEUED.value,
        "delivery_rank": DELIVERY_RANK[DeliveryState.QUEUED],
        "delivery_error": None,
        "published": False,
        "created_at": utcnow(),
        "window_expires_at": window_expires_at,
        "reply_context": reply_context,
        "private": private,
    }


def _event_doc(
    reference: str, type_: TicketEventType, *, actor: str = "system", data: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "_id": new_id(),
        "reference": reference,
        "type": type_.value,
        "actor": actor,
        "at": utcnow(),
        "data": data or {},
        "published": False,
    }


def _records(
    outbound: list[dict[str, Any]], events: list[dict[str, Any]]
) -> list[tuple[str, bytes | None, bytes, tuple[()]]]:
    """Stored outbound messages and ticket events as the records the broker gets (topic, key, value, headers)."""
    items: list[tuple[str, Event, bytes | None]] = []
    for doc in outbound:
        reply = OutboundReply(
            outbound_id=doc["outbound_id"],
            ticket_reference=doc.get("ticket"),
            channel=doc["channel"],
            conversation_key=doc["conversation_key"],
            recipient=doc["recipient"],
            text=doc["text"],
            purpose=doc["purpose"],
            reply_to=doc.get("reply_to"),
            created_at=doc["created_at"],
            window_expires_at=doc.get("window_expires_at"),
            reply_context=doc.get("reply_context"),
            private=bool(doc.get("private")),
        )
        items.append((topics.OUTBOUND, reply, reply.partition_key))
    for doc in events:
        te = TicketEvent(
            event_id=doc["_id"],
            reference=doc["reference"],
            type=doc["type"],
            actor=doc["actor"],
            at=doc["at"],
            data=doc.get("data") or {},
        )
        items.append((topics.TICKET_EVENTS, te, te.partition_key))
    return [(topic, key, event.model_dump_json().encode(), ()) for topic, event, key in items]


def _one_of(values: list[str]) -> str | dict[str, list[str]]:
    """A filter's value matching any of `values`: the value itself when there is one."""
    return values[0] if len(values) == 1 else {"$in": values}


def by_platform_ids(channel: str, field: str, platform_ids: list[str]) -> dict[str, Any]:
    """Messages of `channel` that a platform gave one of these ids (`field`: the first id, or any of a long reply's).

    Exactly the fields of the index on (channel, field), nothing else (callers check `direction` on what comes back):
    the embedded database serves a filter from a compound index only when the filter names the index's own fields;
    with one more it walks every message of the channel instead. MongoDB uses the same index either way."""
    return {"channel": channel, field: _one_of(platform_ids)}


def orphans_of(channel: str | None, platform_ids: list[str]) -> dict[str, Any]:
    """Statuses kept waiting for these platform ids (of one channel, or of any): the fields of the orphans' index,
    leading field first."""
    query: dict[str, Any] = {"platform_message_id": _one_of(platform_ids)}
    if channel is not None:
        query["channel"] = channel
    return query


def _keep_highest(target: dict[str, DeliveryStatus], key: str, status: DeliveryStatus) -> None:
    """Keep, for one message, the status that ranks highest (the later one of equal rank)."""
    held = target.get(key)
    if held is None or DELIVERY_RANK[status.status] >= DELIVERY_RANK[held.status]:
        target[key] = status


def _orphan_status(doc: dict[str, Any]) -> DeliveryStatus:
    """The status an orphan (`delivery_orphans`) keeps."""
    return DeliveryStatus.model_validate({k: v for k, v in doc.items() if k not in ("_id", "stored_at")})


def _delivery_writes(target: dict[str, DeliveryStatus]) -> list[db.UpdateOne]:
    """The writes of each message's highest status (`out:<id>` -> status), none moving a message's status back."""
    return [deliveries.moved(key, deliveries.changes(status)) for key, status in target.items()]


def _learnt_ids(learnt: dict[str, DeliveryStatus]) -> list[db.UpdateOne]:
    """The writes of the platform id each notifier's report taught (`out:<id>` -> report), onto a message that
    does not know it yet."""
    return [
        db.UpdateOne({"_id": key, "channel_message_id": None}, {"$set": {"channel_message_id": r.platform_message_id}})
        for key, r in learnt.items()
    ]


def _opens_conversation(event: InboundMessage, prefix: str) -> bool:
    """Whether the message, if its conversation has no ticket, simply opens one (not an echo, an edit, a
    removal or a reaction, nor a status query)."""
    return not social.is_special(event) and _status_query(event, prefix) is None


def _status_query(event: InboundMessage, prefix: str) -> str | None:
    """The reference a question about a ticket asks for (`cek <reference>`, `status <reference>`, or one of ours
    alone), in its stored form; None when the message is anything more (a complaint naming its reference)."""
    found = STATUS_QUERY.match(event.text or "") if event.kind in workflow.WORDED_KINDS else None
    if found is None or not (found["ask"] or found["prefix"].upper() == prefix.upper()):
        return None
    rest = found["rest"]
    if re.search(r"\d", rest) or any(w not in workflow.COURTESY for w in re.findall(r"[^\W\d_]+", rest.casefold())):
        return None
    return f"{found['prefix'].upper()}-{found['year']}-{int(found['number']):06d}"


class TypedPhone(NamedTuple):
    #: The digits a stored number (`+62…`) holds for it.
    digits: str
    #: A whole number, which no reference contains (the search then skips the references).
    whole: bool


def _phone_digits(typed: str) -> TypedPhone | None:
    """A phone number typed whole or in part (`0812-3456-7890`, `+62 812 3456 7890`, `3456 7890`): a whole
    number's national part, or the part's digits after its trunk `0`. None when `typed` is no number, or too short
    to be one."""
    if not PHONE_TYPED.fullmatch(typed.strip()):
        return None
    whole = normalize_phone(typed)
    if whole is not None:
        return TypedPhone(whole.removeprefix("+62"), whole=True)
    digits = re.sub(r"\D", "", typed).removeprefix("0")
    return TypedPhone(digits, whole=False) if len(digits) >= PHONE_DIGITS else None


class TicketService:
    """Every read and write of tickets, their messages, notes and events."""

    def __init__(
        self,
        *,
        database: db.Database,
        publisher: Publisher,
        prefix: str,
        status_url: str,
        routing: Router | None = None,
        access: TokenService | None = None,
        policy: Policy | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = database
        self.routing = routing or Router(load_rules())
        self.access = access or TokenService(database=database)
        self.policy = policy or Policy()
        #: The time deadlines, windows and figures are measured with (tests move it across holidays).
        self.now = clock
        self.tickets = database["tickets"]
        self.messages = database["messages"]
        self.notes = database["notes"]
        self.events = database["ticket_events"]
        self.counters = database["counters"]
        self.orphans = database["delivery_orphans"]
        #: When each ticket's replies last changed delivery status, for the consoles' poll (`mark_ticked`).
        self.ticks = database["ticket_ticks"]
        #: The delivery status each outbound message has reached, beside it (see `deliveries`).
        self.deliveries = database[deliveries.COLLECTION]
        #: Whole batches of outbound messages and ticket events waiting for the broker (see `_open_many`).
        self.outbox = database["outbox"]
        self.publisher = publisher
        self.prefix = prefix
        self.status_url = status_url.rstrip("/")

    async def ensure_indexes(self) -> None:
        """Create the indexes the queries and the idempotency rely on (idempotent)."""
        await self.tickets.create_index([("channel", 1), ("conversation_key", 1), ("status", 1)])
        await self.tickets.create_index([("created_at", -1), ("_id", -1)])
        await self.tickets.create_index([("status", 1), ("created_at", -1)])
        await self.tickets.create_index([("submission_id", 1)], sparse=True)
        await self.messages.create_index([("ticket", 1), ("seq", 1)])
        await self.messages.create_index([("channel", 1), ("channel_message_id", 1)])
        await self.messages.create_index([("published", 1), ("created_at", 1)])
        await self.events.create_index([("reference", 1), ("at", 1)])
        await self.events.create_index([("published", 1), ("at", 1)])
        await self.notes.create_index([("ticket", 1), ("created_at", 1)])
        await self.outbox.create_index([("created_at", 1)])
        await self.tickets.create_index([("department", 1), ("created_at", -1)])
        await self.tickets.create_index([("status", 1), ("due_at", 1)])
        await self.tickets.create_index([("merged_into", 1)], sparse=True)
        # The inbox's count and filter of tickets whose answer failed: a few among thousands (1 ms against 92).
        await self.tickets.create_index([("undelivered.at", -1)], sparse=True)
        # Every open console asks every 2.5 s what changed (live.changes): without these each question read every
        # ticket (10,000 tickets: 0.2-0.5 s of the database's time, a few agents kept it busy); the whole desk's
        # view, and a department agent's.
        await self.tickets.create_index([("updated_at", -1)])
        await self.tickets.create_index([("department", 1), ("updated_at", -1)])
        await self.access.ensure_indexes()
        await self.messages.create_index(conversations.INDEX)
        await self.messages.create_index([("channel", 1), ("channel_message_ids", 1)], sparse=True)
        # Statuses that came before their message's send report: looked up for every report, so by index (a
        # busy day leaves thousands waiting a few seconds each); those of messages Suara never sent (a reply
        # typed in the WhatsApp Business app, say) are never claimed and go after a week.
        await self.orphans.create_index([("platform_message_id", 1), ("channel", 1)])
        await self.orphans.create_index("stored_at", expireAfterSeconds=int(ORPHANS_KEPT.total_seconds()))
        await self.ticks.create_index("at", expireAfterSeconds=int(TICKS_KEPT.total_seconds()))

    # --- inbound -------------------------------------------------------------------------------------------

    async def handle_inbound(self, event: InboundMessage) -> None:
        """Store a citizen's message on its ticket (opening one if needed) and queue the acknowledgement."""
        key = event.dedup_key
        existing = await self.messages.find_one({"_id": key}, {"ticket": 1})
        if existing is not None:
            # Redelivered: the message is stored; make sure what it caused went out too.
            await self._flush(existing.get("ticket"), cause=key)
            return
        if await social.handle_special(self, event):
            return  # an echo of what the Page sent, or a comment's edit or removal: no ticket of its own
        query = _status_query(event, self.prefix)
        if query:
            await self._answer_status_query(event, query)
            return
        if await workflow.record_survey_answer(self, event):
            return
        ticket = await self._thread(event)
        await self._insert_inbound(event, ticket=ticket["_id"], seq=ticket["message_count"])
        await self._add_event(ticket["_id"], TicketEventType.MESSAGE_ADDED, data={"message_id": key})
        await self._flush(ticket["_id"], cause=key)

    async def handle_inbound_batch(self, events: builtins.list[InboundMessage]) -> None:
        """Many messages of one partition, in their order, as `handle_inbound` would store them one by one.

        The first message of a conversation Suara has never seen (most of a busy day: a flood brings new people)
        opens its ticket in writes shared by the whole batch: one step of the reference counter, one insert each
        of tickets, events and messages with their acknowledgements, one publication. Every other message
        (threading into a ticket, status queries, survey answers, echoes, redeliveries) then takes the one-by-one
        way, in order. The writes go tickets first, so a crash part-way leaves nothing a redelivery cannot finish:
        a ticket without its message is found by its conversation and threaded into; a message without its
        acknowledgement gets it from `_flush`."""
        keys = [e.dedup_key for e in events]
        known = {d["_id"] for d in await db.find_in(self.messages, "_id", keys, projection={"_id": 1})}
        candidates = [e for e in events if e.dedup_key not in known and _opens_conversation(e, self.prefix)]
        with_ticket: set[tuple[str, str]] = set()
        by_channel: dict[str, set[str]] = {}
        for event in candidates:
            by_channel.setdefault(event.channel.value, set()).add(event.conversation_key)
        for channel, wanted in by_channel.items():  # by channel: the index starts with it
            found = await db.find_in(
                self.tickets,
                "conversation_key",
                sorted(wanted),
                where={"channel": channel},
                projection={"conversation_key": 1},
            )
            with_ticket |= {(channel, d["conversation_key"]) for d in found}
        fresh: builtins.list[InboundMessage] = []
        seen: set[tuple[str, str]] = set()
        for event in events:
            conversation = (event.channel.value, event.conversation_key)
            new = conversation not in seen and conversation not in with_ticket and event.dedup_key not in known
            if new and _opens_conversation(event, self.prefix):
                fresh.append(event)
            seen.add(conversation)
        if fresh:
            await self._open_many(fresh)
        opened = {id(e) for e in fresh}
        rest = [e for e in events if id(e) not in opened]
        stored = known | {e.dedup_key for e in fresh}
        joined = await self._join_many(rest, stored=stored) if rest else set()
        for event in rest:
            if id(event) not in joined:
                await self.handle_inbound(event)

    async def _join_many(self, events: builtins.list[InboundMessage], *, stored: set[str]) -> set[int]:
        """Store the messages that join a ticket already open, in writes shared by the batch: those of conversations
        whose every message here is a plain one (no redelivery, status query, survey-like answer, echo or edit)
        and whose ticket is new or open (nothing to reopen) and acknowledged. One compare-and-set per ticket
        numbers its messages in order; the messages and their audit events go in one insert each, the events
        published through the batch's outbox. Returns the events stored (by `id`); the others take the one-by-one
        way, `handle_inbound`."""
        conversations: dict[tuple[str, str], builtins.list[InboundMessage]] = {}
        unfit: set[tuple[str, str]] = set()
        keys: set[str] = set()
        for event in events:
            conversation = (event.channel.value, event.conversation_key)
            conversations.setdefault(conversation, []).append(event)
            plain = _opens_conversation(event, self.prefix) and workflow.courtesy(event) is None
            if not plain or event.dedup_key in stored or event.dedup_key in keys:
                unfit.add(conversation)
            keys.add(event.dedup_key)
        candidates = {c: group for c, group in conversations.items() if c not in unfit}
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for channel in sorted({c for c, _ in candidates}):  # by channel: the index starts with it
            named = sorted(key for c, key in candidates if c == channel)
            docs = await db.find_in(
                self.tickets,
                "conversation_key",
                named,
                where={"channel": channel, "status": {"$in": THREADABLE}},
            )
            for doc in sorted(docs, key=lambda d: d["created_at"]):  # the newest of a conversation's, as `_thread`
                found[(channel, doc["conversation_key"])] = doc
        # A ticket without its acknowledgement (a batch that opened it was cut short) is finished one by one.
        acks = {f"out:{_stable_id('ack', t['_id'])}": key for key, t in found.items()}
        if acks:
            stored_acks = await db.find_in(self.messages, "_id", acks, projection={"_id": 1})
            acknowledged = {acks[d["_id"]] for d in stored_acks}
            found = {key: t for key, t in found.items() if key in acknowledged}
        now = self.now()
        inbound: builtins.list[dict[str, Any]] = []
        audit: builtins.list[dict[str, Any]] = []
        joined: set[int] = set()
        for conversation, group in candidates.items():
            ticket = found.get(conversation)
            if ticket is None or ticket["status"] not in (TicketStatus.NEW, TicketStatus.OPEN):
                continue
            seen = dict(ticket)
            changes: dict[str, Any] = {"updated_at": now, "last_inbound_at": now}
            for event in group:  # each message enriches the ticket as the one before left it
                more = await workflow.enrich_on_message(self, seen, event)
                seen.update(more)
                changes.update(more)
            count = ticket["message_count"]
            numbered = await self.tickets.update_one(
                {"_id": ticket["_id"], "message_count": count},
                {"$inc": {"message_count": len(group)}, "$set": changes},
            )
            if numbered.matched_count != 1:
                continue  # numbered meanwhile (an agent's reply, say): these go one by one, after it
            for seq, event in enumerate(group, start=count + 1):
                inbound.append(_inbound_doc(event, ticket=ticket["_id"], seq=seq))
                audit.append(
                    _event_doc(ticket["_id"], TicketEventType.MESSAGE_ADDED, data={"message_id": event.dedup_key})
                )
            joined |= {id(e) for e in group}
        if inbound:
            await self._store_and_publish(inbound=inbound, outbound=[], events=audit)
        return joined

    async def _open_many(self, fresh: builtins.list[InboundMessage]) -> None:
        """Open one ticket per message (each the first of a new conversation), acknowledge and publish them."""
        now = self.now()
        references = await self._next_references(now, len(fresh))
        tickets, messages, outbound, events = [], [], [], []
        for event, reference in zip(fresh, references, strict=True):
            # The citizen's message is the ticket's first; the acknowledgement its second.
            ticket = await self._ticket_doc(event, now, reference=reference, previous=None, message_count=2)
            message = _inbound_doc(event, ticket=reference, seq=1)
            tickets.append(ticket)
            messages.append(message)
            outbound.append(
                _outbound_doc(
                    **self._acknowledgement(ticket, cause=event.dedup_key),
                    seq=2,
                    author="system",
                    private=False,
                    # From this message: the window can only be later if an earlier-stored message (a status
                    # query) was timestamped after it. Never too late, so never a free-form message refused.
                    window_expires_at=window.expiry(message["created_at"]),
                    reply_context=social.reply_target(message["reply_context"]),
                )
            )
            events.append(_event_doc(reference, TicketEventType.CREATED, data={"channel": event.channel.value}))
            events.append(_event_doc(reference, TicketEventType.MESSAGE_ADDED, data={"message_id": event.dedup_key}))
        await self.tickets.insert_many(tickets)
        await self._store_and_publish(inbound=messages, outbound=outbound, events=events)
        for ticket in tickets:
            log.info("ticket opened", extra={"reference": ticket["_id"], "channel": ticket["channel"]})

    async def _store_and_publish(
        self,
        *,
        inbound: builtins.list[dict[str, Any]],
        outbound: builtins.list[dict[str, Any]],
        events: builtins.list[dict[str, Any]],
    ) -> None:
        """Store a batch's messages and audit events (after the tickets they name) and publish the replies and
        events, through one outbox document.

        The batch's outbox is one document, not a flag on each of its messages and events: marking hundreds of
        documents published costs the database more than everything else the batch writes. It is written before
        the messages (whose redelivery finds them stored and publishes nothing itself) and deleted once the broker
        has it all; it names its replies, so that the relay waits for them to be stored (`publish_outbox`)."""
        records = _records(outbound, events)
        batch = {
            "_id": new_id(),
            "created_at": utcnow(),
            "records": [{"topic": t, "key": k, "value": v} for t, k, v, _ in records],
            "messages": [doc["_id"] for doc in outbound],
        }
        for doc in (*outbound, *events):
            doc["published"] = True
        await self.outbox.insert_one(batch)
        await self.events.insert_many(events)
        await self.messages.insert_many([*inbound, *outbound])
        try:
            await self.publisher.send_raw(records)
        except BrokerUnavailable:
            log.warning("broker unavailable; the outbox relay will publish later", extra={"count": len(records)})
            return
        await self.outbox.delete_one({"_id": batch["_id"]})

    async def _thread(self, event: InboundMessage) -> dict[str, Any]:
        """The conversation's ticket that is not closed, reopened if it was resolved recently; else a new ticket
        (linked to the conversation's previous one when that was finished)."""
        now = self.now()
        found = await self.tickets.find_one(
            workflow.conversation_tickets(event.channel.value, event.conversation_key, THREADABLE),
            sort=[("created_at", -1)],
        )
        if found is not None and not workflow.reopenable(self, found, now):
            # Resolved too long ago: the citizen's new message is a new matter, linked to the old one.
            return await self._open_ticket(event, now, previous=found["_id"])
        if found is not None:
            changes: dict[str, Any] = {"updated_at": now, "last_inbound_at": now}
            if found["status"] in (TicketStatus.PENDING, TicketStatus.RESOLVED):
                changes["status"] = TicketStatus.OPEN.value
            changes.update(await workflow.enrich_on_message(self, found, event))
            updated = await db.increment(self.tickets, found["_id"], "message_count", also=changes)
            if "status" in changes:
                await self._add_event(
                    found["_id"],
                    TicketEventType.UPDATED,
                    actor="citizen",
                    data={"status": [found["status"], changes["status"]]},
                )
                await workflow.after_citizen_reopened(self, found, now)
            return updated or found
        previous = await self.tickets.find_one(
            {"channel": event.channel.value, "conversation_key": event.conversation_key},
            {"_id": 1},
            sort=[("created_at", -1)],
        )
        return await self._open_ticket(event, now, previous=previous["_id"] if previous else None)

    async def _open_ticket(self, event: InboundMessage, now: datetime, *, previous: str | None) -> dict[str, Any]:
        reference = await self._next_reference(now)
        doc = await self._ticket_doc(event, now, reference=reference, previous=previous)
        await self.tickets.insert_one(doc)
        await self._add_event(reference, TicketEventType.CREATED, data={"channel": event.channel.value})
        if previous:
            await self._add_event(previous, TicketEventType.UPDATED, actor="citizen", data={"followed_by": reference})
        log.info("ticket opened", extra={"reference": reference, "channel": event.channel.value})
        return doc

    async def _ticket_doc(
        self, event: InboundMessage, now: datetime, *, reference: str, previous: str | None, message_count: int = 1
    ) -> dict[str, Any]:
        """A new ticket for the event's conversation, routed, with its deadline."""
        meta = event.metadata
        anonymous = bool(meta.get("anonymous"))
        sender = event.sender
        doc = {
            "_id": reference,
            "reference": reference,
            "status": TicketStatus.NEW.value,
            "channel": event.channel.value,
            "conversation_key": event.conversation_key,
            "citizen": {
                "channel_user_id": sender.channel_user_id,
                "display_name": None if anonymous else sender.display_name,
                "phone": None if anonymous else sender.phone,
                "email": None if anonymous else sender.email,
            },
            "anonymous": anonymous,
            "confidential": bool(meta.get("confidential")),
            "summary": (event.text or "")[:280] or None,
            "category": None,
            "department": None,
            "priority": "normal",
            "assignee": None,
            "kecamatan": meta.get("kecamatan") or (event.location.kecamatan if event.location else None),
            "desa": meta.get("desa") or (event.location.desa if event.location else None),
            "submission_id": meta.get("submission_id"),
            "previous_reference": previous,
            "source": meta.get("source"),
            "message_count": message_count,
            "created_at": now,
            "updated_at": now,
            "last_inbound_at": now,
        }
        doc.update(await workflow.route_new(self, event, now))
        return doc

    async def _next_reference(self, now: datetime) -> str:
        return (await self._next_references(now, 1))[0]

    async def _next_references(self, now: datetime, count: int) -> builtins.list[str]:
        """`count` consecutive references of the year, taken in one step of the year's counter."""
        year = now.astimezone(WIB).year
        counter = await self.counters.find_one_and_update(
            {"_id": f"ticket:{self.prefix}:{year}"},
            {"$inc": {"seq": count}},
            upsert=True,
            return_document=db.ReturnDocument.AFTER,
        )
        assert counter is not None  # upsert always returns the document
        last = int(counter["seq"])
        return [f"{self.prefix}-{year}-{seq:06d}" for seq in range(last - count + 1, last + 1)]

    async def _keep_quietly(self, event: InboundMessage, reference: str | None) -> None:
        """Store a citizen's message on a ticket as the next of its messages without changing the ticket (a
        reaction, thanks after a resolution), or alone when there is no ticket to keep it on."""
        seq = None
        if reference is not None:
            numbered = await db.increment(self.tickets, reference, "message_count", also={"updated_at": self.now()})
            seq = numbered["message_count"] if numbered else None
        await self._insert_inbound(event, ticket=reference, seq=seq)

    async def _insert_inbound(self, event: InboundMessage, *, ticket: str | None, **extra: Any) -> None:
        with contextlib.suppress(db.DuplicateKeyError):  # a concurrent redelivery stored it first
            await self.messages.insert_one(_inbound_doc(event, ticket=ticket, **extra))

    async def _answer_status_query(self, event: InboundMessage, reference: str) -> None:
        """`cek <reference>`: answer with the ticket's status on the channel asked from; open no ticket."""
        ticket = await self.tickets.find_one({"_id": reference})
        if ticket is None:
            text = texts.status_not_found(reference)
        else:
            code = ticket.get("department")
            name = self.routing.department_name(code)
            text = texts.status_answer(
                reference=reference,
                status=ticket["status"],
                updated_at=ticket["updated_at"],
                department=f"{name} ({code})" if name and name != code else code,
            )
        await self._insert_inbound(event, ticket=None, status_query=reference)
        await self._queue_outbound(
            outbound_id=_stable_id("status", event.dedup_key),
            ticket=None,
            channel=event.channel.value,
            conversation_key=event.conversation_key,
            recipient=event.sender.channel_user_id,
            text=text,
            purpose=ReplyPurpose.STATUS,
            reply_to=event.platform_message_id,
            cause=event.dedup_key,
        )
        await self._flush(None, cause=event.dedup_key)

    async def _flush(self, reference: str | None, *, cause: str) -> None:
        """Queue the acknowledgement if the ticket has none yet, then publish whatever is still unpublished."""
        if reference is not None:
            ticket = await self.tickets.find_one({"_id": reference})
            if ticket is not None:
                # Queued once: the acknowledgement's id is the ticket's, and an existing one is left as it is.
                await self._queue_outbound(**self._acknowledgement(ticket, cause=cause))
            await self.publish_pending({"ticket": reference})
        else:
            await self.publish_pending({"cause": cause})

    def _acknowledgement(self, ticket: dict[str, Any], *, cause: str) -> dict[str, Any]:
        """The ticket's acknowledgement, answering the message that caused it: one per ticket, by its id."""
        reference = ticket["_id"]
        return {
            "outbound_id": _stable_id("ack", reference),
            "ticket": reference,
            "channel": ticket["channel"],
            "conversation_key": ticket["conversation_key"],
            "recipient": ticket["citizen"]["channel_user_id"],
            "text": texts.acknowledgement(
                reference=reference,
                status_url=self.status_url,
                extra=workflow.acknowledgement_extra(self, ticket),
                # A confidential report with a submission id (the web form's) has its own page, where this is read.
                private_page=bool(ticket.get("confidential") and ticket.get("submission_id")),
            ),
            "purpose": ReplyPurpose.ACKNOWLEDGEMENT,
            "reply_to": cause.split(":", 2)[-1],
            "cause": cause,
        }

    async def _queue_outbound(
        self,
        *,
        outbound_id: str,
        ticket: str | None,
        channel: str,
        conversation_key: str,
        recipient: str,
        text: str,
        purpose: ReplyPurpose,
        reply_to: str | None,
        cause: str | None,
        author: str = "system",
        private: bool = False,
    ) -> str:
        if await self.messages.find_one({"_id": f"out:{outbound_id}"}, {"_id": 1}) is not None:
            return outbound_id  # queued before, by an earlier delivery of its cause
        seq: int | None = None
        if ticket is not None:
            # The conversation's order is the order Suara stored it in, whatever the clocks say.
            numbered = await db.increment(self.tickets, ticket, "message_count")
            seq = numbered["message_count"] if numbered else None
        doc = _outbound_doc(
            outbound_id=outbound_id,
            seq=seq,
            ticket=ticket,
            channel=channel,
            conversation_key=conversation_key,
            recipient=recipient,
            text=text,
            purpose=purpose,
            reply_to=reply_to,
            cause=cause,
            author=author,
            private=private,
            # Meta's channels take free-form messages only within 24 hours of the citizen's last one.
            window_expires_at=await window.expires_at(
                self.messages, channel=channel, conversation_key=conversation_key
            ),
            # Social channels: the comment, tweet or mention the reply answers.
            reply_context=await social.outbound_context(
                self.messages, channel=channel, conversation_key=conversation_key, reply_to=reply_to
            ),
        )
        with contextlib.suppress(db.DuplicateKeyError):  # a concurrent delivery of the same cause
            await self.messages.insert_one(doc)
        if ticket is not None and purpose.value in ANSWERS:
            # A new answer is on its way: the failed one no longer is the ticket's last word to the citizen.
            cleared = await self.tickets.update_one({"_id": ticket, **UNDELIVERED}, {"$unset": {"undelivered": ""}})
            if cleared.modified_count:
                await self.mark_ticked([ticket])
        return outbound_id

    async def publish_pending(self, match: dict[str, Any], *, older_than: timedelta | None = None) -> int:
        """Hand unpublished outbound messages and ticket events matching `match` to the broker."""
        query: dict[str, Any] = {"published": False, "direction": "outbound", **match}
        if older_than is not None:
            query["created_at"] = {"$lt": utcnow() - older_than}
        pending = await self.messages.find(query).sort("created_at", 1).to_list(500)
        event_query: dict[str, Any] = {"published": False}
        if "ticket" in match:
            event_query["reference"] = match["ticket"]
        elif older_than is None:
            event_query = {}
        if older_than is not None:
            event_query["at"] = {"$lt": utcnow() - older_than}
        events = await self.events.find(event_query).sort("at", 1).to_list(500) if event_query else []
        return await self._publish(pending, events)

    async def _publish(self, pending: builtins.list[dict[str, Any]], events: builtins.list[dict[str, Any]]) -> int:
        """Publish these outbox documents (outbound messages, then ticket events), then mark them published."""
        items = _records(pending, events)
        if not items:
            return 0
        await self.publisher.send_raw(items)
        for part in db.parts(d["_id"] for d in pending):
            await self.messages.update_many({"_id": {"$in": part}}, {"$set": {"published": True}})
        for part in db.parts(d["_id"] for d in events):
            await self.events.update_many({"_id": {"$in": part}}, {"$set": {"published": True}})
        return len(items)

    async def publish_outbox(self, *, older_than: timedelta) -> int:
        """Publish the batches `_open_many` left in the outbox (a broker away, a crash before it deleted them)."""
        published = 0
        for batch in (
            await self.outbox.find({"created_at": {"$lt": utcnow() - older_than}}).sort("created_at", 1).to_list(50)
        ):
            replies = batch.get("messages") or []
            stored = await db.find_in(self.messages, "_id", replies, projection={"_id": 1})
            if len(stored) < len(replies):
                # Its messages were not stored (the database went away part-way): the consumer's retry of the batch
                # stores and sends them. Published now, a reply would reach the citizen before it exists on its
                # ticket, and its delivery report would find nothing to mark (chaos saw acks left "queued").
                if batch["created_at"] < utcnow() - OUTBOX_HELD_TOO_LONG:
                    log.warning(
                        "outbox batch still waiting for its replies to be stored",
                        extra={"batch": batch["_id"], "replies": len(replies)},
                    )
                continue
            items = [(r["topic"], r.get("key"), bytes(r["value"]), ()) for r in batch["records"]]
            await self.publisher.send_raw(items)
            await self.outbox.delete_one({"_id": batch["_id"]})
            published += len(items)
        return published

    async def _add_event(
        self, reference: str, type_: TicketEventType, *, actor: str = "system", data: dict[str, Any] | None = None
    ) -> None:
        await self.events.insert_one(_event_doc(reference, type_, actor=actor, data=data))

    # --- delivery statuses ---------------------------------------------------------------------------------

    async def record_delivery(self, status: DeliveryStatus) -> None:
        """Record a delivery status of an outbound message; a status never moves backwards. What it tells about the
        message itself (its platform ids, the template it went as) is kept on the message whatever its rank."""
        if status.outbound_id:
            message = await self.messages.find_one({"_id": f"out:{status.outbound_id}"}, {"ticket": 1})
        elif status.platform_message_id:
            message = await self.outbound_by_platform_id(status.channel.value, status.platform_message_id)
            if message is None:
                # The platform's status came before we learnt its message id: keep it until we do.
                await self._keep_orphans(status.channel.value, {status.platform_message_id: [status]})
                return
        else:
            return
        if message is None:
            return
        key = message["_id"]
        # What the notifier's report tells about the message itself, in one write: its platform ids, its template.
        reported = bool(status.platform_message_id and status.outbound_id)
        about: dict[str, Any] = {}
        if reported:
            about["channel_message_id"] = status.platform_message_id
        if status.template:
            about["template"] = status.template
        update: dict[str, Any] = {"$set": about} if about else {}
        if status.more_platform_message_ids:
            update["$addToSet"] = {"channel_message_ids": {"$each": list(status.more_platform_message_ids)}}
        if update:
            await self.messages.update_one({"_id": key}, update)
        applied = await deliveries.apply(self.deliveries, _delivery_writes({key: status}))
        if applied and status.status is DeliveryState.FAILED:
            await self._undelivered(key, status)
        if reported:  # the statuses that were waiting for these ids
            assert status.platform_message_id is not None
            for platform_id in (status.platform_message_id, *status.more_platform_message_ids):
                await self._adopt_orphans(status.channel.value, platform_id)
        if applied and message.get("ticket"):
            await self.mark_ticked([message["ticket"]])

    async def _undelivered(self, key: str, status: DeliveryStatus) -> None:
        """Reply `key` failed: if it is the newest of its ticket's answers, the ticket says so (`undelivered`,
        shown, counted and filtered in the inbox) until another answer is queued, and its audit trail tells."""
        failed = await self.messages.find_one({"_id": key}, {"ticket": 1, "purpose": 1, "seq": 1, "outbound_id": 1})
        if failed is None or failed.get("purpose") not in ANSWERS or not failed.get("ticket") or "seq" not in failed:
            return
        reference = failed["ticket"]
        later = self.messages.find({"ticket": reference, "seq": {"$gt": failed["seq"]}}, {"purpose": 1})
        if any(m.get("purpose") in ANSWERS for m in await later.to_list(None)):
            return  # a newer answer went after it (a failure reported late, or a resend outside the window)
        code = status.error.code if status.error is not None else None
        undelivered = {"outbound_id": failed["outbound_id"], "purpose": failed["purpose"], "code": code}
        await self.tickets.update_one({"_id": reference}, {"$set": {"undelivered": {**undelivered, "at": utcnow()}}})
        # Published by the outbox relay, not from the delivery consumer.
        await self._add_event(reference, TicketEventType.REPLY_FAILED, data=undelivered)

    async def mark_ticked(self, references: Iterable[str]) -> None:
        """Tell the open consoles that these tickets' replies changed delivery status (their ticks), without
        changing the tickets: a citizen's phone reporting "read" is no change to their complaint (its `updated_at`,
        which `cek` answers with, stays), and on the embedded database a ticket's update costs ten index rewrites
        where a tick costs two. `live.changes` reads the ticks beside the tickets."""
        now = utcnow()
        for chunk in db.parts(sorted(set(references))):
            await self.ticks.bulk_write(
                [db.UpdateOne({"_id": reference}, {"$set": {"at": now}}, upsert=True) for reference in chunk],
                ordered=False,
            )

    async def outbound_by_platform_id(
        self, channel: str, platform_id: str, *, whole: bool = False
    ) -> dict[str, Any] | None:
        """The outbound message a platform id names: as its first platform message or as a further one (a long
        WhatsApp reply is several; a status of any is the reply's). Two lookups, each answered by its own index.
        Its `_id`, direction and ticket, or with `whole` the whole message."""
        projection = None if whole else {"direction": 1, "ticket": 1}
        for field in ("channel_message_id", "channel_message_ids"):
            found = await self.messages.find(by_platform_ids(channel, field, [platform_id]), projection).to_list(None)
            for doc in found:
                if doc.get("direction") == "outbound":
                    return doc
        return None

    async def record_plain_deliveries(self, statuses: builtins.list[DeliveryStatus]) -> builtins.list[DeliveryStatus]:
        """Apply plain statuses (`window.plain`: no failure, error, template, watermark or further message ids) in a
        few writes whatever their number: one message's highest status only, guarded like `record_delivery` so
        nothing moves backwards. Statuses of messages not known yet by their platform id (the platform's webhook
        often overtakes the notifier's report) are kept as orphans together, and the orphans a report was waiting
        for are applied together.

        Returns the notifier's reports whose message had statuses other than plain ones waiting, now applied (a
        failure among them may call for the reply to go again as a template)."""
        target: dict[str, DeliveryStatus] = {}
        learnt: dict[str, DeliveryStatus] = {}
        by_platform: dict[str, dict[str, builtins.list[DeliveryStatus]]] = {}
        for status in statuses:
            if status.outbound_id:
                key = f"out:{status.outbound_id}"
                if status.platform_message_id:
                    learnt[key] = status
                _keep_highest(target, key, status)
            else:
                assert status.platform_message_id is not None
                by_channel = by_platform.setdefault(status.channel.value, {})
                by_channel.setdefault(status.platform_message_id, []).append(status)
        # A platform's status often overtakes the notifier's report of the same message in one batch.
        reported_in_batch = {(r.channel.value, r.platform_message_id): key for key, r in learnt.items()}
        seen: dict[str, str | None] = {}  # the messages known to be stored, with their tickets
        unknown: dict[str, dict[str, builtins.list[DeliveryStatus]]] = {}
        for channel, by_id in by_platform.items():
            known = await db.find_in(
                self.messages,
                "channel_message_id",
                by_id,
                where={"channel": channel},
                projection={"channel_message_id": 1, "ticket": 1, "direction": 1},
            )
            ids = {d["channel_message_id"]: d for d in known if d.get("direction") == "outbound"}
            for platform_id, group in by_id.items():
                doc = ids.get(platform_id)
                message = doc["_id"] if doc is not None else reported_in_batch.get((channel, platform_id))
                if message is None:
                    unknown.setdefault(channel, {})[platform_id] = group
                    continue
                if doc is not None:
                    seen[doc["_id"]] = doc.get("ticket")
                for status in group:
                    _keep_highest(target, message, status)
        unseen = [key for key in target if key not in seen]
        if unseen:
            for doc in await db.find_in(self.messages, "_id", unseen, projection={"ticket": 1}):
                seen[doc["_id"]] = doc.get("ticket")
        # A report of a message never stored writes nothing.
        target = {key: status for key, status in target.items() if key in seen}
        learnt = {key: report for key, report in learnt.items() if key in seen}
        # The ids first: another consumer's status of the same message finds it by them from then on.
        for chunk in db.parts(_learnt_ids(learnt)):
            await self.messages.bulk_write(chunk, ordered=False)
        await deliveries.apply(self.deliveries, _delivery_writes(target))
        # Statuses that came before the reports wait as orphans; looked for after the reports are written, so that
        # one stored meanwhile (by another consumer, which then found no message) is not missed.
        adopted: builtins.list[DeliveryStatus] = []
        if learnt:
            adopted = await self._adopt_orphans_of(learnt)
        tickets = {ticket for key in target if (ticket := seen[key])}
        if tickets:
            await self.mark_ticked(tickets)
        for channel, by_id in unknown.items():
            await self._keep_orphans(channel, by_id)
        return adopted

    async def _adopt_orphans_of(self, learnt: dict[str, DeliveryStatus]) -> builtins.list[DeliveryStatus]:
        """Apply the statuses kept waiting for these reports' messages (`out:<id>` -> the report naming its platform
        id): the plain ones in one write, guarded as ever, the others one by one. Returns the reports that had any of
        the others (a failure among them may call for the reply to go again as a template)."""
        report_of = {(r.channel.value, r.platform_message_id): key for key, r in learnt.items()}
        waiting = await db.find_in(self.orphans, "platform_message_id", [pid for _, pid in report_of if pid])
        target: dict[str, DeliveryStatus] = {}
        plain_ids: builtins.list[str] = []
        one_by_one: set[tuple[str, str]] = set()
        for doc in waiting:
            found = (doc["channel"], doc["platform_message_id"])
            key = report_of.get(found)
            if key is None:
                continue  # the same platform id on another channel
            status = _orphan_status(doc)
            if window.plain(status):
                _keep_highest(target, key, status)
                plain_ids.append(doc["_id"])
            else:
                one_by_one.add(found)
        if target:
            await deliveries.apply(self.deliveries, _delivery_writes(target))
            for part in db.parts(plain_ids):
                await self.orphans.delete_many({"_id": {"$in": part}})
        for channel, platform_id in sorted(one_by_one):
            await self._adopt_orphans(channel, platform_id)
        return [
            report for report in learnt.values() if (report.channel.value, report.platform_message_id) in one_by_one
        ]

    async def _keep_orphans(self, channel: str, by_id: dict[str, builtins.list[DeliveryStatus]]) -> None:
        """Keep statuses of messages not known by their platform id as orphans, for the notifier's report to adopt;
        then adopt at once those whose message is known after all: a long reply's further part, or a report another
        consumer recorded between the lookup and the orphans' writing.

        A platform's `sent` is not kept: the notifier's report of the same message, which is what teaches its id,
        says `sent` itself (or more), so it could never move the message. On WhatsApp it nearly always overtakes
        the report, and keeping it cost a write, a read and a delete for almost every reply."""
        by_id = {
            platform_id: kept
            for platform_id, group in by_id.items()
            if (kept := [status for status in group if status.status is not DeliveryState.SENT])
        }
        if not by_id:
            return
        now = utcnow()
        writes = [
            db.UpdateOne(
                {"_id": f"{channel}:{platform_id}:{status.status.value}"},
                {"$set": status.model_dump(mode="json"), "$setOnInsert": {"stored_at": now}},
                upsert=True,
            )
            for platform_id, group in by_id.items()
            for status in group
        ]
        for chunk in db.parts(writes):
            await self.orphans.bulk_write(chunk, ordered=False)
        known: set[str] = set()
        for field in ("channel_message_id", "channel_message_ids"):
            meanwhile = await db.find_in(
                self.messages, field, by_id, where={"channel": channel}, projection={field: 1, "direction": 1}
            )
            for doc in meanwhile:
                named = doc.get(field)
                if doc.get("direction") == "outbound":
                    known.update([named] if isinstance(named, str) else named or ())
        for platform_id in sorted(known & set(by_id)):
            await self._adopt_orphans(channel, platform_id)

    async def _adopt_orphans(self, channel: str, platform_message_id: str) -> None:
        orphans = await self.orphans.find(orphans_of(channel, [platform_message_id])).to_list(10)
        for doc in orphans:
            await self.orphans.delete_one({"_id": doc["_id"]})
            await self.record_delivery(_orphan_status(doc))

    # --- the response team's actions -----------------------------------------------------------------------

    async def get(self, reference: str, *, principal: Principal | None = None) -> dict[str, Any]:
        ticket = await self.tickets.find_one({"_id": reference})
        if ticket is None or (principal is not None and not principal.can_see(ticket)):
            raise NotFound(reference)
        ticket["messages"] = await deliveries.overlay(
            self.deliveries,
            await self.messages.find({"ticket": reference}, {"raw": 0})
            .sort([("seq", 1), ("created_at", 1)])
            .to_list(None),
        )
        ticket["notes"] = await self.notes.find({"ticket": reference}).sort("created_at", 1).to_list(None)
        return ticket

    async def list(
        self,
        *,
        filters: dict[str, str],
        q: str | None,
        limit: int,
        cursor: str | None,
        match: dict[str, Any] | None = None,
        created: dict[str, datetime] | None = None,
        undelivered: bool | None = None,
        principal: Principal | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, stable across pages (created_at, then reference, both descending).

        `filters` are equalities on plain values; `match` is a condition built by the API's own code (never from
        raw input); `created` bounds created_at (`$gte` and/or `$lt`, as `deadlines.created_between` gives);
        `undelivered` keeps only the tickets whose newest answer failed (True) or the others (False);
        `principal` limits the result to what the caller may see."""
        query: dict[str, Any] = {key: value for key, value in filters.items()}
        clauses: list[dict[str, Any]] = [match] if match else []
        if principal is not None and principal.scoped:
            scope = principal.scope()
            if all(query.get(key, value) == value for key, value in scope.items()):
                query.update(scope)  # beside the filters, where an index can serve it (see `_newest`)
            else:
                clauses.append(scope)  # a filter for another department: nothing
        if q and q.strip():
            # No text index (the embedded database has none): an escaped, case-insensitive regex over a lower-case
            # copy of everything the citizen wrote (the summary is its beginning), over the citizen's name and
            # over the reference. Names and numbers of confidential reporters are searchable only by those who may
            # see them.
            words = " ".join(q.casefold().split())
            pattern = {"$regex": re.escape(words), "$options": "i"}
            hidden: dict[str, Any] = {}
            if principal is not None and not principal.oversees:
                hidden["confidential"] = {"$ne": True}
            fields: builtins.list[dict[str, Any]] = [
                {"search_text": pattern},
                {"citizen.display_name": pattern, **hidden},
            ]
            phone = _phone_digits(q)
            if self._may_be_in_reference(words) and not (phone and phone.whole):
                fields.append({"_id": pattern})
            if phone is not None:
                fields.append({"citizen.phone": {"$regex": re.escape(phone.digits)}, **hidden})
            clauses.append({"$or": fields})
        if undelivered is False:
            clauses.append({"undelivered.at": {"$exists": False}})
        after = decode_cursor(cursor) if cursor else None
        docs = await self._newest(
            query, clauses, limit + 1, after=after, created=created or {}, undelivered=bool(undelivered)
        )
        next_cursor = None
        if len(docs) > limit:
            docs = docs[:limit]
            next_cursor = encode_cursor(docs[-1]["created_at"], docs[-1]["_id"])
        return docs, next_cursor

    def _may_be_in_reference(self, words: str) -> bool:
        """Whether lower-case `words` can be part of a reference (RMB-2026-000123): most searches are words of
        a complaint or a name, and each clause of the search costs the embedded database a pass over every
        ticket it reads."""
        return REFERENCE_PART.fullmatch(words) is not None and (
            any(c.isdigit() or c == "-" for c in words) or words in self.prefix.casefold()
        )

    async def _newest(
        self,
        query: dict[str, Any],
        clauses: builtins.list[dict[str, Any]],
        count: int,
        *,
        after: tuple[datetime, str] | None,
        created: dict[str, datetime],
        undelivered: bool,
    ) -> builtins.list[dict[str, Any]]:
        """The `count` newest tickets matching `query`, every one of `clauses` and the bounds of `created`
        (created_at, then reference, both descending), after the ticket `after` names (its created_at and
        reference) if given; with `undelivered`, only those whose newest answer failed.

        The embedded database reads every match before it sorts, where MongoDB stops at the limit: the inbox's
        unfiltered first page cost it 160 ms at 10,000 tickets, the next one 260. So a query an index serves in
        that order (no clauses, and none or one equality on a field of `SPANNED`) is asked for ever older spans
        back from now, from the end of `created` or from the last ticket shown: the last day, 8 days, 64, 512,
        then all (down to the start of `created`). Whatever lies outside a span is older than all of it, so a span
        with `count` matches answers alone; each next span is 8 times longer, so a query that needs them all
        costs little more than one over everything. Other queries go as they are: there the embedded database
        reads through another index, or none, and the spans only repeat its work (measured).

        Equalities on fields of `WALKED_BY_TIME` (a kecamatan, a channel...) have no index of their own; asked
        with the span's created_at range named first, the embedded database walks the span through created_at's
        index and checks them on what it reads (MongoDB walks that index in order anyway): at 10,000 tickets a
        kecamatan's first page costs 58 ms instead of 164 (a search still reads every ticket: 275 ms). `created`
        is never put in `$and`: any top-level operator sends the embedded database through every ticket (a
        month's first page cost 234 ms at 10,000 tickets that way).

        The tickets whose answer failed are a few among thousands: all of them are read through their sparse index
        (named first) and paged here, so that no cursor condition sends the embedded database through every
        ticket."""
        order = [("created_at", -1), ("_id", -1)]

        async def newest(condition: dict[str, Any], wanted: int) -> builtins.list[dict[str, Any]]:
            found: builtins.list[dict[str, Any]] = (
                await self.tickets.find(condition).sort(order).limit(wanted).to_list(None)
            )
            return found

        if undelivered:
            bounds = {**created, **({"$lte": after[0]} if after is not None else {})}
            condition = {**UNDELIVERED, **query, **({"created_at": bounds} if bounds else {})}
            failed = await newest({**condition, "$and": clauses} if clauses else condition, 0)  # 0: no limit
            return [doc for doc in failed if after is None or (doc["created_at"], doc["_id"]) < after][:count]

        lowest, top = created.get("$gte"), created.get("$lt")
        if not clauses and ((len(query) <= 1 and set(query) <= SPANNED) or set(query) <= WALKED_BY_TIME):
            tied: builtins.list[dict[str, Any]] = []
            if after is not None:
                at, reference = after
                if (lowest is None or at >= lowest) and (top is None or at < top):
                    # First the rest of the last one's instant (a batch's tickets share theirs), then older ones.
                    tied = await newest({"created_at": at, **query, "_id": {"$lt": reference}}, count)
                top = at if top is None else min(top, at)
            wanted = count - len(tied)
            if wanted == 0:
                return tied
            below = {} if top is None else {"$lt": top}
            start = self.now() if top is None else min(top, self.now())
            for span in LIST_SPANS:
                since = start - span
                if lowest is not None and since <= lowest:
                    break
                found = await newest({"created_at": {**below, "$gte": since}, **query}, wanted)
                if len(found) == wanted:
                    return tied + found
            rest = {**below, **({} if lowest is None else {"$gte": lowest})}
            return tied + await newest({**({"created_at": rest} if rest else {}), **query}, wanted)
        if after is not None:
            at, reference = after
            clauses = [*clauses, {"$or": [{"created_at": {"$lt": at}}, {"created_at": at, "_id": {"$lt": reference}}]}]
        # The query's own fields first: the embedded database rides the first one an index serves.
        condition = {**query, **({"created_at": created} if created else {})}
        return await newest({**condition, "$and": clauses} if clauses else condition, count)

    async def update(
        self, reference: str, changes: dict[str, Any], *, actor: str, principal: Principal | None = None
    ) -> dict[str, Any]:
        """Apply the response team's changes; status changes follow the lifecycle (InvalidTransition if not)."""
        ticket = await self.tickets.find_one({"_id": reference})
        if ticket is None or (principal is not None and not principal.can_see(ticket)):
            raise NotFound(reference)
        diff = {k: [ticket.get(k), v] for k, v in changes.items() if ticket.get(k) != v}
        if diff:
            if principal is not None and principal.scoped and "department" in diff:
                raise Forbidden("an agent passes a ticket to another department with a disposition, with a reason")
            await workflow.apply_changes(self, ticket, {k: v for k, v in changes.items() if k in diff}, actor=actor)
            await self._add_event(reference, TicketEventType.UPDATED, actor=actor, data=diff)
            await self._publish_quietly({"ticket": reference})
            for child in ticket.get("merged") or []:
                await self._publish_quietly({"ticket": child})
        return await self.get(reference)

    async def reply(
        self,
        reference: str,
        text: str | Callable[[dict[str, Any]], str],
        *,
        actor: str,
        principal: Principal | None = None,
        private: bool = False,
    ) -> str:
        """Queue an agent's reply on the ticket's channel; it is stored before anything is sent. On a master ticket
        the reply also goes to every merged reporter, each on their own channel. `text` may be worded for each
        reporter's own ticket (a canned response names its reference and its citizen, never the master's)."""
        ticket = await self.tickets.find_one({"_id": reference})
        if ticket is None or (principal is not None and not principal.can_see(ticket)):
            raise NotFound(reference)
        if ticket["status"] == TicketStatus.CLOSED:
            raise workflow.TicketClosed(reference)
        wording = text if callable(text) else (lambda _target: text)
        if private:
            # Meta's private reply to the commenter: only this ticket's own comment, never the merged reporters.
            await social.private_target(self, ticket)
            social.check_private_length(ticket, wording(ticket))
        outbound_id = new_id()
        for target in await workflow.reporters(self, ticket):
            if private and target["_id"] != reference:
                continue
            queued = await self._queue_outbound(
                outbound_id=outbound_id if target["_id"] == reference else _stable_id(outbound_id, target["_id"]),
                ticket=target["_id"],
                channel=target["channel"],
                conversation_key=target["conversation_key"],
                recipient=target["citizen"]["channel_user_id"],
                text=wording(target),
                purpose=ReplyPurpose.AGENT_REPLY,
                reply_to=None,
                cause=None,
                author=actor,
                private=private,
            )
            now = self.now()
            changes: dict[str, Any] = {"updated_at": now}
            data: dict[str, Any] = {"outbound_id": queued}
            if target["status"] == TicketStatus.NEW:
                changes["status"] = TicketStatus.OPEN.value
                data["status"] = [TicketStatus.NEW.value, TicketStatus.OPEN.value]  # the trail shows it
            if not target.get("first_response_at"):
                changes["first_response_at"] = now
            await self.tickets.update_one({"_id": target["_id"]}, {"$set": changes})
            await self._add_event(target["_id"], TicketEventType.REPLY_QUEUED, actor=actor, data=data)
            await self._publish_quietly({"ticket": target["_id"]})
        return outbound_id

    async def add_note(
        self, reference: str, text: str, *, actor: str, principal: Principal | None = None
    ) -> dict[str, Any]:
        found = await self.tickets.find_one({"_id": reference}, {"_id": 1, "department": 1})
        if found is None or (principal is not None and not principal.can_see(found)):
            raise NotFound(reference)
        note = {"_id": new_id(), "ticket": reference, "text": text, "author": actor, "created_at": utcnow()}
        await self.notes.insert_one(note)
        await self.tickets.update_one({"_id": reference}, {"$set": {"updated_at": utcnow()}})
        await self._add_event(reference, TicketEventType.NOTE_ADDED, actor=actor, data={"note_id": note["_id"]})
        await self._publish_quietly({"ticket": reference})
        return note

    async def history(self, reference: str, *, principal: Principal | None = None) -> builtins.list[dict[str, Any]]:
        """The audit trail of one ticket, oldest first: who did what, when."""
        found = await self.tickets.find_one({"_id": reference}, {"_id": 1, "department": 1})
        if found is None or (principal is not None and not principal.can_see(found)):
            raise NotFound(reference)
        return await self.events.find({"reference": reference}).sort([("at", 1), ("_id", 1)]).to_list(None)

    async def _publish_quietly(self, match: dict[str, Any]) -> None:
        """Publish now if the broker is there; otherwise the outbox relay does it shortly."""
        try:
            await self.publish_pending(match)
        except BrokerUnavailable:
            log.warning("broker unavailable; the outbox relay will publish later", extra=match)

    async def public_status(self, key: str) -> dict[str, Any]:
        """A ticket's public view by reference or by web submission id."""
        ticket = await self.tickets.find_one({"_id": key.upper()}) or await self.tickets.find_one(
            {"submission_id": key}
        )
        if ticket is None:
            raise NotFound(key)
        own = key == ticket.get("submission_id")
        if not own:
            # The submission id is the reporter's secret link to the whole replies: never given by the reference.
            ticket = {**ticket, "submission_id": None}
        if ticket.get("confidential") and not own:
            # A confidential report is hidden from the public (SP4N-LAPOR!): by its guessable reference only its
            # status shows; the replies stay on the reporter's own channel or behind the private submission link.
            return {**ticket, "replies": [], "replies_hidden": True}
        # References are sequential, so anyone may read the page of one: there a reply shows as it would under a
        # comment (no phone number, address or name of the citizen), and a private reply not at all. The web
        # reporter's own link (its submission id, a secret) shows every reply whole.
        replies = await deliveries.overlay(
            self.deliveries,
            await self.messages.find(
                {"ticket": ticket["_id"], "direction": "outbound", **({} if own else {"private": {"$ne": True}})},
                {
                    "text": 1,
                    "purpose": 1,
                    "created_at": 1,
                    "outbound_id": 1,
                    "direction": 1,
                    "delivery_status": 1,
                    "delivery_rank": 1,
                },
            )
            .sort("created_at", 1)
            .to_list(None),
        )
        if not own:
            names = tuple(filter(None, [(ticket.get("citizen") or {}).get("display_name")]))
            replies = [{**reply, "text": public_text(reply.get("text") or "", names=names)} for reply in replies]
        return {**ticket, "replies": replies}
