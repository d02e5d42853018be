"""The ticket API as the response team uses it: auth, filters, paging, updates, replies, notes, errors."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from suara_devstack.infra import EmbeddedInfra, free_port
from suara_shared import db
from suara_shared.events import Channel, new_id
from suara_ticketing.access.models import Principal, Role
from suara_ticketing.deadlines import WIB

from .conftest import App, comment_message, outbound_for, running, settings_for, web_message, whatsapp_message


async def _open(app: App, count: int) -> list[str]:
    for i in range(count):
        await app.service.handle_inbound(web_message(f"Pengaduan nomor {i}: lampu jalan mati di Sluke"))
    return [t["reference"] for t in (await app.client.get("/api/v1/tickets?limit=100")).json()["items"]]


async def test_no_or_wrong_token_is_401_as_json(app: App) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        response = await app.client.get("/api/v1/tickets", headers=headers)
        assert response.status_code == 401
        assert response.json()["error_code"] == "unauthorized"


async def test_pages_follow_the_cursor_newest_first_without_gaps_or_repeats(app: App) -> None:
    refs = await _open(app, 7)
    assert refs == sorted(refs, reverse=True)  # newest first
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await app.client.get("/api/v1/tickets", params=params)).json()
        seen += [t["reference"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == refs


async def test_pages_are_the_newest_first_whether_tickets_came_a_minute_or_years_ago(app: App) -> None:
    """The list looks at the last day first, then 8 days, 64, 512, then everything (the embedded database reads
    every match before sorting); whatever it looks at, every page must be the one the whole desk's order gives:
    tickets on either side of each span's edge, three sharing one instant across a page break, one from the
    future (a clock ahead), none lost or repeated, for the whole desk, a status, a department, an agent, a
    kecamatan and a channel, within date ranges whose edges fall anywhere among the spans, and among the tickets
    whose answer failed."""
    now = app.service.now().replace(microsecond=0)  # as stored: the database keeps milliseconds
    ages_in_days = [-0.01, 0, 0.001, 0.5, 0.99, 1.01, 3, 7.99, 8.01, 30, 63.9, 64.1, 200, 511.9, 512.1, 1000, 3000]
    tied = now - timedelta(days=8.01)  # three at the same instant, just past the 8-day edge
    docs: list[dict[str, Any]] = []
    for i, age in enumerate([*ages_in_days, 8.01, 8.01]):
        created = tied if age == 8.01 else now - timedelta(days=age)
        docs.append(
            {
                "_id": f"RMB-2026-{900000 + i:06d}",
                "created_at": created,
                "updated_at": created,
                "status": ("new", "open", "closed")[i % 3],
                "department": ("DPUPR", "Dishub", None)[i % 3],
                "kecamatan": ("Lasem", "Sluke")[i % 2],
                "channel": ("whatsapp", "whatsapp", "web", "x")[i % 4],
                # The three tied ones among them: a failed answer pages like any ticket.
                **({"undelivered": {"outbound_id": f"o{i}", "purpose": "agent_reply", "at": now}} if i % 3 else {}),
            }
        )
    await app.service.tickets.insert_many(docs)

    def newest_first(chosen: list[dict[str, Any]]) -> list[str]:
        return [d["_id"] for d in sorted(chosen, key=lambda d: (d["created_at"], d["_id"]), reverse=True)]

    agent = Principal(name="ani", role=Role.AGENT, department="Dishub")
    views: list[tuple[Any, ...]] = [
        ({}, None, newest_first(docs)),
        ({"status": "open"}, None, newest_first([d for d in docs if d["status"] == "open"])),
        ({"department": "DPUPR"}, None, newest_first([d for d in docs if d["department"] == "DPUPR"])),
        ({}, agent, newest_first([d for d in docs if d["department"] == "Dishub"])),
        (
            {"status": "open"},
            agent,
            newest_first([d for d in docs if d["department"] == "Dishub" and d["status"] == "open"]),
        ),
        ({"department": "DPUPR"}, agent, []),  # another department's tickets: none, not the agent's own
        ({"kecamatan": "Lasem"}, None, newest_first([d for d in docs if d["kecamatan"] == "Lasem"])),
        (
            {"kecamatan": "Sluke", "channel": "whatsapp"},
            None,
            newest_first([d for d in docs if d["kecamatan"] == "Sluke" and d["channel"] == "whatsapp"]),
        ),
        (
            {"kecamatan": "Lasem"},
            agent,
            newest_first([d for d in docs if d["kecamatan"] == "Lasem" and d["department"] == "Dishub"]),
        ),
        (
            {"kecamatan": "Sluke", "status": "new"},
            None,
            newest_first([d for d in docs if d["kecamatan"] == "Sluke" and d["status"] == "new"]),
        ),
    ]
    # Days picked in the date filters: each range's edges fall between the spans' and on the tied instant.
    ago = {age: now - timedelta(days=age) for age in (0.25, 2, 8.01, 10, 100, 600)}
    ranges: list[dict[str, Any]] = [
        {"$gte": ago[10], "$lt": ago[2]},
        {"$gte": ago[8.01], "$lt": ago[2]},  # the tied instant is the range's first
        {"$gte": ago[10], "$lt": ago[8.01]},  # ... and just past its end
        {"$gte": ago[100]},
        {"$gte": ago[0.25]},  # the clock ahead's ticket too
        {"$lt": ago[10]},
        {"$gte": ago[600], "$lt": ago[100]},
        {"$gte": ago[2], "$lt": ago[10]},  # from after to: nothing
    ]
    for created in ranges:

        def within(d: dict[str, Any], created: dict[str, Any] = created) -> bool:
            return created.get("$gte", d["created_at"]) <= d["created_at"] < created.get("$lt", now + timedelta(1))

        views += [
            ({}, None, newest_first([d for d in docs if within(d)]), created),
            (
                {"status": "closed"},
                None,
                newest_first([d for d in docs if within(d) and d["status"] == "closed"]),
                created,
            ),
            (
                {"kecamatan": "Lasem"},
                agent,
                newest_first(
                    [d for d in docs if within(d) and d["kecamatan"] == "Lasem" and d["department"] == "Dishub"]
                ),
                created,
            ),
            (
                {"kecamatan": "Sluke", "status": "new"},
                None,
                newest_first([d for d in docs if within(d) and d["kecamatan"] == "Sluke" and d["status"] == "new"]),
                created,
            ),
        ]
    assert sum(1 for *_, expected, created in views if created and expected) >= 12  # ranges that find tickets
    flagged = {d["_id"] for d in docs if "undelivered" in d}
    for filters, principal, expected, *dated in views:
        created = dated[0] if dated else None
        for undelivered, wanted in ((None, expected), (True, [r for r in expected if r in flagged])):
            for limit in (1, 2, 4, 50):
                seen: list[str] = []
                cursor = None
                while True:
                    page, cursor = await app.service.list(
                        filters=filters,
                        q=None,
                        limit=limit,
                        cursor=cursor,
                        created=created,
                        undelivered=undelivered,
                        principal=principal,
                    )
                    assert len(page) <= limit
                    seen += [d["_id"] for d in page]
                    if cursor is None or len(seen) > len(docs):  # a cursor that never ends repeats tickets
                        break
                assert seen == wanted, (filters, principal, created, undelivered, limit)


async def test_filters_and_search(app: App) -> None:
    refs = await _open(app, 3)
    await app.service.handle_inbound(web_message("Air PDAM tidak mengalir tiga hari", name="Bambang"))
    water = (await app.client.get("/api/v1/tickets", params={"q": "pdam"})).json()["items"]
    assert [t["summary"] for t in water] == ["Air PDAM tidak mengalir tiga hari"]
    assert len((await app.client.get("/api/v1/tickets", params={"q": "bambang"})).json()["items"]) == 1
    # A reference, whole or in part and in any case, finds its ticket; a word of a complaint finds no reference.
    for part in (refs[1], refs[1].lower(), refs[1][-6:], refs[1][3:]):
        found = (await app.client.get("/api/v1/tickets", params={"q": part})).json()["items"]
        assert [t["reference"] for t in found] == [refs[1]], part
    assert len((await app.client.get("/api/v1/tickets", params={"q": "rmb"})).json()["items"]) == 4
    assert len((await app.client.get("/api/v1/tickets", params={"q": refs[1][3:9]})).json()["items"]) == 4
    # Regex metacharacters are searched for literally.
    assert (await app.client.get("/api/v1/tickets", params={"q": ".*"})).json()["items"] == []

    await app.client.patch(
        f"/api/v1/tickets/{refs[0]}", json={"status": "open", "department": "DPUPR", "assignee": "ani"}
    )
    opened = (await app.client.get("/api/v1/tickets", params={"status": "open"})).json()["items"]
    assert [t["reference"] for t in opened] == [refs[0]]
    assert len((await app.client.get("/api/v1/tickets", params={"department": "DPUPR"})).json()["items"]) == 1
    # The street-light complaints were routed to the transport office by the routing rules.
    assert len((await app.client.get("/api/v1/tickets", params={"department": "Dishub"})).json()["items"]) == 2
    assert len((await app.client.get("/api/v1/tickets", params={"assignee": "ani"})).json()["items"]) == 1
    assert (await app.client.get("/api/v1/tickets", params={"channel": "x"})).json()["items"] == []
    assert len((await app.client.get("/api/v1/tickets", params={"channel": "web"})).json()["items"]) == 4


async def test_a_phone_number_typed_whole_or_in_part_finds_that_citizens_tickets(app: App) -> None:
    """A citizen on the telephone gives their number: however the agent types it, the search finds their tickets
    (a WhatsApp citizen's and a web form's alike), and a confidential reporter's only for supervisors."""
    await app.service.handle_inbound(whatsapp_message("Lampu jalan mati di Desa Pandean", number="6281390000021"))
    await app.service.handle_inbound(whatsapp_message("Jembatan retak di Desa Sumberjo", number="6281390000022"))
    form = web_message("Pungli di kantor desa")
    form = form.model_copy(update={"sender": form.sender.model_copy(update={"phone": "+6285712340021"})})
    await app.service.handle_inbound(form)
    tickets = {t["citizen"]["phone"]: t["reference"] for t in (await app.client.get("/api/v1/tickets")).json()["items"]}
    first, second, web = tickets["+6281390000021"], tickets["+6281390000022"], tickets["+6285712340021"]

    async def found(q: str) -> set[str]:
        return {t["reference"] for t in (await app.client.get("/api/v1/tickets", params={"q": q})).json()["items"]}

    for typed in ("0813-9000-0021", "+62 813 9000 0021", "6281390000021", "(0813) 90000021", "9000 0021"):
        assert await found(typed) == {first}, typed
    assert await found("0813 9000 002") == {first, second}  # the start of both numbers
    assert await found("0857-1234-0021") == {web}
    assert await found("0021") == set()  # too few digits to be a number: no ticket has them in its words

    await app.service.tickets.update_one({"_id": web}, {"$set": {"confidential": True, "department": "Dinsos"}})
    agent = Principal(name="ani", role=Role.AGENT, department="Dinsos")
    supervisor = Principal(name="sri", role=Role.SUPERVISOR)
    for principal, expected in ((agent, []), (supervisor, [web])):
        page, _ = await app.service.list(filters={}, q="0857 1234 0021", limit=10, cursor=None, principal=principal)
        assert [d["_id"] for d in page] == expected, principal.role


