"""The lifecycle as the desk lives it: valid transitions, the audit trail, reopening, linked follow-ups, automatic
closing, deadline breaches, dispositions of agencies and the satisfaction survey."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import REGISTRY

from suara_shared.events import Channel, InboundMessage, MessageKind, ReplyContext, Sender, new_id
from suara_ticketing.deadlines import WIB
from suara_ticketing.tickets import workflow

from .conftest import App, outbound_for, web_message, whatsapp_message

MONDAY = datetime(2026, 11, 2, 9, 0, tzinfo=WIB)


def wa(text: str, phone: str) -> InboundMessage:
    return whatsapp_message(text, number=phone, name="Pak Karno")


def reaction(phone: str, emoji: str | None, *, to: str | None = None) -> InboundMessage:
    """The citizen's reaction on WhatsApp (`None`: one taken back), to the message `to`."""
    return InboundMessage(
        channel=Channel.WHATSAPP,
        platform_message_id=f"wamid.{new_id()}",
        conversation_key=phone,
        sender=Sender(channel_user_id=phone, display_name="Pak Karno"),
        kind=MessageKind.REACTION,
        text=emoji,
        reply_context=ReplyContext(in_reply_to=to) if to else None,
    )


def at(app: App, moment: datetime) -> None:
    app.service.now = lambda: moment


async def _only_reference(app: App) -> str:
    items = (await app.client.get("/api/v1/tickets")).json()["items"]
    return str(items[0]["reference"])


async def test_each_transition_is_validated_and_kept_in_the_audit_trail(app: App) -> None:
    await app.service.handle_inbound(web_message())
    ref = await _only_reference(app)
    for target in ("open", "pending", "resolved", "closed"):
        response = await app.client.patch(f"/api/v1/tickets/{ref}", json={"status": target})
        assert response.status_code == 200 and response.json()["status"] == target
    again = await app.client.patch(f"/api/v1/tickets/{ref}", json={"status": "open"})
    assert again.status_code == 409 and again.json()["error_code"] == "ticket_closed"
    assert (await app.client.post(f"/api/v1/tickets/{ref}/replies", json={"text": "Halo"})).status_code == 409

    await app.service.handle_inbound(web_message())
    fresh = await _only_reference(app)
    await app.client.patch(f"/api/v1/tickets/{fresh}", json={"status": "pending"})
    await app.client.patch(f"/api/v1/tickets/{fresh}", json={"status": "resolved"})
    wrong = await app.client.patch(f"/api/v1/tickets/{fresh}", json={"status": "pending"})
    assert wrong.status_code == 409 and wrong.json()["error_code"] == "invalid_transition"
    assert "closed, open" in wrong.json()["message"]

    trail = (await app.client.get(f"/api/v1/tickets/{ref}/events")).json()["items"]
    assert [e["type"] for e in trail][:2] == ["created", "message_added"]
    changes = [(e["actor"], e["data"]["status"]) for e in trail if e["type"] == "updated"]
    assert changes == [
        ("admin", ["new", "open"]),
        ("admin", ["open", "pending"]),
        ("admin", ["pending", "resolved"]),
        ("admin", ["resolved", "closed"]),
    ]
    assert all(e["at"] for e in trail)
    assert (await app.client.get("/api/v1/tickets/RMB-2026-999999/events")).status_code == 404

    # The first reply opens a new ticket: the trail says so with the reply; a later reply changes no status.
    await app.service.handle_inbound(web_message())
    answered = await _only_reference(app)
    for text in ("Kami cek besok", "Sudah kami cek"):
        assert (await app.client.post(f"/api/v1/tickets/{answered}/replies", json={"text": text})).status_code == 202
    trail = (await app.client.get(f"/api/v1/tickets/{answered}/events")).json()["items"]
    replies = [e["data"].get("status") for e in trail if e["type"] == "reply_queued"]
    assert replies == [["new", "open"], None]


