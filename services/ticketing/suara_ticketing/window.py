"""The customer-service window: how long after a citizen's last message Meta's channels let Suara write freely,
and what happens when a platform says it had closed after all."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from suara_shared import db
from suara_shared.events import Channel, DeliveryState, DeliveryStatus, ReplyPurpose

from . import conversations, deliveries, social

if TYPE_CHECKING:
    from .tickets.service import TicketService

log = logging.getLogger(__name__)

#: WhatsApp, Messenger and Instagram: 24 hours after the citizen's last message (channels.md §1.7).
WINDOW = timedelta(hours=24)
#: Stored as `window_expires_at` on a message that must go as what the platform allows outside the window.
CLOSED = datetime(1970, 1, 1, tzinfo=UTC)
#: The error each channel reports, often as a `failed` status after accepting the send, when the window had
#: closed after all (WhatsApp: "re-engagement message").
WINDOW_CLOSED_CODES: dict[str, str] = {Channel.WHATSAPP.value: "131047"}


async def expires_at(messages: db.Collection, *, channel: str, conversation_key: str) -> datetime | None:
    """When the window of this citizen on this channel closes: 24 hours after their last message as the platform
    timestamped it (a webhook Meta retried for days arrives with its window long closed); None if they never
    wrote. Stored on each outbound message; the channel's adapter decides what to send past it."""
    last = await messages.find_one(
        conversations.messages(channel, conversation_key, "inbound"), {"created_at": 1}, sort=[("created_at", -1)]
    )
    return expiry(last.get("created_at") if last is not None else None)


def expiry(last_inbound_at: Any) -> datetime | None:
    """The window's end after a citizen's last message at `last_inbound_at` (None if they never wrote)."""
    return last_inbound_at + WINDOW if isinstance(last_inbound_at, datetime) else None


async def record_delivery(service: TicketService, status: DeliveryStatus) -> None:
    """The delivery topic's handler: record the status, then resend what the window refused."""
    if status.watermark is not None:
        await social.record_watermark(service, status)  # names no message: nothing to resend
        return
    await service.record_delivery(status)
    await resend_outside_window(service=service, status=status)


async def record_deliveries(service: TicketService, statuses: list[DeliveryStatus]) -> None:
    """The delivery topic's batch handler: the same outcome as `record_delivery` one by one, in fewer writes.

    Plain statuses (sent, delivered, read of one message, by its outbound id or its platform id) are applied
    together: a status never moves backwards, so the order they are applied in does not change the outcome, and
    only the highest of one message's statuses needs writing. Everything else (failures, which may send a
    template again; receipts by watermark) goes one by one, in order, first; statuses of messages not known yet
    by their platform id are kept together to wait for the notifier's report."""
    plain_ones: list[DeliveryStatus] = []
    for status in statuses:
        if plain(status):
            plain_ones.append(status)
        else:
            await record_delivery(service, status)
    for status in await service.record_plain_deliveries(plain_ones):
        await resend_outside_window(service=service, status=status)


def plain(status: DeliveryStatus) -> bool:
    """A status the batch applies with others (a message's sent, delivered or read, by one of its ids)."""
    return (
        status.watermark is None
        and status.status is not DeliveryState.FAILED
        and status.error is None
        and not status.template
        and not status.more_platform_message_ids
        and bool(status.outbound_id or status.platform_message_id)
    )


async def resend_outside_window(*, service: TicketService, status: DeliveryStatus) -> str | None:
    """A free-form message the platform refused because the window had closed (WhatsApp 131047, arriving as a
    failed status after a 200): queue it again, marked outside the window, so that the notifier sends the approved
    template. The failed message stays on the ticket as it was. Returns the new outbound id, if one was queued."""
    if status.status is DeliveryState.FAILED:
        if status.error is None or WINDOW_CLOSED_CODES.get(status.channel.value) != status.error.code:
            return None
    elif not status.outbound_id:
        return None
    # Judge the message as stored, not the status in hand: the platform's failure may have come before the
    # notifier's own report of the message id, been kept as an orphan, and been applied only now.
    message = await _message_of(service, status)
    if message is None or message.get("template") or message.get("resend_of"):
        return None  # unknown yet, already a template, or already the resend: never loop
    error = message.get("delivery_error") or {}
    if message.get("delivery_status") != DeliveryState.FAILED.value or (
        WINDOW_CLOSED_CODES.get(message["channel"]) != error.get("code")
    ):
        return None
    outbound_id = hashlib.sha256(f"window\x1f{message['outbound_id']}".encode()).hexdigest()[:32]
    await service._queue_outbound(
        outbound_id=outbound_id,
        ticket=message.get("ticket"),
        channel=message["channel"],
        conversation_key=message["conversation_key"],
        recipient=message["recipient"],
        text=message["text"],
        purpose=ReplyPurpose(message["purpose"]),
        reply_to=None,
        cause=message["_id"],
        author=message.get("author") or "system",
    )
    key = f"out:{outbound_id}"
    await service.messages.update_one(
        {"_id": key, "published": False},
        {"$set": {"window_expires_at": CLOSED, "resend_of": message["outbound_id"]}},
    )
    log.info(
        "window closed at the platform; reply queued again as a template",
        extra={"outbound_id": message["outbound_id"], "resend": outbound_id, "reference": message.get("ticket")},
    )
    await service.publish_pending({"_id": key})
    return outbound_id


async def _message_of(service: TicketService, status: DeliveryStatus) -> dict[str, Any] | None:
    """The outbound message a status names, with the status it has reached."""
    if status.outbound_id:
        message = await service.messages.find_one({"_id": f"out:{status.outbound_id}"})
    elif status.platform_message_id:
        message = await service.outbound_by_platform_id(status.channel.value, status.platform_message_id, whole=True)
    else:
        return None
    return (await deliveries.overlay(service.deliveries, [message]))[0] if message is not None else None
