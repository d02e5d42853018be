"""What ticketing does for WhatsApp, against the real database and broker and the channel sandbox over local HTTP:
citizens' media through the two-step Graph download (checked, capped, cached), the 24-hour window on outbound
messages, read receipts when an agent opens a ticket, one citizen across channels by phone number, and the
statuses of long and template replies."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from suara_devstack.infra import EmbeddedInfra
from suara_devstack.testing import eventually
from suara_shared import db
from suara_shared.events import (
    Attachment,
    Channel,
    DeliveryError,
    DeliveryState,
    DeliveryStatus,
    InboundMessage,
    MessageKind,
    Sender,
    new_id,
    utcnow,
)
from suara_ticketing import media, window

from .conftest import App, outbound_for, running, settings_for, web_message

PHONE_NUMBER_ID = "106540352242922"
SANDBOX_TOKEN = {"Authorization": "Bearer sandbox-test-token"}
PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40  # a 10 KiB "photo" of a pothole


@pytest.fixture
async def wa_app(infra: EmbeddedInfra, database: db.Database, sandbox: str, tmp_path: Path) -> AsyncIterator[App]:
    """Ticketing as the tests' `app`, with WhatsApp credentials pointing at the sandbox and a 64 KiB media cap."""
    settings = settings_for(
        infra,
        database,
        meta_graph_url=sandbox,
        wa_access_token="sandbox-test-token",
        wa_phone_number_id=PHONE_NUMBER_ID,
        media_max_bytes=64 * 1024,
        data_dir=str(tmp_path),
    )
    async with running(settings) as started:
        yield started


def wa_message(
    wa_id: str,
    text: str | None = "Jalan di Desa Sumberjo berlubang",
    *,
    attachment: Attachment | None = None,
    **kw: Any,
) -> InboundMessage:
    return InboundMessage(
        channel=Channel.WHATSAPP,
        platform_message_id=f"wamid.{new_id()}",
        conversation_key=wa_id,
        sender=Sender(channel_user_id=wa_id, display_name="Siti Aminah", phone=f"+{wa_id}"),
        kind=attachment.kind if attachment else MessageKind.TEXT,
        text=text,
        attachments=(attachment,) if attachment else (),
        metadata={"phone_number_id": PHONE_NUMBER_ID},
        **kw,
    )


def _same_ms(stored: datetime | None, expected: datetime) -> bool:
    """The database keeps milliseconds."""
    return stored is not None and abs(stored - expected) < timedelta(milliseconds=1)


async def _upload(sandbox: str, content: bytes, **params: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{sandbox}/_sandbox/whatsapp/media", content=content, headers={"Content-Type": "image/jpeg"}, params=params
        )
        response.raise_for_status()
        uploaded: dict[str, Any] = response.json()
        return uploaded


async def _media_calls(sandbox: str) -> list[tuple[str, str]]:
    async with httpx.AsyncClient() as http:
        calls = (await http.get(f"{sandbox}/_sandbox/calls")).json()
    return [(c["method"], c["path"]) for c in calls if c["method"] == "GET"]


async def _ticket_with_photo(app: App, sandbox: str, content: bytes, **upload: str) -> tuple[str, dict[str, Any]]:
    media = await _upload(sandbox, content, **upload)
    photo = Attachment(
        kind=MessageKind.IMAGE, media_id=media["id"], mime_type="image/jpeg", sha256=media["sha256"], caption="Ini"
    )
    await app.service.handle_inbound(wa_message("6281234567001", "Ini", attachment=photo))
    reference = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    return reference, media


async def test_media_streams_through_the_two_step_download_checked_and_kept(wa_app: App, sandbox: str) -> None:
    reference, media = await _ticket_with_photo(wa_app, sandbox, PHOTO)
    ticket = (await wa_app.client.get(f"/api/v1/tickets/{reference}")).json()
    assert ticket["messages"][0]["attachments"][0]["media_id"] == media["id"]

    first = await wa_app.client.get(f"/api/v1/tickets/{reference}/media/{media['id']}")

    assert first.status_code == 200
    assert first.content == PHOTO and first.headers["content-type"] == "image/jpeg"
    assert first.headers["x-content-sha256"] == base64.b64encode(hashlib.sha256(PHOTO).digest()).decode()
    calls = await _media_calls(sandbox)
    assert calls == [("GET", f"/v23.0/{media['id']}"), ("GET", "/whatsapp_business/attachments/")]

    # Meta deletes media after 30 days; the kept copy is still served, and Meta is not asked again.
    async with httpx.AsyncClient() as http:
        await http.delete(f"{sandbox}/v23.0/{media['id']}", headers=SANDBOX_TOKEN)
    again = await wa_app.client.get(f"/api/v1/tickets/{reference}/media/{media['id']}")
    assert again.status_code == 200 and again.content == PHOTO
    assert await _media_calls(sandbox) == calls