async def test_citizen_writing_soon_after_resolution_reopens_the_ticket(app: App) -> None:
    phone = f"62812{new_id()[:8]}"
    at(app, MONDAY)
    await app.service.handle_inbound(wa("Jalan di Desa Leteh berlubang besar", phone))
    ref = await _only_reference(app)
    await app.client.patch(f"/api/v1/tickets/{ref}", json={"status": "resolved"})
    at(app, datetime(2026, 11, 6, 9, 0, tzinfo=WIB))  # Friday: 3 working days later, inside the window of 5
    await app.service.handle_inbound(wa("Lubangnya masih ada, belum ditambal", phone))
    items = (await app.client.get("/api/v1/tickets")).json()["items"]
    assert [(t["reference"], t["status"]) for t in items] == [(ref, "open")]
    trail = (await app.client.get(f"/api/v1/tickets/{ref}/events")).json()["items"]
    assert ("citizen", ["resolved", "open"]) in [(e["actor"], e["data"].get("status")) for e in trail]


async def test_after_the_window_the_citizen_gets_a_new_ticket_linked_to_the_old(app: App) -> None:
    phone = f"62812{new_id()[:8]}"
    at(app, MONDAY)
    await app.service.handle_inbound(wa("Sampah menumpuk di TPS Pasar Kragan", phone))
    old = await _only_reference(app)
    await app.client.patch(f"/api/v1/tickets/{old}", json={"status": "resolved"})
    at(app, datetime(2026, 11, 10, 9, 0, tzinfo=WIB))  # Tuesday a week later: 5 working days have passed
    await app.service.handle_inbound(wa("Sampahnya menumpuk lagi", phone))
    items = {t["reference"]: t for t in (await app.client.get("/api/v1/tickets")).json()["items"]}
    assert len(items) == 2 and items[old]["status"] == "resolved"
    new = next(r for r in items if r != old)
    assert items[new]["previous_reference"] == old and items[new]["status"] == "new"
    acks = await outbound_for(app.settings, lambda r: r.recipient == phone and r.purpose == "acknowledgement", expect=2)
    assert [a.ticket_reference for a in acks] == [old, new]
    assert old in acks[1].text  # the citizen is told which report this follows


async def test_resolved_tickets_close_by_themselves_after_ten_working_days_without_reply(app: App) -> None:
    at(app, MONDAY)
    await app.service.handle_inbound(web_message())
    ref = await _only_reference(app)
    await app.client.patch(f"/api/v1/tickets/{ref}", json={"status": "resolved"})
    at(app, datetime(2026, 11, 16, 12, 0, tzinfo=WIB))  # 9 working days have ended
    assert (await workflow.sweep(app.service))["closed"] == 0
    at(app, datetime(2026, 11, 17, 12, 0, tzinfo=WIB))  # 10 have ended
    assert (await workflow.sweep(app.service))["closed"] == 1
    ticket = (await app.client.get(f"/api/v1/tickets/{ref}")).json()
    assert ticket["status"] == "closed" and ticket["closed_at"]
    trail = (await app.client.get(f"/api/v1/tickets/{ref}/events")).json()["items"]
    assert trail[-1]["actor"] == "system" and "10 working days" in trail[-1]["data"]["reason"]


