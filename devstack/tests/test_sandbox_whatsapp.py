"""The sandbox's WhatsApp Cloud API behaves as channels.md §1 and its samples say: sends answered with a wamid and
followed by signed status webhooks, scripted errors shaped like Meta's, two-step media, and a citizen's phone whose
messages reach the webhook receiver signed and retried until taken."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from suara_devstack.sandbox.app import SandboxSettings, create_app
from suara_devstack.testing import eventually, serve_app

SAMPLES = Path(__file__).parent / "samples"
SECRET = "sandbox-test-secret"
TOKEN = {"Authorization": "Bearer sandbox-test-token"}
SITI = "6281234567890"


@dataclass
class Receiver:
    """A stand-in ingest-wa: records every webhook, answers from `answers` (then 200)."""

    url: str = ""
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.posts]

    def statuses(self) -> list[dict[str, Any]]:
        found = []
        for body in self.bodies():
            for change in body["entry"][0]["changes"]:
                found += change["value"].get("statuses", [])
        return found

    def messages(self) -> list[dict[str, Any]]:
        """Distinct messages, in the order they first came (a retried webhook carries the same ones)."""
        found: dict[str, dict[str, Any]] = {}
        for body in self.bodies():
            for change in body["entry"][0]["changes"]:
                for message in change["value"].get("messages", []):
                    found.setdefault(message["id"], message)
        return list(found.values())


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()
    app = FastAPI()

    @app.post("/webhooks/whatsapp")
    async def webhook(request: Request) -> JSONResponse:
        got.posts.append((dict(request.headers), await request.body()))
        status = got.answers.pop(0) if got.answers else 200
        return JSONResponse({"status": status}, status_code=status)

    async with serve_app(app) as url:
        got.url = url
        yield got


@pytest.fixture
async def sandbox(receiver: Receiver) -> AsyncIterator[httpx.AsyncClient]:
    settings = SandboxSettings(ingest_wa_url=receiver.url, meta_app_secret=SECRET, sandbox_status_delay_seconds=0.01)
    async with serve_app(create_app(settings=settings)) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


def _send(to: str, body: str = "Laporan Anda kami terima.", **extra: Any) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"preview_url": False, "body": body},
        **extra,
    }


def _sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


async def test_a_send_is_answered_with_a_wamid_then_sent_delivered_read_arrive_signed(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    answer = await sandbox.post("/v23.0/106540352242922/messages", json=_send(SITI), headers=TOKEN)

    assert answer.status_code == 200
    shape = _sample("wa_send_response.json")
    assert answer.json().keys() == shape.keys()
    assert answer.json()["contacts"] == [{"input": SITI, "wa_id": SITI}]
    wamid = answer.json()["messages"][0]["id"]
    assert wamid.startswith("wamid.")

    await eventually(lambda: _async(len(receiver.statuses()) == 3), what="three status webhooks")
    assert [s["status"] for s in receiver.statuses()] == ["sent", "delivered", "read"]
    assert {s["id"] for s in receiver.statuses()} == {wamid}
    assert {s["recipient_id"] for s in receiver.statuses()} == {SITI}
    for headers, body in receiver.posts:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-hub-signature-256"] == expected, "signed over the exact bytes posted"
        assert json.loads(body)["object"] == "whatsapp_business_account"

    phone = (await sandbox.get(f"/_sandbox/whatsapp/phones/{SITI}")).json()
    assert [(m["direction"], m["text"], m["status"]) for m in phone["messages"]] == [
        ("out", "Laporan Anda kami terima.", "read")
    ]


async def test_sends_without_a_token_or_without_text_are_refused_as_meta_does(sandbox: httpx.AsyncClient) -> None:
    unsigned = await sandbox.post("/v23.0/106540352242922/messages", json=_send(SITI))
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == 190
    empty = await sandbox.post("/v23.0/106540352242922/messages", json=_send(SITI, ""), headers=TOKEN)
    assert empty.status_code == 400 and empty.json()["error"]["code"] == 100
    long = await sandbox.post("/v23.0/106540352242922/messages", json=_send(SITI, "x" * 4097), headers=TOKEN)
    assert long.status_code == 400


@pytest.mark.parametrize(("code", "status"), [(130429, 429), (131026, 400), (131047, 400), (190, 401)])
async def test_scripted_errors_are_answered_as_the_samples_show(
    sandbox: httpx.AsyncClient, receiver: Receiver, code: int, status: int
) -> None:
    script = await sandbox.post(f"/_sandbox/whatsapp/recipients/{SITI}/script", json={"errors": [code]})
    assert script.status_code == 200

    refused = await sandbox.post("/v23.0/106540352242922/messages", json=_send(SITI), headers=TOKEN)
    accepted = await sandbox.post("/v23.0/106540352242922/messages", json=_send(SITI), headers=TOKEN)

    assert refused.status_code == status
    sample = _sample(f"wa_error_{code}.json")
    error, expected = refused.json()["error"], sample["error"]
    assert error.pop("fbtrace_id") and expected.pop("fbtrace_id")
    if code == 190:  # the session's expiry date is the sample's own
        assert error.pop("message").startswith("Error validating access token")
        expected.pop("message")
    assert error == expected
    assert accepted.status_code == 200, "each scripted error is used once"


async def test_scripted_failure_ids_and_silence(sandbox: httpx.AsyncClient, receiver: Receiver) -> None:
    await sandbox.post(
        f"/_sandbox/whatsapp/recipients/{SITI}/script",
        json={"failures": [131026], "message_ids": ["wamid.FIXED-1", "wamid.FIXED-2"]},
    )
    failed = await sandbox.post("/v23.0/106540352242922/messages", json=_send(SITI), headers=TOKEN)
    assert failed.json()["messages"][0]["id"] == "wamid.FIXED-1"
    await eventually(lambda: _async(receiver.statuses()), what="the failed status")
    [status] = receiver.statuses()
    assert (status["id"], status["status"], status["errors"][0]["code"]) == ("wamid.FIXED-1", "failed", 131026)

    await sandbox.post(f"/_sandbox/whatsapp/recipients/{SITI}/script", json={"statuses": False})
    quiet = await sandbox.post("/v23.0/106540352242922/messages", json=_send(SITI), headers=TOKEN)
    assert quiet.json()["messages"][0]["id"] == "wamid.FIXED-2"
    # A last send to someone else: once its statuses are in, the silent one would have had its own.
    other = await sandbox.post("/v23.0/106540352242922/messages", json=_send("6285700000001"), headers=TOKEN)
    other_id = other.json()["messages"][0]["id"]
    await eventually(
        lambda: _async([s for s in receiver.statuses() if s["id"] == other_id and s["status"] == "read"]),
        what="the other recipient's read status",
    )
    assert not [s for s in receiver.statuses() if s["id"] == "wamid.FIXED-2"]

    assert (await sandbox.delete(f"/_sandbox/whatsapp/recipients/{SITI}/script")).status_code == 204
    assert (await sandbox.post("/_sandbox/whatsapp/recipients/abc/script", json={})).status_code == 422


async def test_media_is_two_steps_with_the_token_and_its_url_is_checked(sandbox: httpx.AsyncClient) -> None:
    photo = b"\xff\xd8\xff\xe0 a photo of a pothole on Jalan Pemuda"
    uploaded = (
        await sandbox.post("/_sandbox/whatsapp/media", content=photo, headers={"Content-Type": "image/jpeg"})
    ).json()
    assert uploaded["sha256"] == base64.b64encode(hashlib.sha256(photo).digest()).decode()

    assert (await sandbox.get(f"/v23.0/{uploaded['id']}")).status_code == 401
    meta = await sandbox.get(f"/v23.0/{uploaded['id']}", params={"phone_number_id": "106540352242922"}, headers=TOKEN)
    assert meta.status_code == 200
    assert meta.json().keys() == _sample("wa_media_url_response.json").keys()
    assert (meta.json()["mime_type"], meta.json()["file_size"]) == ("image/jpeg", str(len(photo)))

    url = meta.json()["url"]
    assert (await sandbox.get(url)).status_code == 401, "a plain GET without the token gets nothing"
    download = await sandbox.get(url, headers=TOKEN)
    assert download.status_code == 200 and download.content == photo
    assert download.headers["content-type"] == "image/jpeg"
    assert (await sandbox.get(url.replace("hash=", "hash=0"), headers=TOKEN)).status_code == 404

    unknown = await sandbox.get("/v23.0/999999999999999", params={"phone_number_id": "1"}, headers=TOKEN)
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == 100
    calls = (await sandbox.get("/_sandbox/calls")).json()
    assert f"<{len(photo)} bytes of image/jpeg>" in [c["response"] for c in calls], "bytes are not kept in the log"


async def test_the_citizens_phone_posts_signed_webhooks_retried_until_taken_and_shows_read_ticks(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.answers = [503, 503]  # ingest-wa unavailable twice, as during a broker outage
    typed = await sandbox.post(
        "/_sandbox/whatsapp/phones/0812-3456-7890/messages",
        json={"name": "Siti Aminah", "text": "Jalan di depan SDN 2 Kragan berlubang — bahaya 🙏"},
    )
    assert typed.status_code == 202
    wamid = typed.json()["id"]

    async def delivered() -> bool:
        phone = (await sandbox.get(f"/_sandbox/whatsapp/phones/{SITI}")).json()
        return bool(phone["messages"][0]["status"] == "delivered")

    await eventually(delivered, what="the message taken by ingest-wa after two refusals")
    assert len(receiver.posts) == 3
    assert len({body for _, body in receiver.posts}) == 1, "a retry resends the same bytes"
    headers, body = receiver.posts[-1]
    assert b"\\u2014" in body and b"\\ud83d\\ude4f" in body, "non-ASCII escaped as Meta sends it"
    assert headers["x-hub-signature-256"] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    [message] = receiver.messages()
    assert (message["from"], message["id"], message["type"]) == (SITI, wamid, "text")
    assert message["text"]["body"] == "Jalan di depan SDN 2 Kragan berlubang — bahaya 🙏"
    value = receiver.bodies()[0]["entry"][0]["changes"][0]["value"]
    assert value["contacts"] == [{"profile": {"name": "Siti Aminah"}, "wa_id": SITI}]
    assert value["metadata"]["phone_number_id"] == "106540352242922"

    read = await sandbox.post(
        "/v23.0/106540352242922/messages",
        json={"messaging_product": "whatsapp", "status": "read", "message_id": wamid},
        headers=TOKEN,
    )
    assert read.json() == {"success": True}
    phone = (await sandbox.get(f"/_sandbox/whatsapp/phones/{SITI}")).json()
    assert phone["messages"][0]["status"] == "read" and phone["window_open"] is True

    photo = await sandbox.post("/_sandbox/whatsapp/media", content=b"PNG...", headers={"Content-Type": "image/png"})
    sent = await sandbox.post(
        f"/_sandbox/whatsapp/phones/{SITI}/messages", json={"media_id": photo.json()["id"], "text": "Ini fotonya"}
    )
    assert sent.status_code == 202
    await eventually(lambda: _async(len(receiver.messages()) == 2), what="the photo's webhook")
    image = receiver.messages()[1]
    assert image["type"] == "image"
    assert image["image"] == {
        "mime_type": "image/png",
        "sha256": photo.json()["sha256"],
        "id": photo.json()["id"],
        "caption": "Ini fotonya",
    }

    nothing = await sandbox.post(f"/_sandbox/whatsapp/phones/{SITI}/messages", json={"text": "  "})
    assert nothing.status_code == 422
    page = await sandbox.get("/phone")
    assert page.status_code == 200 and "Ponsel warga" in page.text
    assert "/phone" in (await sandbox.get("/")).text


async def _async(value: Any) -> Any:
    return value
