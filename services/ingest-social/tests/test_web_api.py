"""`POST /api/v1/web/complaints` against the real embedded broker: what is accepted, what reaches the INBOUND
topic, what is refused and why, and what a client sees when the broker is away."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import httpx
import pytest

from suara_ingest_social.config import Settings
from suara_shared.events import InboundMessage

#: The `inbound` fixture: INBOUND records (key, stored bytes, event) whose event matches.
ReadInbound = Callable[[Callable[[InboundMessage], bool]], Awaitable[list[tuple[bytes | None, bytes, InboundMessage]]]]


def by_submission(submission_id: str) -> Callable[[InboundMessage], bool]:
    return lambda event: event.metadata.get("submission_id") == submission_id


def by_text(marker: str) -> Callable[[InboundMessage], bool]:
    return lambda event: marker in (event.text or "")


COMPLAINT = "Jalan di depan balai Desa Tireman berlubang besar dan sudah dua minggu tidak diperbaiki."


async def test_valid_complaint_is_acknowledged_and_published_once(
    client: httpx.AsyncClient, inbound: ReadInbound
) -> None:
    response = await client.post(
        "/api/v1/web/complaints",
        json={
            "text": f"  {COMPLAINT}  ",
            "name": "Siti Aminah",
            "phone": "0812-3456-7890",
            "email": "siti@example.id",
            "kecamatan": "rembang",
            "desa": "Tireman",
        },
    )

    assert response.status_code == 202
    body = response.json()
    submission_id = body["id"]
    assert len(submission_id) == 32 and int(submission_id, 16) >= 0
    assert body["status"] == "received"
    assert body["status_url"] == f"http://suara.test/status/{submission_id}"

    records = await inbound(by_submission(submission_id))
    assert len(records) == 1
    key, _, event = records[0]
    assert key == event.partition_key == f"web:{submission_id}".encode()
    assert event.channel == "web"
    assert event.platform_message_id == submission_id
    assert event.conversation_key == submission_id
    assert event.kind == "text"
    assert event.text == COMPLAINT
    assert event.sender.channel_user_id == submission_id
    assert event.sender.display_name == "Siti Aminah"
    assert event.sender.phone == "+6281234567890"
    assert event.sender.email == "siti@example.id"
    assert event.metadata == {
        "kecamatan": "Rembang",
        "desa": "Tireman",
        "anonymous": False,
        "confidential": False,
        "submission_id": submission_id,
    }


async def test_anonymous_complaint_keeps_no_identity_in_the_event(
    client: httpx.AsyncClient, inbound: ReadInbound
) -> None:
    response = await client.post(
        "/api/v1/web/complaints",
        json={
            "text": COMPLAINT,
            "anonymous": True,
            "name": "Budi Santoso",
            "phone": "0813-2222-3333",
            "email": "budi@example.id",
            "kecamatan": "Lasem",
        },
    )

    assert response.status_code == 202
    submission_id = response.json()["id"]
    [(_, stored, event)] = await inbound(by_submission(submission_id))
    assert (event.sender.display_name, event.sender.phone, event.sender.email) == (None, None, None)
    assert event.metadata["anonymous"] is True
    for secret in (b"Budi", b"0813", b"81322223333", b"budi@example.id"):
        assert secret not in stored


async def test_a_confidential_complaint_is_marked_so_in_the_event(
    client: httpx.AsyncClient, inbound: ReadInbound
) -> None:
    response = await client.post("/api/v1/web/complaints", json={"text": COMPLAINT, "confidential": True})

    assert response.status_code == 202
    [(_, _, event)] = await inbound(by_submission(response.json()["id"]))
    assert event.metadata["confidential"] is True


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("text", "rusak"),
        ("phone", "12345"),
        ("email", "bukan-alamat-email"),
        ("kecamatan", "Gotham"),
        ("name", "N" * 121),
    ],
)
async def test_invalid_field_is_refused_naming_it_and_nothing_is_published(
    client: httpx.AsyncClient, inbound: ReadInbound, field: str, value: str
) -> None:
    marker = uuid.uuid4().hex
    payload = {"text": f"{COMPLAINT} {marker}", "kecamatan": "Sulang", field: value}

    response = await client.post("/api/v1/web/complaints", json=payload)

    assert response.status_code == 422
    body = response.json()
    assert body["error_code"] == "validation_error"
    assert [e["field"] for e in body["errors"]] == [field]
    assert body["message"].startswith(f"{field}: ")
    assert await inbound(by_text(marker)) == []


async def test_messages_say_what_is_wrong(client: httpx.AsyncClient) -> None:
    bad_phone = await client.post("/api/v1/web/complaints", json={"text": COMPLAINT, "phone": "12345"})
    unknown_place = await client.post("/api/v1/web/complaints", json={"text": COMPLAINT, "kecamatan": "Gotham"})
    missing_text = await client.post("/api/v1/web/complaints", json={"name": "Siti"})

    assert "Indonesian phone number" in bad_phone.json()["errors"][0]["message"]
    assert "Lasem" in unknown_place.json()["errors"][0]["message"]
    assert missing_text.json()["errors"] == [{"field": "text", "message": "Field required"}]


async def test_broker_down_answers_503_and_the_service_still_starts(client_without_broker: httpx.AsyncClient) -> None:
    response = await client_without_broker.post("/api/v1/web/complaints", json={"text": COMPLAINT})

    assert response.status_code == 503
    assert response.json()["error_code"] == "broker_unavailable"
    assert (await client_without_broker.get("/healthz")).status_code == 200
    ready = await client_without_broker.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"broker": False}


async def test_ready_when_the_broker_answers(client: httpx.AsyncClient) -> None:
    ready = await client.get("/readyz")

    assert ready.status_code == 200
    assert ready.json()["checks"] == {"broker": True}


@pytest.mark.parametrize("path", ["/api/v1/web/complaints", "/lapor"])
async def test_body_over_one_mebibyte_is_refused(client: httpx.AsyncClient, inbound: ReadInbound, path: str) -> None:
    marker = uuid.uuid4().hex
    huge = f"{COMPLAINT} {marker} " + "x" * (1024 * 1024)

    response = await client.post(path, json={"text": huge})

    assert response.status_code == 413
    assert response.json()["error_code"] == "payload_too_large"
    assert await inbound(by_text(marker)) == []


async def test_status_url_uses_the_public_base_when_configured(
    app_settings: Settings, serve: Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]
) -> None:
    public = app_settings.model_copy(update={"public_status_url": "https://lapor.rembangkab.go.id/status/"})
    async with serve(public) as http:
        response = await http.post("/api/v1/web/complaints", json={"text": COMPLAINT})

    body = response.json()
    assert body["status_url"] == f"https://lapor.rembangkab.go.id/status/{body['id']}"


async def test_a_complaint_sent_again_under_its_idempotency_key_is_the_same_complaint(
    client: httpx.AsyncClient, inbound: ReadInbound
) -> None:
    """A client whose first try got a 503 (or lost the answer) sends again with the same key: if the first did
    reach the broker, the two are one message, which ticketing keeps once."""
    marker = uuid.uuid4().hex
    complaint = {"text": f"{COMPLAINT} ({marker})", "kecamatan": "Rembang"}
    key = f"retry-{marker}"
    first = await client.post("/api/v1/web/complaints", json=complaint, headers={"Idempotency-Key": key})
    again = await client.post("/api/v1/web/complaints", json=complaint, headers={"Idempotency-Key": key})
    other = await client.post(
        "/api/v1/web/complaints",
        json={**complaint, "text": f"Sampah menumpuk di pasar ({marker})"},
        headers={"Idempotency-Key": key},
    )
    without = await client.post("/api/v1/web/complaints", json=complaint)

    assert first.status_code == again.status_code == other.status_code == without.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    # Another complaint under the same key, or the same one without a key, is never taken for the first.
    assert len({first.json()["id"], other.json()["id"], without.json()["id"]}) == 3
    records = await inbound(by_text(marker))
    assert sorted(event.platform_message_id for _, _, event in records) == sorted(
        [first.json()["id"], first.json()["id"], other.json()["id"], without.json()["id"]]
    )

    refused = await client.post("/api/v1/web/complaints", json=complaint, headers={"Idempotency-Key": "a b"})
    assert refused.status_code == 422