async def test_a_breach_is_detected_once_emitted_counted_and_shown_to_supervisors(app: App) -> None:
    at(app, MONDAY)
    await app.service.handle_inbound(web_message("Pohon tumbang menutup jalan di Kecamatan Sulang, darurat"))
    await app.service.handle_inbound(web_message("Sampah di TPS Lasem belum diangkut"))
    tickets = {t["category"]: t for t in (await app.client.get("/api/v1/tickets")).json()["items"]}
    urgent, normal = tickets["bencana"], tickets["lingkungan"]
    labels = {"department": "BPBD", "priority": "urgent"}
    await workflow.sweep(app.service)  # nothing is overdue yet
    # Every department's count is there from the first sweep, at 0: a series born at 1 shows Prometheus no
    # increase, and the first breach after a restart would raise no alert.
    before = REGISTRY.get_sample_value("suara_ticket_deadline_breaches_total", labels)
    assert before is not None
    triage = {"department": "triage", "priority": "low"}
    assert REGISTRY.get_sample_value("suara_ticket_deadline_breaches_total", triage) is not None

    at(app, datetime(2026, 11, 3, 15, 0, tzinfo=WIB))  # Tuesday afternoon: the urgent one is due tonight
    overview = (await app.client.get("/api/v1/deadlines", params={"within_working_days": 0})).json()
    assert [t["reference"] for t in overview["due_soon"]] == [urgent["reference"]] and overview["overdue"] == []

    at(app, datetime(2026, 11, 4, 8, 0, tzinfo=WIB))
    assert (await workflow.sweep(app.service))["breached"] == 1
    assert (await workflow.sweep(app.service))["breached"] == 0  # counted once
    assert REGISTRY.get_sample_value("suara_ticket_deadline_breaches_total", labels) == before + 1
    assert REGISTRY.get_sample_value("suara_tickets_by_status", {"status": "new"}) is not None

    overview = (await app.client.get("/api/v1/deadlines")).json()
    assert [t["reference"] for t in overview["overdue"]] == [urgent["reference"]]
    overdue = (await app.client.get("/api/v1/tickets", params={"overdue": "true"})).json()["items"]
    assert [t["reference"] for t in overdue] == [urgent["reference"]] and overdue[0]["overdue"] is True
    on_time = (await app.client.get("/api/v1/tickets", params={"overdue": "false"})).json()["items"]
    assert [t["reference"] for t in on_time] == [normal["reference"]]
    trail = (await app.client.get(f"/api/v1/tickets/{urgent['reference']}/events")).json()["items"]
    assert [e for e in trail if e["type"] == "deadline_breached"]


async def test_agencies_accept_decline_with_a_reason_or_extend_the_deadline(app: App) -> None:
    at(app, MONDAY)
    await app.service.handle_inbound(web_message("Sampah menumpuk di saluran air depan rumah"))
    ref = await _only_reference(app)
    ticket = (await app.client.get(f"/api/v1/tickets/{ref}")).json()
    assert ticket["department"] == "DLH"
    url = f"/api/v1/tickets/{ref}/disposition"

    assert (await app.client.post(url, json={"action": "decline"})).status_code == 422  # a reason is required
    declined = await app.client.post(
        url, json={"action": "decline", "reason": "Saluran air kewenangan DPUPR", "department": "DPUPR"}
    )
    assert declined.status_code == 200 and declined.json()["department"] == "DPUPR"
    assert declined.json()["declines"][0]["reason"] == "Saluran air kewenangan DPUPR"
    back = await app.client.post(url, json={"action": "decline", "reason": "Bukan kewenangan kami"})
    assert back.json()["department"] is None  # back to triage
    triage = (await app.client.get("/api/v1/tickets", params={"triage": "true"})).json()["items"]
    assert [t["reference"] for t in triage] == [ref]
    assert (await app.client.post(url, json={"action": "accept"})).status_code == 409  # triage routes first

    await app.client.patch(f"/api/v1/tickets/{ref}", json={"department": "DPUPR"})
    accepted = (await app.client.post(url, json={"action": "accept"})).json()
    assert accepted["status"] == "open" and accepted["accepted_at"]
    due = datetime.fromisoformat(accepted["due_at"])
    extended = await app.client.post(url, json={"action": "extend", "working_days": 3, "reason": "Menunggu alat berat"})
    new_due = datetime.fromisoformat(extended.json()["due_at"]).astimezone(WIB)
    assert (new_due.date() - due.astimezone(WIB).date()).days == 3  # Mon 9 → Thu 12 November
    trail = (await app.client.get(f"/api/v1/tickets/{ref}/events")).json()["items"]
    actions = [e["data"]["action"] for e in trail if e["type"] == "disposition"]
    assert actions == ["decline", "decline", "accept", "extend"]


