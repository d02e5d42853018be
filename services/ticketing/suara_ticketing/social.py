"""Social channels in the ticket domain: echoes of what the Page sent, comment edits and removals, which comment a
reply answers, "answer privately" (Meta's private reply, once per comment, within 7 days), and Messenger's
delivery and read watermarks."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from suara_shared import db
from suara_shared.events import DELIVERY_RANK, DeliveryState, DeliveryStatus, InboundMessage, MessageKind, utcnow

from . import conversations, deliveries
from .tickets import workflow

if TYPE_CHECKING:
    from .tickets.service import TicketService

log = logging.getLogger(__name__)

#: Meta takes one private reply per comment, within 7 days of it (channels.md §2.3, §3.2).
PRIVATE_REPLY_WINDOW = timedelta(days=7)
#: An echo that names no message id we know is matched to a reply of ours with the same text sent this recently
#: (the echo may come before the notifier's report of the message id).
ECHO_MATCH_WINDOW = timedelta(minutes=10)


#: The most a private reply (one direct message) may say: Messenger's and Instagram's limits of a text message.
PRIVATE_REPLY_MAX = {"facebook": 2000, "instagram": 1000}


class PrivateReplyRefused(Exception):
    """The ticket has no comment to answer privately, or its comment was already answered so, or is too old."""


class ReplyTooLong(ValueError):
    """A private reply is one message: longer than the platform takes, it would be cut."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a private reply is one message of at most {limit} characters on this channel")
        self.limit = limit


def check_private_length(ticket: dict[str, Any], text: str) -> None:
    """ReplyTooLong when a private reply on this ticket's channel could not go whole."""
    limit = PRIVATE_REPLY_MAX.get(ticket["channel"])
    if limit is not None and len(text) > limit:
        raise ReplyTooLong(limit)


def is_special(event: InboundMessage) -> bool:
    """An echo of what the Page sent, a comment's edit or removal, or a reaction: `handle_special`'s to record."""
    return (
        bool(event.metadata.get("echo"))
        or event.metadata.get("edit") in ("edited", "removed")
        or event.kind == MessageKind.REACTION
    )


async def handle_special(service: TicketService, event: InboundMessage) -> bool:
    """Echoes, comment edits or removals and reactions: recorded where they belong, never opening a ticket. True
    if handled."""
    if event.metadata.get("echo"):
        await _record_echo(service, event)
        return True
    if event.metadata.get("edit") in ("edited", "removed"):
        return await _record_edit(service, event)
    if event.kind == MessageKind.REACTION:
        await _record_reaction(service, event)
        return True
    return False


async def _newest_not_closed(service: TicketService, event: InboundMessage) -> str | None:
    """The reference of the conversation's newest ticket, unless that one is closed."""
    ticket = await service.tickets.find_one(
        {"channel": event.channel.value, "conversation_key": event.conversation_key},
        {"_id": 1, "status": 1},
        sort=[("created_at", -1)],
    )
    return ticket["_id"] if ticket is not None and ticket.get("status") != "closed" else None


async def _record_reaction(service: TicketService, event: InboundMessage) -> None:
    """A citizen's 👍 on a reply (or one taken back) is kept on the conversation's ticket as it is: it opens,
    reopens and answers nothing, and is no survey answer. Under a closed ticket, or none, it is kept alone."""
    await service._keep_quietly(event, await _newest_not_closed(service, event))


async def _record_echo(service: TicketService, event: InboundMessage) -> None:
    """Ours (by message id, or by text while its id is not known yet) is already on the ticket; one an agent sent
    from Meta's own inbox is recorded as an outbound message of the conversation's ticket."""
    channel = event.channel.value
    ours = await service.outbound_by_platform_id(channel, event.platform_message_id)
    if ours is None and event.text:
        since = {"$gte": utcnow() - ECHO_MATCH_WINDOW}
        recent = await service.messages.find(
            conversations.messages(channel, event.conversation_key, "outbound", created_at=since),
            {"author": 1, "text": 1},
        ).to_list(None)
        ours = next((m for m in recent if m.get("author") != "platform_inbox" and m.get("text") == event.text), None)
    if ours is not None:
        return
    reference = await _newest_not_closed(service, event)
    seq = None
    if reference is not None:
        numbered = await db.increment(service.tickets, reference, "message_count", also={"updated_at": utcnow()})
        seq = numbered["message_count"] if numbered else None
    doc = {
        "_id": event.dedup_key,
        "seq": seq,
        "outbound_id": None,
        "ticket": reference,
        "direction": "outbound",
        "channel": channel,
        "channel_message_id": event.platform_message_id,
        "conversation_key": event.conversation_key,
        "recipient": event.sender.channel_user_id,
        "kind": event.kind.value,
        "text": event.text,
        "purpose": "agent_reply",
        "author": "platform_inbox",
        # Sent already, by a person in the platform's own inbox: nothing for the notifier to do.
        "published": True,
        "delivery_status": DeliveryState.SENT.value,
        "delivery_rank": DELIVERY_RANK[DeliveryState.SENT],
        "delivery_error": None,
        "created_at": event.received_at,
    }
    with contextlib.suppress(db.DuplicateKeyError):
        await service.messages.insert_one(doc)
    log.info("reply sent from the platform's inbox recorded", extra={"reference": reference, "channel": channel})


