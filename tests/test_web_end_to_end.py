"""The web channel end to end, through the real broker, database and service processes: a citizen files a
complaint, sees the acknowledgement with the reference, an agent answers through the API, the citizen sees it."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from suara_devstack.measure import web_complaint
from suara_devstack.stack import Stack
from suara_devstack.testing import eventually, url
from suara_shared import db, media, topics
from suara_shared.events import InboundMessage, new_id
from suara_shared.kafka import Publisher
from suara_shared.settings import ServiceSettings

pytestmark = pytest.mark.e2e
TOKEN = {"Authorization": "Bearer dev-only-admin-token"}


async def _listed(http: httpx.AsyncClient, stack: Stack, words: str) -> dict[str, Any] | None:
    """The newest ticket the desk's search finds by these words, if any yet."""
    answer = await http.get(url(stack, "ticketing", "/api/v1/tickets"), headers=TOKEN, params={"q": words})
    items: list[dict[str, Any]] = answer.json()["items"]
    return items[0] if items else None


async def test_complaint_to_acknowledgement_to_agent_reply_on_the_status_page(stack: Stack) -> None:
    tag = new_id()[:8]
    async with httpx.AsyncClient(timeout=10) as http:
        filed = await http.post(
            url(stack, "ingest-social", "/api/v1/web/complaints"),
            json={
                "text": f"Lampu penerangan jalan di depan Balai Desa Tireman mati sejak seminggu ({tag}).",
                "name": "Dewi Lestari",
                "phone": "0812-3456-7890",
                "kecamatan": "Rembang",
                "desa": "Tireman",
            },
        )
        assert filed.status_code == 202, filed.text
        submission = filed.json()["id"]
        assert filed.json()["status_url"].endswith(f"/status/{submission}")

        ticket = await eventually(lambda: _listed(http, stack, tag), what="the complaint listed as a ticket")
        reference = ticket["reference"]
        assert re.fullmatch(r"RMB-\d{4}-\d{6}", reference)
        assert ticket["channel"] == "web" and ticket["citizen"]["phone"] == "+6281234567890"

        async def status_page(path: str, needle: str) -> str | None:
            page = await http.get(url(stack, "ingest-social", path))
            return page.text if page.status_code == 200 and needle in page.text else None

        # The page reached from the submission id names the reference in the acknowledgement.
        page = await eventually(
            lambda: status_page(f"/status/{submission}", f"cek {reference}"),
            what="the acknowledgement on the status page",
        )
        assert reference in page

        async def ack_delivered() -> bool:
            body = (await http.get(url(stack, "ingest-social", f"/api/v1/web/status/{reference}"))).json()
            return bool(body["replies"]) and body["replies"][0]["delivery_status"] == "delivered"

        await eventually(ack_delivered, what="the acknowledgement delivered")

        reply = await http.post(
            url(stack, "ticketing", f"/api/v1/tickets/{reference}/replies"),
            headers=TOKEN,
            json={"text": "Petugas Dinas Perhubungan akan memperbaiki lampu besok."},
        )
        assert reply.status_code == 202
        await eventually(
            lambda: status_page(f"/status/{reference}", "akan memperbaiki lampu besok"),
            what="the agent's reply on the status page",
        )

        async def reply_delivered() -> bool:
            full = (await http.get(url(stack, "ticketing", f"/api/v1/tickets/{reference}"), headers=TOKEN)).json()
            answer = next(m for m in full["messages"] if m["id"] == reply.json()["id"])
            return answer["delivery_status"] == "delivered"

        await eventually(reply_delivered, what="the reply recorded as delivered on the ticket")


async def test_same_inbound_message_published_twice_is_one_message_on_one_ticket(stack: Stack) -> None:
    settings = ServiceSettings(kafka_bootstrap_servers=stack.infra.bootstrap, kafka_enable_idempotence=False)
    conversation = new_id()
    tag = conversation[:8]

    def message(platform_id: str, text: str) -> InboundMessage:
        """A message of the conversation's web complaint, with its own platform id."""
        return web_complaint(conversation, text).model_copy(update={"platform_message_id": platform_id})

    original = message(conversation, f"Saluran air tersumbat di Pasar Kragan kode {tag}")
    # Same key, same partition: once the barrier is on the ticket, both copies before it were processed.
    barrier = message(new_id(), "Tambahan foto menyusul")
    publisher = Publisher(settings)
    try:
        for event in (original, original, barrier):
            await publisher.publish(topics.INBOUND, event, key=event.partition_key)
    finally:
        await publisher.stop()

    async with httpx.AsyncClient(timeout=10) as http:

        async def ticket_with_barrier() -> dict | None:
            items = (
                await http.get(url(stack, "ticketing", "/api/v1/tickets"), headers=TOKEN, params={"q": tag})
            ).json()["items"]
            if not items:
                return None
            full = (
                await http.get(url(stack, "ticketing", f"/api/v1/tickets/{items[0]['reference']}"), headers=TOKEN)
            ).json()
            texts = [m["text"] for m in full["messages"] if m["direction"] == "inbound"]
            return {"count": len(items), "ticket": full} if barrier.text in texts else None

        seen = await eventually(ticket_with_barrier, what="both messages on the ticket")
        assert seen["count"] == 1
        inbound = [m["text"] for m in seen["ticket"]["messages"] if m["direction"] == "inbound"]
        assert inbound == [original.text, barrier.text]
        acks = [m for m in seen["ticket"]["messages"] if m["purpose"] == "acknowledgement"]
        assert len(acks) == 1


async def test_a_photo_filed_with_the_web_form_is_on_the_ticket_for_the_desk(stack: Stack) -> None:
    """The citizen attaches a photo of the pothole to the form; the desk agent opening the ticket sees it."""
    tag = new_id()[:8]
    photo = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 48
    async with httpx.AsyncClient(timeout=10) as http:
        filed = await http.post(
            url(stack, "ingest-social", "/lapor"),
            data={"text": f"Jalan berlubang besar di depan SD Negeri Sumberjo ({tag}).", "kecamatan": "Rembang"},
            files=[("foto", ("lubang.jpg", photo, "image/jpeg"))],
        )
        assert filed.status_code == 303, filed.text

        ticket = await eventually(lambda: _listed(http, stack, tag), what="the complaint with its photo as a ticket")
        reference = ticket["reference"]
        full = (await http.get(url(stack, "ticketing", f"/api/v1/tickets/{reference}"), headers=TOKEN)).json()
        (attachment,) = full["messages"][0]["attachments"]
        assert (attachment["kind"], attachment["mime_type"], attachment["filename"]) == (
            "image",
            "image/jpeg",
            "lubang.jpg",
        )
        shown = await http.get(
            url(stack, "ticketing", f"/api/v1/tickets/{reference}/media/{attachment['media_id']}"), headers=TOKEN
        )
        assert shown.status_code == 200 and shown.content == photo
        assert shown.headers["content-type"] == "image/jpeg"
    # Stored with its complaint, the photo awaits nothing: it is no stray to remove.
    client, database = db.connect(stack.infra.mongodb_uri)
    try:
        kept = await media.find(database, "web", attachment["media_id"])
    finally:
        await db.close(client)
    assert kept is not None and "awaiting" not in kept["metadata"]
