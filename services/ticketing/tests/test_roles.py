"""Roles: admins manage hashed tokens, agents see only their department, confidential reporters stay hidden."""

from __future__ import annotations

import hashlib
from pathlib import Path

from suara_devstack.infra import EmbeddedInfra
from suara_shared import db
from suara_shared.events import Channel, InboundMessage, Sender, new_id
from suara_ticketing import routing

from .conftest import App, running, settings_for, web_message, whatsapp_message


async def _token(app: App, name: str, role: str, department: str | None = None) -> dict[str, str]:
    body = {"name": name, "role": role, **({"department": department} if department else {})}
    created = await app.client.post("/api/v1/tokens", json=body)
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['token']}"}


async def test_admin_creates_lists_and_revokes_tokens_stored_only_as_hashes(app: App) -> None:
    created = (await app.client.post("/api/v1/tokens", json={"name": "ani", "role": "supervisor"})).json()
    token = created["token"]
    stored = await app.service.db["api_tokens"].find_one({"name": "ani"})
    assert stored is not None and token not in str(stored)
    assert stored["hash"] == hashlib.sha256(token.encode()).hexdigest()
    listed = (await app.client.get("/api/v1/tokens")).json()["items"]
    assert [t["name"] for t in listed] == ["ani"] and "token" not in listed[0]

    as_ani = {"Authorization": f"Bearer {token}"}
    assert (await app.client.get("/api/v1/tickets", headers=as_ani)).status_code == 200
    assert (await app.client.get("/api/v1/tokens", headers=as_ani)).status_code == 403  # admins only
    forbidden = await app.client.post("/api/v1/tokens", headers=as_ani, json={"name": "x", "role": "admin"})
    assert forbidden.status_code == 403 and forbidden.json()["error_code"] == "forbidden"
    taken = await app.client.post("/api/v1/tokens", json={"name": "ani", "role": "agent"})
    assert taken.status_code == 409
    unknown = await app.client.post("/api/v1/tokens", json={"name": "b", "role": "agent", "department": "NASA"})
    assert unknown.status_code == 422

    assert (await app.client.delete(f"/api/v1/tokens/{created['id']}")).json()["revoked_at"]
    assert (await app.client.get("/api/v1/tickets", headers=as_ani)).status_code == 401


async def test_an_agent_sees_and_changes_only_their_departments_tickets(app: App) -> None:
    await app.service.handle_inbound(web_message("Air PDAM tidak mengalir sejak kemarin"))
    await app.service.handle_inbound(web_message("Jalan berlubang di depan SD Sulang"))
    items = {t["department"]: t["reference"] for t in (await app.client.get("/api/v1/tickets")).json()["items"]}
    water, road = items["PDAM"], items["DPUPR"]
    pdam = await _token(app, "budi.pdam", "agent", "PDAM")

    listed = (await app.client.get("/api/v1/tickets", headers=pdam)).json()["items"]
    assert [t["reference"] for t in listed] == [water]
    assert (await app.client.get("/api/v1/tickets", headers=pdam, params={"q": "jalan"})).json()["items"] == []
    assert (await app.client.get(f"/api/v1/tickets/{water}", headers=pdam)).status_code == 200
    for call in (
        app.client.get(f"/api/v1/tickets/{road}", headers=pdam),
        app.client.get(f"/api/v1/tickets/{road}/events", headers=pdam),
        app.client.patch(f"/api/v1/tickets/{road}", headers=pdam, json={"status": "open"}),
        app.client.post(f"/api/v1/tickets/{road}/replies", headers=pdam, json={"text": "Baik"}),
        app.client.post(f"/api/v1/tickets/{road}/notes", headers=pdam, json={"text": "cek"}),
        app.client.post(f"/api/v1/tickets/{road}/disposition", headers=pdam, json={"action": "accept"}),
    ):
        response = await call
        assert response.status_code == 404 and response.json()["error_code"] == "ticket_not_found"
    # An agent hands a ticket on with a disposition (and a reason), not by editing its department.
    moved = await app.client.patch(f"/api/v1/tickets/{water}", headers=pdam, json={"department": "DPUPR"})
    assert moved.status_code == 403
    assert (await app.client.get("/api/v1/deadlines", headers=pdam)).status_code == 403  # supervisors only
    stats = (await app.client.get("/api/v1/stats", headers=pdam)).json()
    assert stats["by_department"] == {"PDAM": 1}
    # The inbox's counts above the list: the department's tickets only, never another's, failed answers too.
    failed = {"outbound_id": "o1", "purpose": "agent_reply", "code": "131026", "at": app.service.now()}
    await app.service.tickets.update_one({"_id": road}, {"$set": {"undelivered": failed}})
    counts = (await app.client.get("/api/v1/stats/counts", headers=pdam)).json()
    assert counts == {"total": stats["total"], "by_status": stats["by_status"], "undelivered": 0}
    assert counts["total"] == 1
    assert (await app.client.get("/api/v1/stats/counts")).json()["undelivered"] == 1  # the whole desk's
    assert (await app.client.get("/api/v1/tickets", headers=pdam, params={"undelivered": "true"})).json()["items"] == []
    other = await app.client.get("/api/v1/stats/counts", headers=pdam, params={"department": "DPUPR"})
    assert other.status_code == 404