async def test_a_citizens_photo_is_kept_as_it_arrives_and_served_after_meta_deleted_it(
    wa_app: App, sandbox: str
) -> None:
    """The keeper fetches a photo as soon as its message is noted, before any agent opens the ticket: an agent who
    first opens it after Meta's 30 days still sees the citizen's evidence. A file Meta is briefly unable to give
    is tried again later; one it no longer has is given up, and the agent is told so."""
    store = media.MediaStore(wa_app.service.db, wa_app.settings)
    await store.ensure_indexes()
    kept_photo, gone_photo, later_photo = PHOTO, PHOTO[::-1], PHOTO + b"later"
    uploads = [await _upload(sandbox, content) for content in (kept_photo, gone_photo, later_photo)]
    events = [
        wa_message(
            f"628123456809{n}",
            "Ini fotonya",
            attachment=Attachment(
                kind=MessageKind.IMAGE, media_id=up["id"], mime_type="image/jpeg", sha256=up["sha256"]
            ),
        )
        for n, up in enumerate(uploads)
    ]
    await media.enqueue(store, events)
    await media.enqueue(store, events[:1])  # the same message redelivered: one file to keep
    for event in events:
        await wa_app.service.handle_inbound(event)
    # Meta unreachable: nothing kept, everything tried again later.
    unreachable = media.MediaStore(
        wa_app.service.db, wa_app.settings.model_copy(update={"meta_graph_url": "http://127.0.0.1:9"})
    )
    tried = utcnow() - timedelta(milliseconds=1)  # the database keeps milliseconds
    assert await media.keep_due(unreachable) == 0
    pending = await store.pending.find({}).sort("_id", 1).to_list(None)
    assert sorted((p["_id"], p["attempts"]) for p in pending) == sorted((f"whatsapp:{u['id']}", 1) for u in uploads)
    # Each is due again within its first backoff (full jitter: anywhere in the first 4 s), not at its claim's end.
    assert all(tried <= p["due"] <= utcnow() + timedelta(seconds=4) for p in pending)
    await media.measure_pending(store)  # what the alert SuaraMediaNotKept watches
    assert REGISTRY.get_sample_value("suara_media_pending_files") == 3
    assert (REGISTRY.get_sample_value("suara_media_pending_oldest_seconds") or 0) > 0
    await store.pending.update_many({}, {"$set": {"due": utcnow()}})
    async with httpx.AsyncClient() as http:
        await http.delete(f"{sandbox}/v23.0/{uploads[1]['id']}", headers=SANDBOX_TOKEN)  # gone before it was kept
    assert await media.keep_due(store) == 2
    assert await store.pending.count_documents({}) == 0
    await media.measure_pending(store)
    assert REGISTRY.get_sample_value("suara_media_pending_files") == 0
    assert REGISTRY.get_sample_value("suara_media_pending_oldest_seconds") == 0
    downloads = [c for c in await _media_calls(sandbox) if c[1] == "/whatsapp_business/attachments/"]
    assert len(downloads) == 2

    async with httpx.AsyncClient() as http:
        for up in (uploads[0], uploads[2]):
            await http.delete(f"{sandbox}/v23.0/{up['id']}", headers=SANDBOX_TOKEN)  # Meta's 30 days are over
    items = (await wa_app.client.get("/api/v1/tickets", params={"limit": 10})).json()["items"]
    reference = {t["citizen"]["channel_user_id"]: t["reference"] for t in items}
    for n, up, content in ((0, uploads[0], kept_photo), (2, uploads[2], later_photo)):
        served = await wa_app.client.get(f"/api/v1/tickets/{reference[f'628123456809{n}']}/media/{up['id']}")
        assert served.status_code == 200 and served.content == content
        assert served.headers["content-type"] == "image/jpeg" and served.headers["content-length"] == str(len(content))
    gone = await wa_app.client.get(f"/api/v1/tickets/{reference['6281234568091']}/media/{uploads[1]['id']}")
    assert gone.status_code == 410 and gone.json()["error_code"] == "media_gone"