async def _record_edit(service: TicketService, event: InboundMessage) -> bool:
    """An edit or removal of a comment (or an unsent direct message) is kept on the message it changes: the text
    shown becomes the new one, each edit keeps the text it replaced, a removal keeps the words but marks them removed.
    An edit of a message never seen is a new one (returns False); a removal of one has nothing to change."""
    original = str(event.metadata.get("original_id") or "")
    key = f"in:{event.channel.value}:{original}"
    removed = event.metadata.get("edit") == "removed"
    # Read, then update guarded by the edit's id: one comment's changes come in order on its conversation's
    # partition, and a findAndModify would read the whole collection on the embedded database.
    found = await service.messages.find_one({"_id": key}, {"ticket": 1, "text": 1, "edits.id": 1})
    if found is None:
        return removed
    if any(edit.get("id") == event.platform_message_id for edit in found.get("edits") or ()):
        return True  # this change was recorded before
    change: dict[str, Any] = {"id": event.platform_message_id, "at": event.received_at}
    if removed:
        update: dict[str, Any] = {"$set": {"removed": True, "removed_at": event.received_at}}
        change["removed"] = True
    else:
        update = {"$set": {"text": event.text, "edited_at": event.received_at}}
        change.update(text=event.text, before=found.get("text"))
    update["$push"] = {"edits": change}
    written = await service.messages.update_one({"_id": key, "edits.id": {"$ne": event.platform_message_id}}, update)
    if written.modified_count and found.get("ticket"):
        changes: dict[str, Any] = {"updated_at": utcnow()}
        if not removed:  # the new words find the ticket too; the old ones still do
            ticket = await service.tickets.find_one({"_id": found["ticket"]}, {"search_text": 1})
            changes["search_text"] = workflow.searchable((ticket or {}).get("search_text") or "", event)
        await service.tickets.update_one({"_id": found["ticket"]}, {"$set": changes})
    return True


async def outbound_context(
    messages: db.Collection, *, channel: str, conversation_key: str, reply_to: str | None
) -> dict[str, Any] | None:
    """Where a reply goes on the platform: the comment, tweet or mention it answers. The message it replies to
    when named, else the conversation's latest inbound message; None on channels without comments."""
    found = None
    if reply_to:
        found = await messages.find_one({"_id": f"in:{channel}:{reply_to}"}, {"reply_context": 1})
    if found is None:
        # The conversation's latest comment not removed: its messages newest first, through their index.
        # On a comment's thread that is the first one or so; a chat has none, and is read through once.
        cursor = messages.find(
            conversations.messages(channel, conversation_key, "inbound"),
            {"reply_context": 1, "removed": 1},
            sort=[("created_at", -1)],
        )
        try:
            async for doc in cursor:
                if doc.get("removed") is not True and reply_target(doc.get("reply_context")):
                    found = doc
                    break
        finally:
            await cursor.close()
    return reply_target((found or {}).get("reply_context"))


def reply_target(context: dict[str, Any] | None) -> dict[str, Any] | None:
    """From a stored message's reply context, what a reply to it needs: the comment (and its post and parent), or
    the post alone for an Instagram mention in a caption, which is answered on its media."""
    if not context or not (context.get("comment_id") or context.get("post_id")):
        return None
    return {k: context[k] for k in ("comment_id", "post_id", "parent_id") if context.get(k)}


async def private_target(service: TicketService, ticket: dict[str, Any]) -> str:
    """The comment an agent's private reply answers; refused when there is none, when it already had its one
    private reply, or when it is over 7 days old."""
    latest = await service.messages.find_one(
        {
            "ticket": ticket["_id"],
            "direction": "inbound",
            "kind": "comment",
            "removed": {"$ne": True},
            "reply_context.comment_id": {"$exists": True},
        },
        {"reply_context": 1, "created_at": 1},
        sort=[("created_at", -1)],
    )
    if latest is None:
        raise PrivateReplyRefused("this ticket has no comment to answer privately")
    comment_id = latest["reply_context"]["comment_id"]
    if latest["created_at"] + PRIVATE_REPLY_WINDOW < utcnow():
        raise PrivateReplyRefused("the comment is over 7 days old: Meta no longer takes a private reply to it")
    earlier = await service.messages.find(
        {"ticket": ticket["_id"], "direction": "outbound", "private": True, "reply_context.comment_id": comment_id},
        {"direction": 1, "delivery_status": 1, "delivery_rank": 1},
    ).to_list(None)
    await deliveries.overlay(service.deliveries, earlier)
    if any(m.get("delivery_status") != DeliveryState.FAILED.value for m in earlier):
        raise PrivateReplyRefused("this comment already had its one private reply")
    return str(comment_id)


async def record_watermark(service: TicketService, status: DeliveryStatus) -> int:
    """A receipt by watermark (Messenger): every outbound message of the conversation created at or before it moves
    up to the status, never backwards (a failed one stays failed). Returns how many messages moved."""
    if status.watermark is None or not status.conversation_key:
        return 0
    rank = DELIVERY_RANK[status.status]
    before = await service.messages.find(
        conversations.messages(
            status.channel.value, status.conversation_key, "outbound", created_at={"$lte": status.watermark}
        ),
        {"ticket": 1, "direction": 1, "delivery_rank": 1},
    ).to_list(None)
    below = [m for m in await deliveries.overlay(service.deliveries, before) if (m.get("delivery_rank") or 0) < rank]
    fields = deliveries.changes(status)
    moved = await deliveries.apply(service.deliveries, [deliveries.moved(m["_id"], fields) for m in below])
    await service.mark_ticked(filter(None, {m.get("ticket") for m in below}))
    return moved