async def test_a_date_filter_takes_whole_days_in_rembang_the_last_one_included(app: App) -> None:
    """`created_from` and `created_to` are days in Rembang (WIB, UTC+7): a complaint written at 00:30 on
    17 August is the 17th's, though it is still the 16th in UTC. Alone, with a kecamatan, with a search."""
    refs = await _open(app, 3)  # lampu jalan mati, from the form in Kecamatan Rembang
    eve = datetime(2026, 8, 16, 23, 30, tzinfo=WIB)
    for ref, created in zip(refs, (eve + timedelta(hours=1), eve, eve - timedelta(days=1)), strict=True):
        await app.service.tickets.update_one({"_id": ref}, {"$set": {"created_at": created}})
    after_midnight, eve_ref, day_before = refs

    async def listed(**params: str) -> list[str]:
        response = await app.client.get("/api/v1/tickets", params={"limit": "1", **params})
        found = [t["reference"] for t in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        while cursor is not None:  # a page at a time: the dates must hold across pages too
            response = await app.client.get("/api/v1/tickets", params={"limit": "1", **params, "cursor": cursor})
            found += [t["reference"] for t in response.json()["items"]]
            cursor = response.json()["next_cursor"]
        return found

    for extra in ({}, {"kecamatan": "rembang"}, {"q": "lampu"}, {"status": "new"}):
        assert await listed(created_from="2026-08-17", **extra) == [after_midnight], extra
        assert await listed(created_to="2026-08-16", **extra) == [eve_ref, day_before], extra
        assert await listed(created_from="2026-08-16", created_to="2026-08-16", **extra) == [eve_ref], extra
        assert await listed(created_from="2026-08-15", created_to="2026-08-17", **extra) == refs, extra
        assert await listed(created_from="2026-08-18", **extra) == [], extra
    assert await listed(created_from="2026-08-16", kecamatan="lasem") == []


async def test_bad_parameters_are_422_never_database_operators(app: App) -> None:
    await _open(app, 1)
    for params in (
        {"status": "bogus"},
        {"limit": 0},
        {"limit": 1000},
        {"cursor": "not-a-cursor"},
        {"status[$ne]": "x"},
        {"department": '{"$ne": null}'},
        {"assignee": '{"$gt": ""}'},
        {"category": "$where"},
        {"kecamatan": '{"$regex": ".*"}'},
        {"kecamatan": "Jakarta"},
        {"overdue": '{"$ne": false}'},
        {"created_from": '{"$gte": "2020-01-01"}'},
    ):
        response = await app.client.get("/api/v1/tickets", params=params)
        assert response.status_code == 422, params
        assert response.json()["error_code"] == "validation_error"
    patch = await app.client.patch("/api/v1/tickets/RMB-2026-000001", json={"status": {"$ne": "closed"}})
    assert patch.status_code == 422
    assert (await app.client.patch("/api/v1/tickets/RMB-2026-000001", json={"owner": "x"})).status_code == 422
    # Search words are only ever literal text.
    found = await app.client.get("/api/v1/tickets", params={"q": '{"$ne": null}'})
    assert found.status_code == 200 and found.json()["items"] == []


async def test_unknown_ticket_is_404_as_json(app: App) -> None:
    response = await app.client.get("/api/v1/tickets/RMB-2026-999999")
    assert response.status_code == 404 and response.json()["error_code"] == "ticket_not_found"
    assert (await app.client.get("/api/v1/tickets/not-a-reference")).status_code == 422
    assert (await app.client.post("/api/v1/tickets/RMB-2026-999999/replies", json={"text": "x"})).status_code == 404


async def test_reply_is_queued_on_the_tickets_channel_and_notes_stay_internal(app: App) -> None:
    msg = web_message()
    await app.service.handle_inbound(msg)
    reference = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]

    note = await app.client.post(f"/api/v1/tickets/{reference}/notes", json={"text": "Koordinasi dengan DPUPR"})
    assert note.status_code == 201 and note.json()["author"] == "admin"
    reply = await app.client.post(
        f"/api/v1/tickets/{reference}/replies", json={"text": "Petugas akan datang besok pagi."}
    )
    assert reply.status_code == 202 and reply.json()["delivery_status"] == "queued"
    assert (await app.client.post(f"/api/v1/tickets/{reference}/replies", json={"text": "   "})).status_code == 422

    full = (await app.client.get(f"/api/v1/tickets/{reference}")).json()
    assert full["status"] == "open"  # an agent's answer means someone is working on it
    assert [n["text"] for n in full["notes"]] == ["Koordinasi dengan DPUPR"]
    assert all("Koordinasi" not in (m["text"] or "") for m in full["messages"])

    sent = await outbound_for(app.settings, lambda r: r.recipient == msg.sender.channel_user_id, expect=2)
    assert [r.purpose for r in sent] == ["acknowledgement", "agent_reply"]
    assert sent[1].text == "Petugas akan datang besok pagi." and sent[1].channel == Channel.WEB
    assert all("Koordinasi" not in r.text for r in sent)


