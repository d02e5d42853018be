"""Delivery statuses are kept beside their messages (`deliveries`): the console, the status page and every rule
that reads a reply's status see the one it reached, and the message is written once, not once per tick."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from suara_shared.events import (
    Channel,
    DeliveryError,
    DeliveryState,
    DeliveryStatus,
    InboundMessage,
    Sender,
    new_id,
    utcnow,
)
from suara_ticketing import social

from .conftest import App, comment_message, outbound_for, whatsapp_message


async def _acknowledged(app: App, number: str) -> tuple[str, dict[str, Any]]:
    """A WhatsApp citizen's new ticket and its acknowledgement as stored."""
    await app.service.handle_inbound(whatsapp_message("Lampu jalan di Desa Pandean mati", number=number))
    ticket = await app.service.tickets.find_one({"conversation_key": number})
    assert ticket is not None
    ack = await app.service.messages.find_one({"ticket": ticket["_id"], "purpose": "acknowledgement"})
    assert ack is not None
    return ticket["_id"], ack


def _shown(ticket: dict[str, Any], message_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(m for m in ticket["messages"] if m["id"] == message_id)
    return found


async def test_a_reply_shows_the_status_it_reached_and_its_message_is_not_rewritten_per_tick(app: App) -> None:
    reference, ack = await _acknowledged(app, "6281390000001")
    stored_before = {k: v for k, v in ack.items() if k != "channel_message_id"}
    wamid = f"wamid.{new_id()}"
    report = DeliveryStatus(
        channel=Channel.WHATSAPP, outbound_id=ack["outbound_id"], platform_message_id=wamid, status=DeliveryState.SENT
    )
    await app.service.record_plain_deliveries([report])
    delivered = DeliveryStatus(channel=Channel.WHATSAPP, platform_message_id=wamid, status=DeliveryState.DELIVERED)
    await app.service.record_plain_deliveries([delivered])
    await app.service.record_delivery(
        DeliveryStatus(channel=Channel.WHATSAPP, platform_message_id=wamid, status=DeliveryState.READ)
    )

    shown = _shown((await app.client.get(f"/api/v1/tickets/{reference}")).json(), ack["outbound_id"])
    assert (shown["delivery_status"], shown["channel_message_id"]) == ("read", wamid)
    public = (await app.client.get(f"/api/v1/public/status/{reference}")).json()
    assert [r["delivery_status"] for r in public["replies"]] == ["read"]
    # The message learnt its platform id, once; its ticks went beside it.
    stored = await app.service.messages.find_one({"_id": ack["_id"]})
    assert stored is not None and stored["channel_message_id"] == wamid
    assert {k: v for k, v in stored.items() if k != "channel_message_id"} == stored_before
    kept = await app.service.deliveries.find_one({"_id": ack["_id"]})
    assert kept is not None and kept["delivery_status"] == "read"


async def test_a_status_never_moves_back_below_one_stored_on_the_message_itself(app: App) -> None:
    """Messages stored before statuses were kept beside them hold their status themselves; a late, lower status
    does not take it back."""
    reference, ack = await _acknowledged(app, "6281390000002")
    await app.service.messages.update_one(
        {"_id": ack["_id"]},
        {"$set": {"delivery_status": "read", "delivery_rank": 3, "channel_message_id": "wamid.old"}},
    )
    await app.service.record_delivery(
        DeliveryStatus(channel=Channel.WHATSAPP, platform_message_id="wamid.old", status=DeliveryState.DELIVERED)
    )
    shown = _shown((await app.client.get(f"/api/v1/tickets/{reference}")).json(), ack["outbound_id"])
    assert shown["delivery_status"] == "read"


async def test_a_failure_shows_with_its_error_and_a_late_receipt_does_not_hide_it(app: App) -> None:
    reference, ack = await _acknowledged(app, "6281390000003")
    error = DeliveryError(code="131026", title="Message undeliverable")
    await app.service.record_delivery(
        DeliveryStatus(
            channel=Channel.WHATSAPP, outbound_id=ack["outbound_id"], status=DeliveryState.FAILED, error=error
        )
    )
    await app.service.record_delivery(
        DeliveryStatus(channel=Channel.WHATSAPP, outbound_id=ack["outbound_id"], status=DeliveryState.READ)
    )
    shown = _shown((await app.client.get(f"/api/v1/tickets/{reference}")).json(), ack["outbound_id"])
    assert (shown["delivery_status"], shown["delivery_error"]["code"]) == ("failed", "131026")


async def test_a_private_reply_too_long_for_one_message_is_refused_whole_not_cut(app: App) -> None:
    """Meta's private reply is one message (2000 characters on Facebook): a longer one would reach the commenter
    cut, with the ticket saying sent. It is refused, and the comment keeps its one private reply."""
    comment = comment_message("1111_5555", "7005")
    await app.service.handle_inbound(comment)
    ticket = await app.service.tickets.find_one({"conversation_key": comment.conversation_key})
    assert ticket is not None
    url = f"/api/v1/tickets/{ticket['_id']}/replies"
    long = await app.client.post(url, json={"text": "Mohon maaf. " * 200, "private": True})
    assert long.status_code == 422
    assert (long.json()["error_code"], long.json()["limit"]) == ("reply_too_long", 2000)
    assert (await app.client.post(url, json={"text": "Detailnya lewat pesan.", "private": True})).status_code == 202
    private = await outbound_for(app.settings, lambda r: r.recipient == "7005" and r.private)
    assert [r.text for r in private] == ["Detailnya lewat pesan."]


async def test_a_private_reply_the_platform_refused_leaves_the_comment_its_one_private_reply(app: App) -> None:
    comment = comment_message("1111_2222", "7001")
    await app.service.handle_inbound(comment)
    ticket = await app.service.tickets.find_one({"conversation_key": comment.conversation_key})
    assert ticket is not None
    url = f"/api/v1/tickets/{ticket['_id']}/replies"
    first = await app.client.post(url, json={"text": "Detailnya lewat pesan.", "private": True})
    assert first.status_code == 202
    refused = await app.client.post(url, json={"text": "Sekali lagi.", "private": True})
    assert refused.status_code == 409 and refused.json()["error_code"] == "private_reply_refused"

    failure = DeliveryError(code="10900", title="Activity already replied to")
    await app.service.record_delivery(
        DeliveryStatus(
            channel=Channel.FACEBOOK, outbound_id=first.json()["id"], status=DeliveryState.FAILED, error=failure
        )
    )
    assert (await app.client.post(url, json={"text": "Kami coba lagi.", "private": True})).status_code == 202


async def test_a_watermark_moves_every_earlier_reply_up_but_a_failed_one_stays_failed(app: App) -> None:
    psid = "7002"
    await app.service.handle_inbound(
        InboundMessage(
            channel=Channel.FACEBOOK,
            platform_message_id=f"m_{new_id()}",
            conversation_key=psid,
            sender=Sender(channel_user_id=psid, display_name="Warga"),
            text="Sampah di Pasar Lasem belum diangkut",
        )
    )
    ticket = await app.service.tickets.find_one({"conversation_key": psid})
    assert ticket is not None
    reply = await app.client.post(f"/api/v1/tickets/{ticket['_id']}/replies", json={"text": "DLH segera datang."})
    assert reply.status_code == 202
    failure = DeliveryError(code="551", title="This person isn't available right now")
    await app.service.record_delivery(
        DeliveryStatus(
            channel=Channel.FACEBOOK, outbound_id=reply.json()["id"], status=DeliveryState.FAILED, error=failure
        )
    )
    read = DeliveryStatus(
        channel=Channel.FACEBOOK,
        status=DeliveryState.READ,
        watermark=utcnow() + timedelta(seconds=1),
        conversation_key=psid,
    )
    assert await social.record_watermark(app.service, read) == 1  # the acknowledgement; the failed reply stays
    shown = (await app.client.get(f"/api/v1/tickets/{ticket['_id']}")).json()
    statuses = {m["purpose"]: m["delivery_status"] for m in shown["messages"] if m["direction"] == "outbound"}
    assert statuses == {"acknowledgement": "read", "agent_reply": "failed"}
    assert await social.record_watermark(app.service, read) == 0  # nothing moves twice


async def test_a_failed_answer_shows_in_the_inbox_until_another_answer_is_queued(app: App) -> None:
    """The citizen never got it: the desk sees it in the list, counts it, filters on it and reads it in the audit
    trail, until an agent answers again; a failure reported after a newer answer flags nothing."""
    reference, ack = await _acknowledged(app, "6281390000011")
    other, _ = await _acknowledged(app, "6281390000012")

    async def flagged() -> tuple[list[str], int, dict[str, Any] | None]:
        listed = (await app.client.get("/api/v1/tickets", params={"undelivered": "true"})).json()["items"]
        counted = (await app.client.get("/api/v1/stats/counts")).json()["undelivered"]
        mine = next(t for t in (await app.client.get("/api/v1/tickets")).json()["items"] if t["reference"] == reference)
        return [t["reference"] for t in listed], counted, mine["undelivered"]

    assert await flagged() == ([], 0, None)
    undeliverable = DeliveryError(code="131026", title="Message undeliverable")
    await app.service.record_delivery(
        DeliveryStatus(
            channel=Channel.WHATSAPP, outbound_id=ack["outbound_id"], status=DeliveryState.FAILED, error=undeliverable
        )
    )
    listed, counted, undelivered = await flagged()
    assert (listed, counted) == ([reference], 1)
    assert undelivered is not None
    assert (undelivered["purpose"], undelivered["code"]) == ("acknowledgement", "131026")
    not_flagged = (await app.client.get("/api/v1/tickets", params={"undelivered": "false"})).json()["items"]
    assert [t["reference"] for t in not_flagged] == [other]
    audit = (await app.client.get(f"/api/v1/tickets/{reference}/events")).json()["items"]
    assert [e["data"]["code"] for e in audit if e["type"] == "reply_failed"] == ["131026"]

    # The agent answers again: the list no longer says so.
    reply = await app.client.post(f"/api/v1/tickets/{reference}/replies", json={"text": "Nomor Anda kami catat."})
    assert reply.status_code in (200, 201, 202), reply.text
    assert await flagged() == ([], 0, None)
    # That answer is lost with a notifier that died mid-send: flagged again, with what a person must check.
    unknown = DeliveryError(code="outcome_unknown", title="the platform may or may not have taken it")
    failed = DeliveryStatus(
        channel=Channel.WHATSAPP, outbound_id=reply.json()["id"], status=DeliveryState.FAILED, error=unknown
    )
    await app.service.record_delivery(failed)
    listed, counted, undelivered = await flagged()
    assert (listed, counted) == ([reference], 1)
    assert undelivered is not None and (undelivered["purpose"], undelivered["code"]) == (
        "agent_reply",
        "outcome_unknown",
    )

    # A newer answer queued, then an older one's failure reported late (the other ticket's acknowledgement had been
    # sent, then failed): nothing flags the older.
    await app.client.post(f"/api/v1/tickets/{reference}/replies", json={"text": "Petugas kami akan datang."})
    assert await flagged() == ([], 0, None)
    await app.client.post(f"/api/v1/tickets/{other}/replies", json={"text": "Sedang kami periksa."})
    other_ack = await app.service.messages.find_one({"ticket": other, "purpose": "acknowledgement"})
    assert other_ack is not None
    await app.service.record_delivery(
        DeliveryStatus(
            channel=Channel.WHATSAPP,
            outbound_id=other_ack["outbound_id"],
            status=DeliveryState.FAILED,
            error=undeliverable,
        )
    )
    assert await flagged() == ([], 0, None)