async def test_files_received_before_the_keeper_are_noted_once_while_the_platform_still_has_them(
    wa_app: App, sandbox: str
) -> None:
    """An upgrade with live data: the messages stored before the keeper existed have their files noted once, those
    of the last 30 days (WhatsApp has deleted older ones), and kept like new ones."""
    store = media.MediaStore(wa_app.service.db, wa_app.settings)
    await store.ensure_indexes()
    young, old = await _upload(sandbox, PHOTO + b"young"), await _upload(sandbox, PHOTO + b"old")
    for n, (up, age) in enumerate(((young, timedelta(days=29)), (old, timedelta(days=31)))):
        photo = Attachment(kind=MessageKind.IMAGE, media_id=up["id"], mime_type="image/jpeg", sha256=up["sha256"])
        event = wa_message(f"628123456819{n}", "Foto lama", attachment=photo, received_at=utcnow() - age)
        await wa_app.service.handle_inbound(event)  # stored as an earlier version did: nothing noted

    assert await media.backfill(store, wa_app.service) == 1
    assert await media.backfill(store, wa_app.service) == 0  # once per database
    assert [p["_id"] for p in await store.pending.find({}).to_list(None)] == [f"whatsapp:{young['id']}"]
    assert await media.keep_due(store) == 1
    assert await store.open("whatsapp", young["id"]) is not None


async def test_media_whose_bytes_do_not_match_their_sha256_is_refused_and_not_kept(
    wa_app: App, sandbox: str, tmp_path: Path
) -> None:
    wrong = base64.b64encode(hashlib.sha256(b"another file").digest()).decode()
    reference, uploaded = await _ticket_with_photo(wa_app, sandbox, PHOTO, sha256=wrong)

    response = await wa_app.client.get(f"/api/v1/tickets/{reference}/media/{uploaded['id']}")

    assert response.status_code == 502 and response.json()["error_code"] == "media_integrity_error"
    assert list((tmp_path / "media-scratch").iterdir()) == []
    assert await media.MediaStore(wa_app.service.db, wa_app.settings).open("whatsapp", uploaded["id"]) is None


async def test_media_over_the_cap_is_refused_before_it_is_downloaded(wa_app: App, sandbox: str) -> None:
    reference, media = await _ticket_with_photo(wa_app, sandbox, b"x" * (64 * 1024 + 1))

    response = await wa_app.client.get(f"/api/v1/tickets/{reference}/media/{media['id']}")

    assert response.status_code == 502 and response.json()["error_code"] == "media_too_large"
    assert "65536" in response.json()["message"]
    assert ("GET", "/whatsapp_business/attachments/") not in await _media_calls(sandbox)