async def test_satisfaction_survey_after_resolution_records_the_score_without_reopening(app: App) -> None:
    phone = f"62813{new_id()[:8]}"
    await app.service.handle_inbound(wa("Lampu jalan di Desa Pacar mati", phone))
    ref = await _only_reference(app)
    await app.client.post(f"/api/v1/tickets/{ref}/replies", json={"text": "Lampu sudah diganti petugas Dishub."})
    await app.client.patch(f"/api/v1/tickets/{ref}", json={"status": "resolved"})
    asked = await outbound_for(app.settings, lambda r: r.recipient == phone and r.purpose == "resolution")
    assert len(asked) == 1 and "1 (sangat tidak puas) sampai 5" in asked[0].text and asked[0].channel == "whatsapp"

    await app.service.handle_inbound(wa("4", phone))
    ticket = (await app.client.get(f"/api/v1/tickets/{ref}")).json()
    assert ticket["status"] == "resolved" and ticket["satisfaction"] == 4
    assert len((await app.client.get("/api/v1/tickets")).json()["items"]) == 1  # no new ticket either
    thanks = await outbound_for(app.settings, lambda r: r.recipient == phone and r.purpose == "survey")
    assert len(thanks) == 1 and "4 dari 5" in thanks[0].text


async def test_a_survey_is_answered_once_and_only_while_it_is_asked(app: App) -> None:
    """A second "5" does not overwrite the citizen's "2"; and past the survey's 14 days, a "4" is an ordinary
    message, not a score (the finished ticket keeps none)."""
    at(app, MONDAY)
    early, late = f"62813{new_id()[:8]}", f"62814{new_id()[:8]}"
    for phone in (early, late):
        await app.service.handle_inbound(wa("Jalan berlubang di Desa Tireman", phone))
    items = (await app.client.get("/api/v1/tickets")).json()["items"]
    ref = {item["citizen"]["channel_user_id"]: item["reference"] for item in items}
    for phone in (early, late):
        assert (await app.client.patch(f"/api/v1/tickets/{ref[phone]}", json={"status": "resolved"})).status_code == 200

    await app.service.handle_inbound(wa("2", early))
    await app.service.handle_inbound(wa("5", early))
    assert (await app.client.get(f"/api/v1/tickets/{ref[early]}")).json()["satisfaction"] == 2

    at(app, datetime(2026, 11, 20, 9, 0, tzinfo=WIB))  # 18 days after the survey was asked
    await app.service.handle_inbound(wa("4", late))
    items = (await app.client.get("/api/v1/tickets")).json()["items"]
    theirs = [i["reference"] for i in items if i["citizen"]["channel_user_id"] == late]
    assert ref[late] in theirs
    for reference in theirs:
        assert (await app.client.get(f"/api/v1/tickets/{reference}")).json()["satisfaction"] is None


async def _resolved(app: App, phone: str, text: str = "Lampu jalan di Desa Pacar mati") -> str:
    await app.service.handle_inbound(wa(text, phone))
    items = (await app.client.get("/api/v1/tickets")).json()["items"]
    reference = next(i["reference"] for i in items if i["citizen"]["channel_user_id"] == phone)
    assert (await app.client.patch(f"/api/v1/tickets/{reference}", json={"status": "resolved"})).is_success
    return reference


async def test_a_survey_answer_is_taken_as_citizens_write_it(app: App) -> None:
    answers = {"5 pak, matur nuwun": 5, "Nilai 4": 4, "⭐⭐⭐": 3, "lima": 5, "2/5": 2, "4 dari 5 🙏": 4}
    phones = {text: f"62815{new_id()[:8]}" for text in answers}
    references = {text: await _resolved(app, phones[text]) for text in answers}
    for text, phone in phones.items():
        await app.service.handle_inbound(wa(text, phone))
    for text, score in answers.items():
        ticket = (await app.client.get(f"/api/v1/tickets/{references[text]}")).json()
        assert (ticket["status"], ticket["satisfaction"]) == ("resolved", score), text
        inbound = [m["text"] for m in ticket["messages"] if m["direction"] == "inbound"]
        assert inbound[-1] == text  # the answer is on the ticket, as written
    thanked = await outbound_for(
        app.settings, lambda r: r.recipient in phones.values() and r.purpose == "survey", expect=len(answers)
    )
    assert sorted(r.text.split("(")[1][0] for r in thanked) == sorted(str(s) for s in answers.values())