async def test_public_status_shows_replies_but_no_identity_or_complaint(app: App) -> None:
    msg = web_message()
    await app.service.handle_inbound(msg)
    reference = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    await app.client.post(f"/api/v1/tickets/{reference}/replies", json={"text": "Sudah kami teruskan ke DPUPR"})

    anonymous = app.client.headers.copy()
    del anonymous["Authorization"]
    for key in (reference, msg.conversation_key):
        response = await app.client.get(f"/api/v1/public/status/{key}", headers=anonymous)
        assert response.status_code == 200
        body = response.json()
        assert body["reference"] == reference and body["status_label"] == "Sedang diproses"
        assert (body["category"], body["category_name"]) == ("jalan_jembatan", "Jalan, jembatan dan drainase")
        assert body["department_name"] == "Dinas Pekerjaan Umum dan Penataan Ruang"
        assert [r["purpose"] for r in body["replies"]] == ["acknowledgement", "agent_reply"]
        dumped = response.text
        assert "Siti" not in dumped and "6281234567890" not in dumped and "Tireman rusak" not in dumped
    missing = await app.client.get(f"/api/v1/public/status/{new_id()}", headers=anonymous)
    assert missing.status_code == 404 and missing.json()["error_code"] == "not_found"


async def test_by_its_guessable_reference_a_reply_shows_as_in_public_and_whole_by_the_reporters_own_link(
    app: App,
) -> None:
    """References are sequential: anyone may open the page of RMB-2026-000001. There a reply must not show the
    citizen's name, number or address the agent wrote in it; the web reporter's own link shows it whole."""
    msg = web_message()
    await app.service.handle_inbound(msg)
    reference = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    text = (
        "Yth. Bu Siti, petugas Dinas Pertanian akan datang ke Jl. Pemuda No. 12 Rembang. Hubungi kami di 081234567890."
    )
    await app.client.post(f"/api/v1/tickets/{reference}/replies", json={"text": text})
    anonymous = app.client.headers.copy()
    del anonymous["Authorization"]

    public = (await app.client.get(f"/api/v1/public/status/{reference}", headers=anonymous)).json()
    shown = public["replies"][-1]["text"]
    assert "petugas Dinas Pertanian akan datang" in shown and "[disamarkan]" in shown
    assert "Siti" not in shown and "081234567890" not in shown and "Pemuda" not in shown
    assert reference in public["replies"][0]["text"]  # the acknowledgement keeps its reference and link
    # The reporter's secret link is never given by the reference: it would show everything whole.
    assert public["submission_id"] is None and msg.conversation_key not in str(public)
    own = (await app.client.get(f"/api/v1/public/status/{msg.conversation_key}", headers=anonymous)).json()
    assert own["replies"][-1]["text"] == text


