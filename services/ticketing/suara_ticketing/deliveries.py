"""The delivery statuses of outbound messages (their ticks), kept beside the messages rather than on them.

A reply is written once and then changes status three times or more (sent, delivered, read). On the embedded
database every write of a document costs about 0.1 ms for each index of its collection, whatever the write
changes: a status written onto its message (six indexes) cost 0.95 ms, one written here (only `_id`) 0.23 ms
(2,000 messages each, measured). So a message keeps the status it was stored with (queued; sent for one typed in
the platform's own inbox), and what is learnt later is written here under the message's `_id`, with the same
field names, a status never moving backwards. `overlay` puts the higher of the two on the message for whoever
reads it. What the platform tells about the message itself (its platform ids, the template it went as) is
still written onto the message, once: statuses are looked up by those."""

from __future__ import annotations

from typing import Any

from suara_shared import db
from suara_shared.events import DELIVERY_RANK, DeliveryStatus

COLLECTION = "message_deliveries"


def changes(status: DeliveryStatus) -> dict[str, Any]:
    """What a status sets on its message."""
    out: dict[str, Any] = {
        "delivery_status": status.status.value,
        "delivery_rank": DELIVERY_RANK[status.status],
        "delivery_updated_at": status.occurred_at,
    }
    if status.error is not None:
        out["delivery_error"] = status.error.model_dump()
    return out


def moved(key: str, fields: dict[str, Any]) -> db.UpdateOne:
    """The write moving message `key` up to `fields` (from `changes`); refused where it holds as high a status."""
    return db.UpdateOne({"_id": key, "delivery_rank": {"$lt": fields["delivery_rank"]}}, {"$set": fields}, upsert=True)


async def apply(collection: db.Collection, writes: list[db.UpdateOne]) -> int:
    """Apply writes from `moved`; returns how many moved a message's status."""
    return await db.upsert_guarded(collection, writes)


async def overlay(collection: db.Collection, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages, each outbound one with the higher of its stored status and the one learnt since (changed in
    place). Reads need the messages' `_id`, `direction` and `delivery_rank`."""
    outbound = {m["_id"]: m for m in messages if m.get("direction") == "outbound"}
    if outbound:
        for learnt in await db.find_in(collection, "_id", outbound):
            message = outbound[learnt.pop("_id")]
            if learnt.get("delivery_rank", 0) > (message.get("delivery_rank") or 0):
                message.update(learnt)
    return messages