async def test_media_that_is_gone_unknown_or_asked_without_a_token(wa_app: App, sandbox: str) -> None:
    reference, media = await _ticket_with_photo(wa_app, sandbox, PHOTO)
    async with httpx.AsyncClient() as http:
        await http.delete(f"{sandbox}/v23.0/{media['id']}", headers=SANDBOX_TOKEN)

    gone = await wa_app.client.get(f"/api/v1/tickets/{reference}/media/{media['id']}")
    assert gone.status_code == 410 and gone.json()["error_code"] == "media_gone"
    unknown = await wa_app.client.get(f"/api/v1/tickets/{reference}/media/1234567890")
    assert unknown.status_code == 404 and unknown.json()["error_code"] == "media_not_found"
    elsewhere = await wa_app.client.get(f"/api/v1/tickets/RMB-2020-999999/media/{media['id']}")
    assert elsewhere.status_code == 404
    anonymous = await wa_app.client.get(
        f"/api/v1/tickets/{reference}/media/{media['id']}", headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401


async def test_an_agent_asking_for_a_file_while_meta_refuses_or_is_away_is_told_which(
    wa_app: App, sandbox: str
) -> None:
    """A file not kept yet is fetched when the agent opens it. While WhatsApp's token is refused the agent is told
    so (502, the operator must renew it); while Meta is unreachable, to retry (503). Neither keeps anything."""
    reference, media_info = await _ticket_with_photo(wa_app, sandbox, PHOTO)
    path = f"/api/v1/tickets/{reference}/media/{media_info['id']}"
    async with httpx.AsyncClient() as http:
        (await http.put(f"{sandbox}/_sandbox/whatsapp/token", json={"valid": False})).raise_for_status()
    refused = await wa_app.client.get(path)
    assert (refused.status_code, refused.json()["error_code"]) == (502, "channel_token_invalid")

    away = wa_app.settings.model_copy(update={"meta_graph_url": "http://127.0.0.1:9"})
    async with running(away) as unreachable:
        answer = await unreachable.client.get(path)
    assert (answer.status_code, answer.json()["error_code"]) == (503, "media_unavailable")
    store = media.MediaStore(wa_app.service.db, wa_app.settings)
    assert await store.open("whatsapp", media_info["id"]) is None


async def test_outbound_messages_carry_the_end_of_the_citizens_24_hour_window(app: App) -> None:
    wa_id = "6281234567002"
    old = wa_message(wa_id, received_at=utcnow() - timedelta(hours=30))
    await app.service.handle_inbound(old)
    [ack] = await outbound_for(app.settings, lambda r: r.recipient == wa_id)
    assert _same_ms(ack.window_expires_at, old.received_at + timedelta(hours=24)), "closed six hours ago"

    fresh = wa_message(wa_id, "Sudah dua hari belum ada petugas")
    await app.service.handle_inbound(fresh)
    reference = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    reply = await app.client.post(f"/api/v1/tickets/{reference}/replies", json={"text": "Petugas menuju lokasi."})
    assert reply.status_code == 202
    sent = await outbound_for(app.settings, lambda r: r.outbound_id == reply.json()["id"])
    assert _same_ms(sent[0].window_expires_at, fresh.received_at + timedelta(hours=24))


async def test_opening_a_ticket_asks_once_for_its_messages_to_show_as_read(app: App) -> None:
    wa_id = "6281234567003"
    first, second = wa_message(wa_id, "Lampu mati"), wa_message(wa_id, "Sudah tiga malam")
    await app.service.handle_inbound(first)
    await app.service.handle_inbound(second)
    reference = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]

    assert (await app.client.get(f"/api/v1/tickets/{reference}")).status_code == 200

    async def requested() -> list[Any]:
        return await outbound_for(app.settings, lambda r: r.recipient == wa_id, actions=("mark_read",))

    [receipt] = await eventually(requested, what="the read-receipt request")
    assert receipt.reply_to == second.platform_message_id, "the latest one: WhatsApp marks the earlier ones too"

    async def all_marked() -> bool:
        return await app.service.messages.count_documents({"ticket": reference, "read_requested_at": None}) == 1

    await eventually(all_marked, what="both inbound messages marked as asked for")  # the ack has no such field
    assert (await app.client.get(f"/api/v1/tickets/{reference}")).status_code == 200
    assert len(await outbound_for(app.settings, lambda r: r.recipient == wa_id, actions=("mark_read",))) == 1


async def test_a_web_complaint_and_a_whatsapp_message_from_one_number_are_one_citizen(app: App) -> None:
    await app.service.handle_inbound(web_message("Saluran air di Pasar Kragan tersumbat"))  # phone 0812-3456-7890
    await app.service.handle_inbound(wa_message("6281234567890", "Lampu jalan di Jl. Pemuda mati"))
    await app.service.handle_inbound(wa_message("6285700000001", "Someone else"))

    for written in ("081234567890", "+62 812-3456-7890", "6281234567890"):
        response = await app.client.get(f"/api/v1/citizens/{written}/tickets")
        assert response.status_code == 200
        body = response.json()
        assert body["phone"] == "+6281234567890"
        assert body["channels"] == ["web", "whatsapp"] and len(body["tickets"]) == 2
    assert (await app.client.get("/api/v1/citizens/not-a-phone/tickets")).status_code == 422


