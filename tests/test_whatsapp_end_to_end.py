"""WhatsApp end to end, through the real broker, database and service processes, with the channel sandbox as
Meta: every sample lands on a ticket as its kind, statuses on the outbound message they name; signatures, the
handshake, batches, redeliveries and a frozen broker lose nothing; replies follow the 24-hour window and Meta's
errors; media, read receipts and one citizen across channels work as an agent would use them."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from suara_devstack.sandbox.whatsapp import MEDIA_PATH
from suara_devstack.stack import SANDBOX_WA_TOKEN, Stack
from suara_devstack.testing import eventually, url

pytestmark = pytest.mark.e2e

SAMPLES = Path(__file__).resolve().parents[1] / "services" / "ingest-wa" / "tests" / "samples"
APP_SECRET = "dev-only-meta-app-secret"  # what `make run` (and so the stack) gives ingest-wa and the sandbox
TOKEN = {"Authorization": "Bearer dev-only-admin-token"}
#: The wamid every status sample names, and the quoted reply and the reaction point at: a message Suara sent.
SAMPLE_OUT = "wamid.HBgMNDQ3NzAwOTAwMTIzFQIAERgSQjc3NkE0RjBBMjE4QTc5QzVFAA=="
SAMPLE_CITIZEN = "447700900123"
TEMPLATE = "suara_tanggapan_laporan"
WITHIN = 45.0


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def _sign(body: bytes) -> dict[str, str]:
    digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


def _sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def _number() -> tuple[str, str]:
    """A fresh Indonesian mobile number, as typed (`0812…`) and as its WhatsApp id (`62812…`)."""
    local = "0812" + "".join(str(secrets.randbelow(10)) for _ in range(8))
    return local, "62" + local[1:]


def _wamid() -> str:
    return f"wamid.e2e-{secrets.token_hex(12)}"


def _envelope(contacts: list[dict[str, Any]], messages: list[dict[str, Any]]) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "622959690001", "phone_number_id": "106540352242922"},
        "contacts": contacts,
        "messages": messages,
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def _text(wa_id: str, body: str, *, message_id: str | None = None) -> dict[str, Any]:
    return {
        "from": wa_id,
        "id": message_id or _wamid(),
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": body},
    }


async def _post(
    http: httpx.AsyncClient, stack: Stack, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await http.post(url(stack, "ingest-wa", "/webhooks/whatsapp"), content=body, headers=headers or _sign(body))


async def _tickets_of(http: httpx.AsyncClient, stack: Stack, wa_id: str) -> list[dict[str, Any]]:
    """The citizen's WhatsApp tickets, newest first, each with its messages."""
    items = (
        await http.get(
            url(stack, "ticketing", "/api/v1/tickets"), headers=TOKEN, params={"channel": "whatsapp", "limit": 100}
        )
    ).json()["items"]
    found = []
    for item in items:
        if item["citizen"]["channel_user_id"] == wa_id:
            full = await http.get(url(stack, "ticketing", f"/api/v1/tickets/{item['reference']}"), headers=TOKEN)
            found.append(full.json())
    return found