async def test_thanks_or_a_reaction_after_a_resolution_reopen_nothing_and_the_survey_stays_open(app: App) -> None:
    phone = f"62816{new_id()[:8]}"
    reference = await _resolved(app, phone)
    await app.service.handle_inbound(wa("Terima kasih, sudah beres pak 🙏", phone))
    resolution = (await outbound_for(app.settings, lambda r: r.recipient == phone and r.purpose == "resolution"))[0]
    await app.service.handle_inbound(reaction(phone, "👍", to=resolution.outbound_id))
    ticket = (await app.client.get(f"/api/v1/tickets/{reference}")).json()
    assert ticket["status"] == "resolved"
    assert [m["kind"] for m in ticket["messages"] if m["direction"] == "inbound"] == ["text", "text", "reaction"]
    assert len((await app.client.get("/api/v1/tickets")).json()["items"]) == 1

    await app.service.handle_inbound(wa("4", phone))  # the survey is still asked
    assert (await app.client.get(f"/api/v1/tickets/{reference}")).json()["satisfaction"] == 4
    await app.service.handle_inbound(wa("3 lubang belum ditambal", phone))  # a number inside a message is a message
    ticket = (await app.client.get(f"/api/v1/tickets/{reference}")).json()
    assert (ticket["status"], ticket["satisfaction"]) == ("open", 4)


async def test_displeasure_without_words_after_a_resolution_reopens_the_ticket(app: App) -> None:
    """👍 is thanks; "👎", "😡" or "???" answering the resolution says the problem is not solved: the desk must hear
    it, on a ticket open again, not find it kept quietly on one about to close by itself."""
    for text in ("👎", "😡😡", "???"):
        phone = f"62819{new_id()[:8]}"
        reference = await _resolved(app, phone)
        await app.service.handle_inbound(wa(text, phone))
        assert (await app.client.get(f"/api/v1/tickets/{reference}")).json()["status"] == "open", text


async def test_a_reaction_under_a_closed_ticket_opens_no_new_one(app: App) -> None:
    phone = f"62817{new_id()[:8]}"
    at(app, MONDAY)
    reference = await _resolved(app, phone)
    at(app, datetime(2026, 11, 17, 12, 0, tzinfo=WIB))  # 10 working days: closed by the sweep
    assert (await workflow.sweep(app.service))["closed"] >= 1
    for emoji in ("👍", None):  # a reaction, then the same taken back (WhatsApp's empty emoji)
        await app.service.handle_inbound(reaction(phone, emoji))
    items = [
        i for i in (await app.client.get("/api/v1/tickets")).json()["items"] if i["citizen"]["channel_user_id"] == phone
    ]
    assert [(i["reference"], i["status"]) for i in items] == [(reference, "closed")]
    acks = await outbound_for(app.settings, lambda r: r.recipient == phone and r.purpose == "acknowledgement")
    assert len(acks) == 1  # the first complaint's only


async def test_a_number_answering_the_agent_on_a_new_ticket_is_no_score_for_the_old_one(app: App) -> None:
    """Ticket A was resolved and its survey asked; a week later the citizen reports something else (B), the agent
    asks "Ada berapa lubang?", and the citizen answers "3": that is B's, not A's satisfaction."""
    phone = f"62818{new_id()[:8]}"
    at(app, MONDAY)
    old = await _resolved(app, phone, "Lampu jalan di Desa Pacar mati")
    at(app, datetime(2026, 11, 10, 9, 0, tzinfo=WIB))  # past the 5 working days to reopen, within the survey's 14
    await app.service.handle_inbound(wa("Jalan ke Pasar Kragan berlubang", phone))
    new = next(
        i["reference"] for i in (await app.client.get("/api/v1/tickets")).json()["items"] if i["reference"] != old
    )
    await app.client.post(f"/api/v1/tickets/{new}/replies", json={"text": "Ada berapa lubang, Pak?"})

    await app.service.handle_inbound(wa("3", phone))
    assert (await app.client.get(f"/api/v1/tickets/{old}")).json()["satisfaction"] is None
    answer = (await app.client.get(f"/api/v1/tickets/{new}")).json()["messages"]
    assert [m["text"] for m in answer if m["direction"] == "inbound"][-1] == "3"
    survey = await outbound_for(app.settings, lambda r: r.recipient == phone and r.purpose == "survey", expect=0)
    assert survey == []