async def test_a_long_reply_and_a_template_reply_take_every_status_of_their_messages(app: App) -> None:
    wa_id = "6281234567004"
    await app.service.handle_inbound(wa_message(wa_id))
    reference = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    reply = (await app.client.post(f"/api/v1/tickets/{reference}/replies", json={"text": "Panjang " * 700})).json()

    # The second part's delivery arrives before the notifier said which ids the reply got: kept, then applied.
    await app.service.record_delivery(
        DeliveryStatus(channel=Channel.WHATSAPP, platform_message_id="wamid.part-2", status=DeliveryState.DELIVERED)
    )
    await app.service.record_delivery(
        DeliveryStatus(
            channel=Channel.WHATSAPP,
            outbound_id=reply["id"],
            platform_message_id="wamid.part-1",
            more_platform_message_ids=("wamid.part-2",),
            status=DeliveryState.SENT,
            template="suara_tanggapan_laporan",
        )
    )

    def shown(ticket: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = next(m for m in ticket["messages"] if m["id"] == reply["id"])
        return message

    message = shown((await app.client.get(f"/api/v1/tickets/{reference}")).json())
    assert (message["channel_message_id"], message["delivery_status"]) == ("wamid.part-1", "delivered")
    assert message["template"] == "suara_tanggapan_laporan"
    await app.service.record_delivery(
        DeliveryStatus(channel=Channel.WHATSAPP, platform_message_id="wamid.part-2", status=DeliveryState.READ)
    )
    await app.service.record_delivery(
        DeliveryStatus(channel=Channel.WHATSAPP, platform_message_id="wamid.part-1", status=DeliveryState.SENT)
    )
    message = shown((await app.client.get(f"/api/v1/tickets/{reference}")).json())
    assert (message["channel_message_id"], message["delivery_status"]) == ("wamid.part-1", "read")


async def test_a_window_closed_failure_after_acceptance_is_sent_again_as_the_template(app: App) -> None:
    wa_id = "6281234567005"
    await app.service.handle_inbound(wa_message(wa_id))
    reference = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    reply = (await app.client.post(f"/api/v1/tickets/{reference}/replies", json={"text": "Sudah kami cek."})).json()
    await app.service.record_delivery(
        DeliveryStatus(
            channel=Channel.WHATSAPP,
            outbound_id=reply["id"],
            platform_message_id="wamid.free-form",
            status=DeliveryState.SENT,
        )
    )
    # WhatsApp took the text, then reported the window closed (samples/wa_webhook_status_failed_131047.json).
    failed = DeliveryStatus(
        channel=Channel.WHATSAPP,
        platform_message_id="wamid.free-form",
        status=DeliveryState.FAILED,
        error=DeliveryError(code="131047", title="Re-engagement message", detail="more than 24 hours"),
    )
    await window.record_delivery(app.service, failed)
    await window.record_delivery(app.service, failed)  # Meta delivers webhooks more than once

    sent = await outbound_for(app.settings, lambda r: r.recipient == wa_id and r.text == "Sudah kami cek.", expect=2)
    assert len(sent) == 2 and sent[0].outbound_id == reply["id"], "one resend, however often it failed"
    resent = sent[1]
    assert resent.outbound_id != reply["id"] and resent.window_expires_at == window.CLOSED
    messages = (await app.client.get(f"/api/v1/tickets/{reference}")).json()["messages"]
    answers = [(m["id"], m["delivery_status"]) for m in messages if m.get("text") == "Sudah kami cek."]
    assert answers == [(reply["id"], "failed"), (resent.outbound_id, "queued")]
    # The inbox shows no failed answer: the template is on its way.
    assert (await app.client.get(f"/api/v1/tickets/{reference}")).json()["undelivered"] is None

    # The template's own failure is final: no loop, and the inbox says the citizen has not got the answer.
    await app.service.record_delivery(
        DeliveryStatus(
            channel=Channel.WHATSAPP,
            outbound_id=resent.outbound_id,
            platform_message_id="wamid.template",
            status=DeliveryState.SENT,
            template="suara_tanggapan_laporan",
        )
    )
    refused = failed.model_copy(update={"platform_message_id": "wamid.template"})
    assert await window.resend_outside_window(service=app.service, status=refused) is None
    await window.record_delivery(app.service, refused)
    undelivered = (await app.client.get(f"/api/v1/tickets/{reference}")).json()["undelivered"]
    assert (undelivered["outbound_id"], undelivered["code"]) == (resent.outbound_id, "131047")


async def test_a_window_closed_failure_that_overtakes_the_send_report_is_still_sent_again(app: App) -> None:
    wa_id = "6281234567006"
    await app.service.handle_inbound(wa_message(wa_id))
    reference = (await app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    reply = (
        await app.client.post(f"/api/v1/tickets/{reference}/replies", json={"text": "Segera kami tangani."})
    ).json()
    # Meta's failed-status webhook arrives before the notifier has reported which wamid the reply got.
    await window.record_delivery(
        app.service,
        DeliveryStatus(
            channel=Channel.WHATSAPP,
            platform_message_id="wamid.overtaken",
            status=DeliveryState.FAILED,
            error=DeliveryError(code="131047", title="Re-engagement message"),
        ),
    )
    await window.record_delivery(
        app.service,
        DeliveryStatus(
            channel=Channel.WHATSAPP,
            outbound_id=reply["id"],
            platform_message_id="wamid.overtaken",
            status=DeliveryState.SENT,
        ),
    )
    sent = await outbound_for(
        app.settings, lambda r: r.recipient == wa_id and r.text == "Segera kami tangani.", expect=2
    )
    assert len(sent) == 2 and sent[1].window_expires_at == window.CLOSED
    messages = (await app.client.get(f"/api/v1/tickets/{reference}")).json()["messages"]
    answers = [m["delivery_status"] for m in messages if m.get("text") == "Segera kami tangani."]
    assert answers == ["failed", "queued"]