async def test_a_private_reply_to_a_commenter_is_not_on_the_public_page(app: App) -> None:
    comment = comment_message("1111_3333", "7003")
    await app.service.handle_inbound(comment)
    ticket = await app.service.tickets.find_one({"conversation_key": comment.conversation_key})
    assert ticket is not None
    url = f"/api/v1/tickets/{ticket['_id']}/replies"
    assert (await app.client.post(url, json={"text": "Mohon kirim alamat lengkap", "private": True})).is_success
    assert (await app.client.post(url, json={"text": "Sudah kami teruskan ke DPUPR"})).is_success
    anonymous = app.client.headers.copy()
    del anonymous["Authorization"]

    public = (await app.client.get(f"/api/v1/public/status/{ticket['_id']}", headers=anonymous)).json()
    assert [r["purpose"] for r in public["replies"]] == ["acknowledgement", "agent_reply"]
    assert public["replies"][-1]["text"] == "Sudah kami teruskan ke DPUPR"
    assert "Mohon kirim alamat" not in str(public)


async def test_a_confidential_report_shows_no_replies_by_its_reference_only_by_its_private_link(app: App) -> None:
    msg = web_message()
    confidential = msg.model_copy(update={"metadata": {**msg.metadata, "confidential": True}})
    await app.service.handle_inbound(confidential)
    reference = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    await app.client.post(f"/api/v1/tickets/{reference}/replies", json={"text": "Kami tindak lanjuti diam-diam"})
    anonymous = app.client.headers.copy()
    del anonymous["Authorization"]

    public = (await app.client.get(f"/api/v1/public/status/{reference}", headers=anonymous)).json()
    assert public["status_label"] == "Sedang diproses"
    assert public["replies"] == [] and public["replies_hidden"] is True
    assert public["submission_id"] is None, "the private link is the reporter's alone"
    private = (await app.client.get(f"/api/v1/public/status/{msg.conversation_key}", headers=anonymous)).json()
    assert [r["text"] for r in private["replies"]][-1] == "Kami tindak lanjuti diam-diam"
    assert private["replies_hidden"] is False
    # The acknowledgement, read on that private page, keeps the reporter there: the reference's page hides replies.
    acknowledgement = private["replies"][0]["text"]
    assert reference in acknowledgement and "halaman ini" in acknowledgement and "/status/" not in acknowledgement


async def test_replies_wait_in_the_outbox_while_the_broker_is_away(infra: EmbeddedInfra, database: db.Database) -> None:
    """The API needs the database alone to take a reply: it waits in the outbox for the broker. Readiness says the
    broker is away (CONTRACT.md: ready only with both), so that the operator sees which."""
    settings = settings_for(infra, database).model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"})
    async with running(settings) as app:
        await app.service.tickets.insert_one(
            {
                "_id": "RMB-2026-000777",
                "status": "open",
                "channel": "web",
                "conversation_key": "c-777",
                "citizen": {"channel_user_id": "c-777"},
                "created_at": app.service.now(),
                "updated_at": app.service.now(),
            }
        )
        ready = await app.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": True, "broker": False}
        listed = await app.client.get("/api/v1/tickets")
        assert [t["reference"] for t in listed.json()["items"]] == ["RMB-2026-000777"]
        reply = await app.client.post("/api/v1/tickets/RMB-2026-000777/replies", json={"text": "Sedang kami cek."})
        assert reply.status_code == 202
        waiting = {"ticket": "RMB-2026-000777", "direction": "outbound", "published": False}
        assert await app.service.messages.count_documents(waiting) == 1, "the reply waits to be published"
