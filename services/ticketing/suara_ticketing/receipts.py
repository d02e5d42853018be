"""Read receipts: when an agent opens a ticket, the citizen's messages show as read on their phone."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI

from suara_shared import db, topics
from suara_shared.events import Channel, OutboundAction, OutboundReply, utcnow
from suara_shared.kafka import BrokerUnavailable

from .tickets.service import TicketService

log = logging.getLogger(__name__)

#: Channels whose citizens see read receipts (Messenger's `mark_seen` would join here); others are never asked.
READ_RECEIPT_CHANNELS = frozenset({Channel.WHATSAPP.value})


async def request_read_receipts(*, service: TicketService, ticket: dict[str, Any]) -> bool:
    """Ask the ticket's channel to mark the citizen's messages read, once per message.

    One request names the latest unread message: WhatsApp marks every earlier message of the chat read with it.
    It travels on the outbound topic, keyed by conversation, so it queues behind the replies before it; the
    notifier's adapter for the channel does the rest (channels without read receipts ignore it). Returns whether
    a request was published."""
    if ticket.get("channel") not in READ_RECEIPT_CHANNELS:
        return False
    unread = [
        m
        for m in ticket.get("messages", [])
        if m.get("direction") == "inbound" and m.get("channel_message_id") and not m.get("read_requested_at")
    ]
    if not unread:
        return False
    latest = unread[-1]
    request = OutboundReply(
        action=OutboundAction.MARK_READ,
        ticket_reference=ticket["_id"],
        channel=ticket["channel"],
        conversation_key=ticket["conversation_key"],
        recipient=ticket["citizen"]["channel_user_id"],
        reply_to=latest["channel_message_id"],
    )
    await service.publisher.publish(topics.OUTBOUND, request, key=request.partition_key)
    await service.messages.update_many(
        {"_id": {"$in": [m["_id"] for m in unread]}}, {"$set": {"read_requested_at": utcnow()}}
    )
    return True


def on_ticket_opened(app: FastAPI, service: TicketService, ticket: dict[str, Any]) -> None:
    """Request the read receipts in the background: opening a ticket never waits for the broker."""
    tasks: set[asyncio.Task[None]] | None = getattr(app.state, "read_receipt_tasks", None)
    if tasks is None:
        tasks = app.state.read_receipt_tasks = set()
    task = asyncio.get_running_loop().create_task(_quietly(service, ticket))
    tasks.add(task)  # held until done: the event loop keeps only weak references to tasks
    task.add_done_callback(tasks.discard)


async def _quietly(service: TicketService, ticket: dict[str, Any]) -> None:
    try:
        await request_read_receipts(service=service, ticket=ticket)
    except (BrokerUnavailable, db.PyMongoError) as exc:
        # Not marked as requested: the next agent to open the ticket asks again.
        log.warning("read receipts not requested", extra={"reference": ticket.get("_id"), "error": type(exc).__name__})
    except Exception:
        log.exception("read receipts not requested", extra={"reference": ticket.get("_id")})
