"""Inbound messages become tickets: threading, references, acknowledgements, idempotency, status queries."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from suara_shared.events import Channel, DeliveryState, DeliveryStatus, InboundMessage, Sender, new_id

from .conftest import App, comment_message, outbound_for, web_message, whatsapp_message

REFERENCE = re.compile(r"^RMB-(\d{4})-\d{6}$")


async def test_first_message_opens_ticket_and_queues_acknowledgement_naming_it(app: App) -> None:
    msg = web_message()
    await app.service.handle_inbound(msg)

    page = (await app.client.get("/api/v1/tickets")).json()
    assert len(page["items"]) == 1
    ticket = page["items"][0]
    match = REFERENCE.match(ticket["reference"])
    assert match and int(match.group(1)) == datetime.now(ZoneInfo("Asia/Jakarta")).year
    assert ticket["status"] == "new" and ticket["channel"] == "web"
    assert ticket["citizen"]["display_name"] == "Siti Aminah"

    acks = await outbound_for(app.settings, lambda r: r.recipient == msg.sender.channel_user_id)
    assert len(acks) == 1
    assert ticket["reference"] in acks[0].text and "Terima kasih" in acks[0].text
    assert acks[0].channel == Channel.WEB and acks[0].recipient == msg.sender.channel_user_id

    full = (await app.client.get(f"/api/v1/tickets/{ticket['reference']}")).json()
    assert [m["direction"] for m in full["messages"]] == ["inbound", "outbound"]
    assert full["messages"][1]["delivery_status"] == "queued"


async def test_same_message_twice_is_one_message_on_one_ticket_with_one_acknowledgement(app: App) -> None:
    msg = web_message()
    for _ in range(3):
        await app.service.handle_inbound(msg)
    page = (await app.client.get("/api/v1/tickets")).json()
    assert len(page["items"]) == 1
    reference = page["items"][0]["reference"]
    full = (await app.client.get(f"/api/v1/tickets/{reference}")).json()
    assert [m["direction"] for m in full["messages"]] == ["inbound", "outbound"]
    assert len(await outbound_for(app.settings, lambda r: r.recipient == msg.sender.channel_user_id)) == 1


async def test_later_messages_join_the_open_ticket_of_their_conversation(app: App) -> None:
    conversation = new_id()
    await app.service.handle_inbound(web_message(conversation=conversation))
    await app.service.handle_inbound(web_message("Tambahan: lubangnya makin besar", conversation=conversation))
    await app.service.handle_inbound(web_message("Sampah menumpuk di pasar Lasem"))
    items = (await app.client.get("/api/v1/tickets")).json()["items"]
    assert len(items) == 2
    threaded = next(t for t in items if t["message_count"] == 3)  # two inbound, one acknowledgement
    full = (await app.client.get(f"/api/v1/tickets/{threaded['reference']}")).json()
    texts = [m["text"] for m in full["messages"] if m["direction"] == "inbound"]
    assert texts == ["Jalan di Desa Tireman rusak parah, mohon segera diperbaiki", "Tambahan: lubangnya makin besar"]


async def test_message_after_close_opens_a_new_ticket(app: App) -> None:
    conversation = new_id()
    await app.service.handle_inbound(web_message(conversation=conversation))
    first = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    assert (await app.client.patch(f"/api/v1/tickets/{first}", json={"status": "closed"})).status_code == 200
    await app.service.handle_inbound(web_message("Jalan rusak lagi setelah diperbaiki", conversation=conversation))
    refs = [t["reference"] for t in (await app.client.get("/api/v1/tickets")).json()["items"]]
    assert len(refs) == 2 and first in refs


async def test_status_query_is_answered_with_the_status_and_opens_no_ticket(app: App) -> None:
    await app.service.handle_inbound(web_message())
    reference = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    await app.client.patch(f"/api/v1/tickets/{reference}", json={"status": "open", "department": "DPUPR"})

    asker = f"62812{new_id()[:8]}"
    query = InboundMessage(
        channel=Channel.WHATSAPP,
        platform_message_id=f"wamid.{new_id()}",
        conversation_key=asker,
        sender=Sender(channel_user_id=asker),
        text=f"  CEK {reference.lower()} ",
    )
    await app.service.handle_inbound(query)
    unknown = InboundMessage(
        channel=Channel.WHATSAPP,
        platform_message_id=f"wamid.{new_id()}",
        conversation_key=asker,
        sender=Sender(channel_user_id=asker),
        text="status RMB-2020-999999",
    )
    await app.service.handle_inbound(unknown)

    assert len((await app.client.get("/api/v1/tickets")).json()["items"]) == 1
    answers = await outbound_for(app.settings, lambda r: r.recipient == asker, expect=2)
    assert len(answers) == 2
    assert reference in answers[0].text and "Sedang diproses" in answers[0].text and "DPUPR" in answers[0].text
    assert answers[0].channel == Channel.WHATSAPP
    assert "tidak kami temukan" in answers[1].text


async def test_delivery_status_never_moves_backwards(app: App) -> None:
    await app.service.handle_inbound(web_message())
    reference = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    accepted = await app.client.post(f"/api/v1/tickets/{reference}/replies", json={"text": "Segera kami cek"})
    outbound_id = accepted.json()["id"]
    for state in (DeliveryState.READ, DeliveryState.SENT, DeliveryState.DELIVERED):
        await app.service.record_delivery(
            DeliveryStatus(
                channel=Channel.WEB, outbound_id=outbound_id, platform_message_id=f"p-{outbound_id}", status=state
            )
        )
    full = (await app.client.get(f"/api/v1/tickets/{reference}")).json()
    reply = next(m for m in full["messages"] if m["id"] == outbound_id)
    assert reply["delivery_status"] == "read"
    assert reply["channel_message_id"] == f"p-{outbound_id}"


async def test_platform_status_before_our_send_result_is_kept_and_applied(app: App) -> None:
    await app.service.handle_inbound(web_message())
    reference = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    outbound_id = (await app.client.post(f"/api/v1/tickets/{reference}/replies", json={"text": "Baik"})).json()["id"]
    platform_id = f"wamid.{new_id()}"
    # The platform's "delivered" webhook overtakes the notifier's own "sent" report.
    await app.service.record_delivery(
        DeliveryStatus(channel=Channel.WEB, platform_message_id=platform_id, status=DeliveryState.DELIVERED)
    )
    await app.service.record_delivery(
        DeliveryStatus(
            channel=Channel.WEB, outbound_id=outbound_id, platform_message_id=platform_id, status=DeliveryState.SENT
        )
    )
    full = (await app.client.get(f"/api/v1/tickets/{reference}")).json()
    assert next(m for m in full["messages"] if m["id"] == outbound_id)["delivery_status"] == "delivered"


async def test_a_status_query_is_understood_as_citizens_type_it_on_any_channel(app: App) -> None:
    await app.service.handle_inbound(web_message())
    reference = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    number = int(reference.rsplit("-", 1)[1])
    year = reference.split("-")[1]
    asked = [
        f"cek no {reference}",
        f"Cek laporan {reference.lower()} pak 🙏",
        f"cek: {reference}",
        reference,
        f"cek RMB-{year}-{number}",
        f"cek RMB {year} {number:06d}",
        f"status laporan nomor RMB/{year}/{number:06d} terima kasih bu",
    ]
    askers = [f"62813{new_id()[:8]}" for _ in asked]
    for asker, text in zip(askers, asked, strict=True):
        await app.service.handle_inbound(whatsapp_message(text, number=asker))
    commenter = comment_message("1111_4444", "7004", text=f"cek {reference}")
    await app.service.handle_inbound(commenter)
    # A complaint that names its reference is a complaint: it opens a ticket, it is no question.
    complainer = f"62814{new_id()[:8]}"
    await app.service.handle_inbound(whatsapp_message(f"{reference} jalannya belum juga diperbaiki", number=complainer))

    items = (await app.client.get("/api/v1/tickets")).json()["items"]
    assert sorted(i["citizen"]["channel_user_id"] for i in items[:-1]) == [complainer]  # one ticket more: theirs
    answers = await outbound_for(
        app.settings, lambda r: r.purpose == "status" and r.recipient in {*askers, "7004"}, expect=len(asked) + 1
    )
    assert len(answers) == len(asked) + 1
    assert all(f"Status laporan {reference}: Baru diterima" in a.text for a in answers)
    (under_comment,) = [a for a in answers if a.channel == Channel.FACEBOOK]
    assert under_comment.reply_to == commenter.platform_message_id
