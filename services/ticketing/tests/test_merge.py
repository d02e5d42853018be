"""Merging: one public problem reported twice, on the web and on WhatsApp, answered once for both."""

from __future__ import annotations

from suara_shared.events import Channel, new_id

from .conftest import App, outbound_for, web_message, whatsapp_message


async def test_replies_and_resolution_of_a_master_reach_every_reporter_on_their_own_channel(app: App) -> None:
    web = web_message("Jembatan di Desa Tireman retak, bahaya dilewati")
    phone = f"62814{new_id()[:8]}"
    whatsapp = whatsapp_message("Kreteg neng Tireman retak, mbebayani", number=phone, name="Pak Hadi")
    await app.service.handle_inbound(web)
    await app.service.handle_inbound(whatsapp)
    items = {t["channel"]: t["reference"] for t in (await app.client.get("/api/v1/tickets")).json()["items"]}
    master, child = items["web"], items["whatsapp"]

    merged = await app.client.post(f"/api/v1/tickets/{master}/merge", json={"references": [child]})
    assert merged.status_code == 200 and merged.json()["merged"] == [child]
    assert (await app.client.get(f"/api/v1/tickets/{child}")).json()["merged_into"] == master
    assert (await app.client.post(f"/api/v1/tickets/{child}/merge", json={"references": [master]})).status_code == 409
    assert (await app.client.post(f"/api/v1/tickets/{master}/merge", json={"references": [master]})).status_code == 409

    text = "Petugas DPUPR akan memasang pembatas dan memperbaiki jembatan minggu ini."
    assert (await app.client.post(f"/api/v1/tickets/{master}/replies", json={"text": text})).status_code == 202
    reporters = {web.sender.channel_user_id, phone}
    replies = await outbound_for(app.settings, lambda r: r.recipient in reporters and r.text == text, expect=2)
    assert sorted((r.channel, r.ticket_reference, r.recipient) for r in replies) == sorted(
        [(Channel.WEB, master, web.sender.channel_user_id), (Channel.WHATSAPP, child, phone)]
    )
    assert len({r.outbound_id for r in replies}) == 2  # one message per reporter

    await app.client.patch(f"/api/v1/tickets/{master}", json={"status": "resolved"})
    resolutions = await outbound_for(
        app.settings, lambda r: r.recipient in reporters and r.purpose == "resolution", expect=2
    )
    assert sorted((r.channel, r.ticket_reference) for r in resolutions) == sorted(
        [(Channel.WEB, master), (Channel.WHATSAPP, child)]
    )
    assert (await app.client.get(f"/api/v1/tickets/{child}")).json()["status"] == "resolved"
    child_trail = (await app.client.get(f"/api/v1/tickets/{child}/events")).json()["items"]
    assert [(e["type"], e["data"]["status"]) for e in child_trail if "status" in e["data"]] == [
        ("reply_queued", ["new", "open"]),  # the master's reply opened it too
        ("updated", ["open", "resolved"]),
    ]
    whatsapp_thread = (await app.client.get(f"/api/v1/tickets/{child}")).json()["messages"]
    assert text in [m["text"] for m in whatsapp_thread]  # the reporter's own ticket shows what they were told

    # The WhatsApp reporter writes that it is not mended: their ticket, and the master the desk works, reopen.
    await app.service.handle_inbound(whatsapp_message("Kreteg e durung didandani, isih retak", number=phone))
    assert (await app.client.get(f"/api/v1/tickets/{child}")).json()["status"] == "open"
    assert (await app.client.get(f"/api/v1/tickets/{master}")).json()["status"] == "open"
    trail = (await app.client.get(f"/api/v1/tickets/{master}/events")).json()["items"]
    assert {"status": ["resolved", "open"], "reopened_by": child} in [e["data"] for e in trail]


async def test_a_canned_reply_on_a_master_names_each_reporter_and_their_own_reference(app: App) -> None:
    """A canned response sent on a merged complaint must not tell the other reporters the master's citizen's name
    or a reference that is not theirs (under a public comment, everyone would read it)."""
    web = web_message("Jembatan di Desa Tireman retak, bahaya dilewati")
    phone = f"62814{new_id()[:8]}"
    await app.service.handle_inbound(web)
    await app.service.handle_inbound(whatsapp_message("Kreteg neng Tireman retak", number=phone, name="Pak Hadi"))
    items = {t["channel"]: t["reference"] for t in (await app.client.get("/api/v1/tickets")).json()["items"]}
    master, child = items["web"], items["whatsapp"]
    assert (await app.client.post(f"/api/v1/tickets/{master}/merge", json={"references": [child]})).is_success
    canned = await app.client.post(
        "/api/v1/canned-responses",
        json={"title": "Diteruskan", "text": "Yth. {name}, laporan {reference} sudah kami teruskan."},
    )

    sent = await app.client.post(f"/api/v1/tickets/{master}/replies", json={"canned_id": canned.json()["id"]})
    assert sent.status_code == 202
    reporters = {web.sender.channel_user_id, phone}
    replies = await outbound_for(
        app.settings, lambda r: r.recipient in reporters and r.purpose == "agent_reply", expect=2
    )
    assert sorted((r.ticket_reference, r.text) for r in replies) == sorted(
        [
            (master, f"Yth. Siti Aminah, laporan {master} sudah kami teruskan."),
            (child, f"Yth. Pak Hadi, laporan {child} sudah kami teruskan."),
        ]
    )
