"""Answering well, and the figures of it: canned responses with placeholders, and the desk's statistics."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from suara_shared.events import Channel, InboundMessage, OutboundReply, Sender, new_id
from suara_shared.kafka import BrokerUnavailable
from suara_ticketing.deadlines import WIB
from suara_ticketing.tickets import workflow

from .conftest import App, outbound_for, web_message


def at(app: App, moment: datetime) -> None:
    app.service.now = lambda: moment


async def test_a_canned_response_is_filled_in_for_the_ticket(app: App) -> None:
    at(app, datetime(2026, 8, 14, 10, 0, tzinfo=WIB))
    msg = web_message("Sampah menumpuk di TPS Pasar Lasem", name="Siti Aminah")
    await app.service.handle_inbound(msg)
    ref = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    bad = await app.client.post("/api/v1/canned-responses", json={"title": "x", "text": "Halo {nama}"})
    assert bad.status_code == 422 and "{nama}" in bad.json()["message"]
    canned = await app.client.post(
        "/api/v1/canned-responses",
        json={
            "title": "Diteruskan",
            "text": "Yth. {name}, laporan {reference} sudah diteruskan ke {department} "
            "dan ditindaklanjuti paling lambat {due_date}.",
        },
    )
    assert canned.status_code == 201
    listed = (await app.client.get("/api/v1/canned-responses")).json()["items"]
    assert [c["title"] for c in listed] == ["Diteruskan"]
    sent = await app.client.post(f"/api/v1/tickets/{ref}/replies", json={"canned_id": canned.json()["id"]})
    assert sent.status_code == 202
    replies = await outbound_for(
        app.settings, lambda r: r.purpose == "agent_reply" and r.recipient == msg.conversation_key
    )
    assert replies[0].text == (
        f"Yth. Siti Aminah, laporan {ref} sudah diteruskan ke Dinas Lingkungan Hidup "
        "dan ditindaklanjuti paling lambat 24-08-2026."
    )
    # The same text edited by the agent (the console sends it as text) is filled in too, never sent as "{reference}".
    edited = "Laporan {reference} sudah kami teruskan ke {department}. Terima kasih, {name}."
    assert (await app.client.post(f"/api/v1/tickets/{ref}/replies", json={"text": edited})).status_code == 202
    replies = await outbound_for(
        app.settings, lambda r: r.purpose == "agent_reply" and r.recipient == msg.conversation_key, expect=2
    )
    assert replies[1].text == f"Laporan {ref} sudah kami teruskan ke Dinas Lingkungan Hidup. Terima kasih, Siti Aminah."
    both = await app.client.post(f"/api/v1/tickets/{ref}/replies", json={"text": "x", "canned_id": new_id()})
    assert both.status_code == 422
    gone = await app.client.post(f"/api/v1/tickets/{ref}/replies", json={"canned_id": new_id()})
    assert gone.status_code == 404


async def test_stats_count_times_in_working_hours_deadlines_and_satisfaction(app: App) -> None:
    monday = datetime(2026, 11, 2, 9, 0, tzinfo=WIB)
    at(app, monday)
    phone = f"62815{new_id()[:8]}"
    await app.service.handle_inbound(
        InboundMessage(
            channel=Channel.WHATSAPP,
            platform_message_id=f"wamid.{new_id()}",
            conversation_key=phone,
            sender=Sender(channel_user_id=phone),
            text="Air PDAM mati di Desa Soditan",
        )
    )
    await app.service.handle_inbound(web_message("Banjir di Desa Tasikagung, air masuk rumah"))
    refs = {t["channel"]: t["reference"] for t in (await app.client.get("/api/v1/tickets")).json()["items"]}

    at(app, datetime(2026, 11, 2, 11, 0, tzinfo=WIB))
    await app.client.post(f"/api/v1/tickets/{refs['whatsapp']}/replies", json={"text": "Kami cek ke lokasi"})
    at(app, datetime(2026, 11, 2, 13, 0, tzinfo=WIB))
    await app.client.post(f"/api/v1/tickets/{refs['web']}/replies", json={"text": "Tim BPBD meluncur"})
    at(app, datetime(2026, 11, 3, 10, 0, tzinfo=WIB))  # Tuesday: 7 office hours Monday + 2 Tuesday
    await app.client.patch(f"/api/v1/tickets/{refs['whatsapp']}", json={"status": "resolved"})
    await app.service.handle_inbound(
        InboundMessage(
            channel=Channel.WHATSAPP,
            platform_message_id=f"wamid.{new_id()}",
            conversation_key=phone,
            sender=Sender(channel_user_id=phone),
            text="5",
        )
    )
    at(app, datetime(2026, 11, 4, 9, 0, tzinfo=WIB))  # the urgent flood ticket was due Tuesday night
    await workflow.sweep(app.service)

    stats = (await app.client.get("/api/v1/stats")).json()
    assert stats["total"] == 2
    assert stats["by_status"] == {"resolved": 1, "open": 1}
    assert stats["by_channel"] == {"whatsapp": 1, "web": 1}
    assert stats["by_department"] == {"PDAM": 1, "BPBD": 1}
    assert stats["by_kecamatan"] == {"Lasem": 1, "Rembang": 1}  # Soditan lies in Lasem; the form said Rembang
    assert stats["by_category"] == {"air_bersih": 1, "bencana": 1}
    assert stats["first_response"] == {"count": 2, "median": 3.0, "p90": 3.8}
    assert stats["resolution"] == {"count": 1, "median": 9.0, "p90": 9.0}
    assert stats["within_deadline"] == {"count": 2, "within": 1, "share": 0.5}
    assert stats["satisfaction"]["average"] == 5.0 and stats["satisfaction"]["distribution"]["5"] == 1
    only_web = (await app.client.get("/api/v1/stats", params={"department": "BPBD"})).json()
    assert only_web["total"] == 1
    empty = (await app.client.get("/api/v1/stats", params={"created_from": "2027-01-01"})).json()
    assert empty["total"] == 0 and empty["first_response"]["median"] is None
    # The inbox's counts (asked for at every refresh) are the figures' own, for the same filters.
    for params, figures in (({}, stats), ({"department": "BPBD"}, only_web), ({"created_from": "2027-01-01"}, empty)):
        counts = (await app.client.get("/api/v1/stats/counts", params=params)).json()
        assert counts == {"total": figures["total"], "by_status": figures["by_status"], "undelivered": 0}
    assert (await app.client.get("/api/v1/stats/counts", params={"department": '{"$ne": 1}'})).status_code == 422
    assert (await app.client.get("/api/v1/stats", params={"department": '{"$ne": 1}'})).status_code == 422


async def test_an_agents_reply_while_the_broker_is_away_is_kept_and_sent_once_by_the_relay(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The response team can answer while the broker is away: the reply is accepted and stored, and the outbox
    relay sends it (and the ticket's audit event) once the broker is back, exactly once."""
    msg = web_message("Lampu jalan mati di Jalan Pemuda Rembang", name="Budi Santoso")
    await app.service.handle_inbound(msg)
    ref = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]

    async def away(*args: Any, **kwargs: Any) -> None:
        raise BrokerUnavailable("broker away")

    monkeypatch.setattr(app.service.publisher, "send_raw", away)
    sent = await app.client.post(f"/api/v1/tickets/{ref}/replies", json={"text": "Petugas PLN menuju lokasi."})
    monkeypatch.undo()
    assert sent.status_code == 202
    ticket = (await app.client.get(f"/api/v1/tickets/{ref}")).json()
    assert [m["text"] for m in ticket["messages"] if m["purpose"] == "agent_reply"] == ["Petugas PLN menuju lokasi."]

    def ours(reply: OutboundReply) -> bool:
        return reply.purpose == "agent_reply" and reply.recipient == msg.conversation_key

    assert await outbound_for(app.settings, ours, expect=0, timeout_ms=1000) == []
    assert await app.service.publish_pending({}, older_than=timedelta(0)) == 2  # the reply and its audit event
    assert await app.service.publish_pending({}, older_than=timedelta(0)) == 0
    replies = await outbound_for(app.settings, ours, expect=2, timeout_ms=2000)
    assert [r.text for r in replies] == ["Petugas PLN menuju lokasi."]