async def _ticket_when(http: httpx.AsyncClient, stack: Stack, wa_id: str, test: Any, what: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        tickets = await _tickets_of(http, stack, wa_id)
        return tickets[0] if len(tickets) == 1 and test(tickets[0]) else None

    ticket: dict[str, Any] = await eventually(probe, within=WITHIN, what=what)
    return ticket


def _inbound(ticket: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in ticket["messages"] if m["direction"] == "inbound"]


def _outbound(ticket: dict[str, Any], purpose: str | None = None) -> list[dict[str, Any]]:
    return [m for m in ticket["messages"] if m["direction"] == "outbound" and purpose in (None, m["purpose"])]


async def _script(http: httpx.AsyncClient, stack: Stack, wa_id: str, **script: Any) -> None:
    response = await http.post(url(stack, "sandbox", f"/_sandbox/whatsapp/recipients/{wa_id}/script"), json=script)
    assert response.status_code == 200, response.text


async def _citizen_writes(http: httpx.AsyncClient, stack: Stack, number: str, **message: Any) -> str:
    """Type on the sandbox's phone: a signed webhook to ingest-wa, as from Meta."""
    response = await http.post(url(stack, "sandbox", f"/_sandbox/whatsapp/phones/{number}/messages"), json=message)
    assert response.status_code == 202, response.text
    wamid: str = response.json()["id"]
    return wamid


async def _phone(http: httpx.AsyncClient, stack: Stack, wa_id: str) -> dict[str, Any]:
    phone: dict[str, Any] = (await http.get(url(stack, "sandbox", f"/_sandbox/whatsapp/phones/{wa_id}"))).json()
    return phone


async def _sends_to(http: httpx.AsyncClient, stack: Stack, wa_id: str) -> list[dict[str, Any]]:
    calls = (await http.get(url(stack, "sandbox", "/_sandbox/calls"))).json()
    return [c for c in calls if c["path"].endswith("/messages") and c["body"].get("to") == wa_id]


# --- every sample through the pipeline ----------------------------------------------------------------------


async def test_every_sample_lands_on_the_ticket_as_its_kind_and_statuses_on_their_message(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    agent_wamid = _wamid()
    # The acknowledgement gets the id the samples' statuses name; the sandbox sends no statuses of its own.
    await _script(http, stack, SAMPLE_CITIZEN, message_ids=[SAMPLE_OUT, agent_wamid], statuses=False)

    assert (await _post(http, stack, _sample("wa_webhook_text.json"))).status_code == 200
    ticket = await _ticket_when(
        http,
        stack,
        SAMPLE_CITIZEN,
        # The notifier's report writes the message's platform id, then its status: wait for both.
        lambda t: any(
            m["channel_message_id"] == SAMPLE_OUT and m["delivery_status"] == "sent"
            for m in _outbound(t, "acknowledgement")
        ),
        "the acknowledgement sent with the samples' wamid",
    )
    reference = ticket["reference"]
    assert ticket["citizen"]["display_name"] == "Aisha Rahman"
    [ack] = _outbound(ticket, "acknowledgement")
    # The samples are from June 2024: the window closed long ago, so the acknowledgement went as the template.
    assert (ack["delivery_status"], ack["template"]) == ("sent", TEMPLATE)

    messages = [
        "wa_webhook_text_quoted_reply.json",
        "wa_webhook_image.json",
        "wa_webhook_media_variants.json",
        "wa_webhook_location.json",
        "wa_webhook_interactive_button_reply.json",
        "wa_webhook_interactive_list_reply.json",
        "wa_webhook_button.json",
        "wa_webhook_reaction.json",
        "wa_webhook_contacts.json",
        "wa_webhook_unsupported.json",
    ]
    for name in messages:
        response = await _post(http, stack, _sample(name))
        assert response.status_code == 200, name
    errors_only = await _post(http, stack, _sample("wa_webhook_value_errors.json"))
    assert errors_only.json() == {"status": "accepted", "messages": 0, "statuses": 0}, "nothing to put on a ticket"

    kinds = ["text", "text", "image", "audio", "video", "document", "sticker", "location", "interactive"]
    kinds += ["interactive", "button", "reaction", "contacts", "unsupported"]
    ticket = await _ticket_when(
        http, stack, SAMPLE_CITIZEN, lambda t: len(_inbound(t)) == len(kinds), "all fourteen messages on the ticket"
    )
    inbound = _inbound(ticket)
    assert [m["kind"] for m in inbound] == kinds, "in the order they came, nothing blocked by the unsupported one"
    assert ticket["reference"] == reference
    by_kind = {m["kind"]: m for m in inbound}
    assert inbound[1]["text"] == "Yes, that is the order"
    assert inbound[1]["reply_context"]["in_reply_to"] == SAMPLE_OUT, "the quoted message is our acknowledgement"
    assert by_kind["reaction"]["text"] == "👍" and by_kind["reaction"]["reply_context"]["in_reply_to"] == SAMPLE_OUT
    assert by_kind["image"]["attachments"] == [
        {
            "kind": "image",
            "media_id": "1472580369258147",
            "mime_type": "image/jpeg",
            "sha256": "u0n6Jf0VQ3oQv3vC2e7S8a1m9Yw4cZt5Xk2bH1pL6rE=",
            "caption": "Photo of the damaged box",
        }
    ]
    assert by_kind["document"]["attachments"][0]["filename"] == "invoice-8841.pdf"
    assert by_kind["audio"]["attachments"][0]["mime_type"] == "audio/ogg; codecs=opus"
    assert by_kind["location"]["location"]["name"] == "Trafalgar Square"
    assert [m["text"] for m in inbound if m["kind"] == "interactive"] == ["Resolved", "Delivery problem"]
    assert by_kind["button"]["text"] == "Talk to an agent"
    assert by_kind["contacts"]["text"] == "Omar Haddad: +44 7700 900456"

    # Statuses, in the wrong order: read first. Read beats delivered beats sent.
    for name in ("wa_webhook_status_read.json", "wa_webhook_status_sent.json", "wa_webhook_status_delivered.json"):
        assert (await _post(http, stack, _sample(name))).status_code == 200

    reply = await http.post(
        url(stack, "ticketing", f"/api/v1/tickets/{reference}/replies"),
        headers=TOKEN,
        json={"text": "We are sorry about the parcel; a replacement is on its way."},
    )
    assert reply.status_code == 202

    def answered(t: dict[str, Any]) -> bool:
        out = {m["id"]: m for m in _outbound(t)}
        return (
            out[ack["id"]]["delivery_status"] == "read"
            and out.get(reply.json()["id"], {}).get("channel_message_id") == agent_wamid
        )

    await _ticket_when(http, stack, SAMPLE_CITIZEN, answered, "the acknowledgement read and the reply sent")
    # The failed sample, addressed to the agent's reply (the samples give one wamid to every status).
    failed = _sample("wa_webhook_status_failed_131047.json").replace(SAMPLE_OUT.encode(), agent_wamid.encode())
    assert (await _post(http, stack, failed)).status_code == 200

    def reply_failed(t: dict[str, Any]) -> bool:
        return bool(next(m for m in _outbound(t) if m["id"] == reply.json()["id"])["delivery_status"] == "failed")

    ticket = await _ticket_when(http, stack, SAMPLE_CITIZEN, reply_failed, "the reply failed with 131047")
    answer = next(m for m in _outbound(ticket) if m["id"] == reply.json()["id"])
    assert answer["delivery_error"]["code"] == "131047"
    assert "24 hours" in answer["delivery_error"]["detail"]
    assert next(m for m in _outbound(ticket) if m["id"] == ack["id"])["delivery_status"] == "read"


# --- the webhook's guarantees --------------------------------------------------------------------------------


async def test_the_handshake_and_unsigned_posts(stack: Stack, http: httpx.AsyncClient) -> None:
    hook = url(stack, "ingest-wa", "/webhooks/whatsapp")
    params = {"hub.mode": "subscribe", "hub.verify_token": "dev-only-verify-token", "hub.challenge": "1158201444"}
    answer = await http.get(hook, params=params)
    assert (answer.status_code, answer.text) == (200, "1158201444")
    assert (await http.get(hook, params={**params, "hub.verify_token": "guess"})).status_code == 403

    _, wa_id = _number()
    unsigned_id, forged_id = _wamid(), _wamid()
    contacts = [{"profile": {"name": "Budi"}, "wa_id": wa_id}]
    unsigned = _envelope(contacts, [_text(wa_id, "unsigned", message_id=unsigned_id)])
    forged = _envelope(contacts, [_text(wa_id, "forged", message_id=forged_id)])
    assert (await _post(http, stack, unsigned, {"Content-Type": "application/json"})).status_code == 401
    bad = {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64}
    assert (await _post(http, stack, forged, bad)).status_code == 401

    # A signed message of the same citizen, published after them: once it is on a ticket, they would be too.
    barrier = await _post(http, stack, _envelope(contacts, [_text(wa_id, "Lampu mati di Gang Mawar")]))
    assert barrier.status_code == 200
    ticket = await _ticket_when(http, stack, wa_id, lambda t: bool(_inbound(t)), "the signed message")
    assert [m["text"] for m in _inbound(ticket)] == ["Lampu mati di Gang Mawar"]


async def test_a_batch_of_50_delivered_three_times_is_50_messages(stack: Stack, http: httpx.AsyncClient) -> None:
    citizens = [_number()[1] for _ in range(5)]
    contacts = [{"profile": {"name": f"Warga {i}"}, "wa_id": wa_id} for i, wa_id in enumerate(citizens)]
    messages = [_text(wa_id, f"Laporan {n} dari warga {i}") for n in range(10) for i, wa_id in enumerate(citizens)]
    body = _envelope(contacts, messages)

    for _ in range(3):
        response = await _post(http, stack, body)
        assert response.status_code == 200
        assert response.json()["messages"] == 50
    barrier = await _post(http, stack, _envelope(contacts, [_text(wa_id, "selesai") for wa_id in citizens]))
    assert barrier.status_code == 200

    total = 0
    for i, wa_id in enumerate(citizens):
        ticket = await _ticket_when(
            http, stack, wa_id, lambda t: _inbound(t) and _inbound(t)[-1]["text"] == "selesai", f"citizen {i}'s batch"
        )
        texts = [m["text"] for m in _inbound(ticket)][:-1]
        assert texts == [f"Laporan {n} dari warga {i}" for n in range(10)], "each once, in order"
        assert len(_outbound(ticket, "acknowledgement")) == 1
        total += len(texts)
    assert total == 50


async def test_an_unsupported_message_then_a_text_are_both_stored_in_order(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    _, wa_id = _number()
    odd = {"from": wa_id, "id": _wamid(), "timestamp": str(int(time.time())), "type": "hologram", "hologram": {}}
    body = _envelope([{"profile": {"name": "Rina"}, "wa_id": wa_id}], [odd, _text(wa_id, "Halo, apakah diterima?")])
    assert (await _post(http, stack, body)).status_code == 200

    ticket = await _ticket_when(http, stack, wa_id, lambda t: len(_inbound(t)) == 2, "both messages")
    assert [(m["kind"], m["text"]) for m in _inbound(ticket)] == [
        ("unsupported", None),
        ("text", "Halo, apakah diterima?"),
    ]


# --- replies and Meta's answers ----------------------------------------------------------------------------


async def test_the_citizens_phone_gets_the_acknowledgement_and_the_agents_reply_with_ticks(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    number, wa_id = _number()
    typed = await _citizen_writes(http, stack, number, name="Siti Aminah", text="Jalan di Desa Sumberjo berlubang")

    ticket = await _ticket_when(
        http, stack, wa_id, lambda t: _outbound(t, "acknowledgement"), "a ticket with its acknowledgement"
    )
    reference = ticket["reference"]

    async def phone_shows(text: str, status: str) -> dict[str, Any] | None:
        phone = await _phone(http, stack, wa_id)
        out = [m for m in phone["messages"] if m["direction"] == "out" and text in (m["text"] or "")]
        return out[0] if out and out[0]["status"] == status else None

    ack = await eventually(lambda: phone_shows(reference, "read"), within=WITHIN, what="the acknowledgement read")
    assert ack["kind"] == "text" and ack["quoted"] == typed, "it answers the citizen's message"

    reply = await http.post(
        url(stack, "ticketing", f"/api/v1/tickets/{reference}/replies"),
        headers=TOKEN,
        json={"text": "Petugas DPUPR akan menambal jalan besok pagi."},
    )
    assert reply.status_code == 202
    await eventually(lambda: phone_shows("menambal jalan", "read"), within=WITHIN, what="the reply with blue ticks")
    ticket = await _ticket_when(
        http,
        stack,
        wa_id,
        lambda t: all(m["delivery_status"] == "read" for m in _outbound(t)),
        "both outbound messages read on the ticket",
    )

    # The agent opened the ticket: the citizen's own message shows blue ticks on the phone.
    async def citizen_message_read() -> bool:
        phone = await _phone(http, stack, wa_id)
        return bool(phone["messages"][0]["id"] == typed and phone["messages"][0]["status"] == "read")

    await eventually(citizen_message_read, within=WITHIN, what="the citizen's message marked read")


async def test_a_reply_outside_the_24_hour_window_goes_as_the_template(stack: Stack, http: httpx.AsyncClient) -> None:
    number, wa_id = _number()
    yesterday = time.time() - 25 * 3600  # a webhook Meta retried for a day
    await _citizen_writes(http, stack, number, text="Sampah menumpuk di Pasar Kota", timestamp=yesterday)
    ticket = await _ticket_when(
        http, stack, wa_id, lambda t: [m for m in _outbound(t) if m["delivery_status"] == "read"], "the acknowledgement"
    )
    reply = await http.post(
        url(stack, "ticketing", f"/api/v1/tickets/{ticket['reference']}/replies"),
        headers=TOKEN,
        json={"text": "Truk DLH akan mengangkut sampah hari ini."},
    )
    assert reply.status_code == 202

    ticket = await _ticket_when(
        http,
        stack,
        wa_id,
        lambda t: len(_outbound(t)) == 2 and all(m["delivery_status"] == "read" for m in _outbound(t)),
        "the reply read",
    )
    assert [m["template"] for m in _outbound(ticket)] == [TEMPLATE, TEMPLATE]
    sends = await _sends_to(http, stack, wa_id)
    assert [s["body"]["type"] for s in sends] == ["template", "template"]
    parameters = sends[1]["body"]["template"]["components"][0]["parameters"]
    assert [p["text"] for p in parameters] == [ticket["reference"], "Truk DLH akan mengangkut sampah hari ini."]

    # The citizen writes again: the window is open, the next reply is plain text.
    await _citizen_writes(http, stack, number, text="Terima kasih, sudah diangkut")
    await _ticket_when(http, stack, wa_id, lambda t: len(_inbound(t)) == 2, "the new message")
    again = await http.post(
        url(stack, "ticketing", f"/api/v1/tickets/{ticket['reference']}/replies"),
        headers=TOKEN,
        json={"text": "Sama-sama."},
    )
    assert again.status_code == 202
    ticket = await _ticket_when(
        http,
        stack,
        wa_id,
        lambda t: len(_outbound(t)) == 3 and _outbound(t)[-1]["channel_message_id"],
        "the text reply",
    )
    assert _outbound(ticket)[-1]["template"] is None
    assert [s["body"]["type"] for s in await _sends_to(http, stack, wa_id)][-1] == "text"


async def test_meta_errors_131026_131047_and_130429_as_the_ticket_shows_them(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    undeliverable, late, throttled, async_failed, async_late = (_number() for _ in range(5))
    await _script(http, stack, undeliverable[1], errors=[131026])
    await _script(http, stack, late[1], errors=[131047])
    await _script(http, stack, throttled[1], errors=[130429, 130429])
    await _script(http, stack, async_failed[1], failures=[131026])
    await _script(http, stack, async_late[1], failures=[131047])
    for number, _ in (undeliverable, late, throttled, async_failed, async_late):
        await _citizen_writes(http, stack, number, text="Pohon tumbang menutup jalan")

    def ack_is(status: str) -> Any:
        return lambda t: [m for m in _outbound(t, "acknowledgement") if m["delivery_status"] == status]

    ticket = await _ticket_when(http, stack, undeliverable[1], ack_is("failed"), "131026 failed on the ticket")
    [ack] = _outbound(ticket, "acknowledgement")
    assert ack["delivery_error"]["code"] == "131026" and "Undeliverable" in ack["delivery_error"]["title"]
    assert len(await _sends_to(http, stack, undeliverable[1])) == 1, "never retried"

    ticket = await _ticket_when(http, stack, late[1], ack_is("read"), "131047 answered by the template")
    assert _outbound(ticket, "acknowledgement")[0]["template"] == TEMPLATE
    assert [s["body"]["type"] for s in await _sends_to(http, stack, late[1])] == ["text", "template"]

    await _ticket_when(http, stack, throttled[1], ack_is("read"), "130429 retried until sent")
    assert [s["status"] for s in await _sends_to(http, stack, throttled[1])] == [429, 429, 200]

    ticket = await _ticket_when(http, stack, async_failed[1], ack_is("failed"), "a failed status webhook")
    assert _outbound(ticket, "acknowledgement")[0]["delivery_error"]["code"] == "131026"

    # 131047 after a 200, as a failed status: the acknowledgement is sent again, as the template.
    ticket = await _ticket_when(
        http, stack, async_late[1], lambda t: ack_is("failed")(t) and ack_is("read")(t), "the template resend read"
    )
    first, again = _outbound(ticket, "acknowledgement")
    assert (first["delivery_status"], first["delivery_error"]["code"], first["template"]) == ("failed", "131047", None)
    assert (again["delivery_status"], again["template"], again["text"]) == ("read", TEMPLATE, first["text"])
    assert [s["body"]["type"] for s in await _sends_to(http, stack, async_late[1])] == ["text", "template"]


async def test_a_refused_token_fails_the_reply_and_turns_the_notifier_red_until_a_send_works(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    refused, fine = _number(), _number()
    token = url(stack, "sandbox", "/_sandbox/whatsapp/token")
    assert (await http.put(token, json={"valid": False})).status_code == 200  # the token expired at Meta
    try:
        await _citizen_writes(http, stack, refused[0], text="Banjir di Desa Pandean")
        ticket = await _ticket_when(
            http,
            stack,
            refused[1],
            lambda t: [m for m in _outbound(t) if m["delivery_status"] == "failed"],
            "the acknowledgement failed with 190",
        )
        assert _outbound(ticket)[0]["delivery_error"]["code"] == "190"
        ready = await http.get(url(stack, "notifier", "/readyz"))
        assert ready.status_code == 503 and ready.json()["checks"]["channels"] is False
        metrics = (await http.get(url(stack, "notifier", "/metrics"))).text
        assert 'suara_channel_token_valid{channel="whatsapp"} 0.0' in metrics
    finally:
        await http.put(token, json={"valid": True})  # someone replaced the token

    # The next send works, and everything is green again.
    await _citizen_writes(http, stack, fine[0], text="Banjir di Desa Pandean juga")
    await _ticket_when(
        http, stack, fine[1], lambda t: [m for m in _outbound(t) if m["delivery_status"] != "queued"], "a send"
    )

    async def green() -> bool:
        return (await http.get(url(stack, "notifier", "/readyz"))).status_code == 200

    await eventually(green, within=WITHIN, what="the notifier ready again")
    assert (
        'suara_channel_token_valid{channel="whatsapp"} 1.0' in (await http.get(url(stack, "notifier", "/metrics"))).text
    )


# --- media and identity ------------------------------------------------------------------------------------


async def test_a_photo_from_the_phone_is_viewable_by_the_agent(stack: Stack, http: httpx.AsyncClient) -> None:
    number, wa_id = _number()
    photo = b"\xff\xd8\xff\xe0" + secrets.token_bytes(20_000)
    uploaded = await http.post(
        url(stack, "sandbox", "/_sandbox/whatsapp/media"), content=photo, headers={"Content-Type": "image/jpeg"}
    )
    media_id = uploaded.json()["id"]
    await _citizen_writes(http, stack, number, media_id=media_id, text="Lubang di Jl. Pemuda")

    ticket = await _ticket_when(http, stack, wa_id, lambda t: bool(_inbound(t)), "the photo on a ticket")
    [message] = _inbound(ticket)
    assert (message["kind"], message["text"], message["attachments"][0]["media_id"]) == (
        "image",
        "Lubang di Jl. Pemuda",
        media_id,
    )

    # Ticketing keeps the photo as it arrives, before anyone opens the ticket; Meta deletes it after 30 days.
    async def downloaded() -> bool:
        calls = (await http.get(url(stack, "sandbox", "/_sandbox/calls"))).json()
        return any(c["path"] == MEDIA_PATH and c["query"].get("mid") == media_id for c in calls)

    await eventually(downloaded, within=60, what="the photo fetched from Meta with no agent asking")
    forgotten = await http.delete(
        url(stack, "sandbox", f"/v23.0/{media_id}"), headers={"Authorization": f"Bearer {SANDBOX_WA_TOKEN}"}
    )
    assert forgotten.status_code == 200

    async def viewed() -> httpx.Response | None:
        answer = await http.get(
            url(stack, "ticketing", f"/api/v1/tickets/{ticket['reference']}/media/{media_id}"), headers=TOKEN
        )
        return answer if answer.status_code == 200 else None

    media = await eventually(viewed, within=60, what="the kept photo served after Meta deleted it")
    assert media.content == photo and media.headers["content-type"] == "image/jpeg"


async def test_a_web_complaint_and_whatsapp_from_one_number_show_as_one_citizen(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    number, wa_id = _number()
    filed = await http.post(
        url(stack, "ingest-social", "/api/v1/web/complaints"),
        json={"text": "Lampu jalan di Jl. Diponegoro mati.", "name": "Dewi", "phone": number[:4] + "-" + number[4:]},
    )
    assert filed.status_code == 202
    await _citizen_writes(http, stack, "+62 " + number[1:], text="Lampu jalan masih mati")
    await _ticket_when(http, stack, wa_id, lambda t: bool(_inbound(t)), "the WhatsApp ticket")

    async def both() -> dict[str, Any] | None:
        response = await http.get(url(stack, "ticketing", f"/api/v1/citizens/{number}/tickets"), headers=TOKEN)
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 and len(body["tickets"]) == 2 else None

    citizen = await eventually(both, within=WITHIN, what="both tickets under one phone number")
    assert citizen["phone"] == "+62" + number[1:]
    assert citizen["channels"] == ["web", "whatsapp"]


# --- the broker away -----------------------------------------------------------------------------------------


async def test_with_the_broker_frozen_the_webhook_answers_503_and_a_retry_loses_nothing(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    _, wa_id = _number()
    body = _envelope([{"profile": {"name": "Joko"}, "wa_id": wa_id}], [_text(wa_id, "Jembatan Kaliori retak")])

    stack.infra.freeze("broker")
    try:
        refused = await _post(http, stack, body)  # the publisher gives up after its timeout (5 s)
    finally:
        stack.infra.thaw("broker")
    assert refused.status_code == 503 and refused.json()["error_code"] == "broker_unavailable"

    async def retried() -> bool:  # as Meta does, until the answer is 200
        return (await _post(http, stack, body)).status_code == 200

    await eventually(retried, within=60, what="the retried webhook accepted")
    ticket = await _ticket_when(http, stack, wa_id, lambda t: bool(_inbound(t)), "the message after the retry")
    assert [m["text"] for m in _inbound(ticket)] == ["Jembatan Kaliori retak"]