async def test_a_confidential_report_hides_the_citizen_from_all_but_supervisors(app: App) -> None:
    message = web_message("Ada pungli di kantor kelurahan, saya takut melapor terang-terangan", name="Sri Wahyuni")
    message = message.model_copy(update={"metadata": {**message.metadata, "confidential": True}})
    await app.service.handle_inbound(message)
    ref = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    desk = await _token(app, "desk", "agent")  # the central desk: no department, sees every ticket
    chief = await _token(app, "kabid", "supervisor")

    as_desk = (await app.client.get(f"/api/v1/tickets/{ref}", headers=desk)).json()
    assert as_desk["confidential"] is True and "Sri" not in str(as_desk) and "6281234567890" not in str(as_desk)
    assert (await app.client.get("/api/v1/tickets", headers=desk, params={"q": "wahyuni"})).json()["items"] == []
    as_chief = (await app.client.get(f"/api/v1/tickets/{ref}", headers=chief)).json()
    assert as_chief["citizen"]["display_name"] == "Sri Wahyuni"
    hide = await app.client.patch(f"/api/v1/tickets/{ref}", headers=desk, json={"confidential": False})
    assert hide.status_code == 403


async def test_an_anonymous_web_report_keeps_no_identity_beyond_what_replying_needs(app: App) -> None:
    submission = new_id()
    await app.service.handle_inbound(
        InboundMessage(
            channel=Channel.WEB,
            platform_message_id=submission,
            conversation_key=submission,
            sender=Sender(channel_user_id=submission, display_name="Joko", phone="+6281299998888"),
            text="Ada praktik pungli di pelayanan KTP",
            metadata={"submission_id": submission, "anonymous": True},
            raw={"name": "Joko", "phone": "081299998888"},
        )
    )
    ref = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    ticket = await app.service.db["tickets"].find_one({"_id": ref})
    messages = await app.service.db["messages"].find({"ticket": ref, "direction": "inbound"}).to_list(None)
    stored = str(ticket) + str(messages)
    assert "Joko" not in stored and "99998888" not in stored
    assert ticket is not None and ticket["citizen"]["channel_user_id"] == submission  # enough to answer


async def test_round_robin_hands_a_departments_new_tickets_to_its_active_agents_in_turn(
    infra: EmbeddedInfra, database: db.Database, tmp_path: Path
) -> None:
    """`round_robin: true` on DPUPR: its new tickets go to its agents in turn (never to a revoked one), however
    they were routed: on arrival, or by the citizen's second message when the first said nothing routable."""
    shipped = (Path(routing.__file__).parent / "rules.yaml").read_text(encoding="utf-8")
    department = "  DPUPR:\n    name: Dinas Pekerjaan Umum dan Penataan Ruang\n"
    assert department in shipped
    rules = tmp_path / "rules.yaml"
    rules.write_text(shipped.replace(department, department + "    round_robin: true\n"), encoding="utf-8")
    async with running(settings_for(infra, database, routing_rules_file=str(rules))) as app:
        for name, agency in (("sari", "DPUPR"), ("agus", "DPUPR"), ("budi", "PDAM")):
            await _token(app, name, "agent", agency)
        gone = await app.client.post("/api/v1/tokens", json={"name": "eko", "role": "agent", "department": "DPUPR"})
        assert (await app.client.delete(f"/api/v1/tokens/{gone.json()['id']}")).status_code == 200
        for place in ("Sulang", "Kaliori", "Sarang"):
            await app.service.handle_inbound(web_message(f"Jalan berlubang di depan SD {place}"))
        await app.service.handle_inbound(web_message("Air PDAM tidak mengalir sejak kemarin"))
        number = "6281234500077"
        await app.service.handle_inbound(whatsapp_message("Selamat pagi, Pak", number=number))
        first = await app.service.tickets.find_one({"conversation_key": number})
        assert first is not None and first["department"] is None and first.get("assignee") is None
        await app.service.handle_inbound(whatsapp_message("Jalan desa ambles di Sluke, bahaya", number=number))
        tickets = await app.service.tickets.find({}, {"department": 1, "assignee": 1}).sort("created_at", 1).to_list()
    assert [(t["department"], t.get("assignee")) for t in tickets] == [
        ("DPUPR", "agus"),
        ("DPUPR", "sari"),
        ("DPUPR", "agus"),
        ("PDAM", None),
        ("DPUPR", "sari"),
    ]
