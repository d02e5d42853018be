"""The channel sandbox answers the platform calls Suara makes as Meta and X do, and records each one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from suara_devstack.sandbox.app import create_app

WA_SEND = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "to": "6281234567890",
    "type": "text",
    "text": {"preview_url": False, "body": "Laporan Anda tercatat dengan nomor RMB-2025-000001."},
}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as c:
        yield c


async def _calls(client: httpx.AsyncClient, since: int = 0) -> list[dict[str, Any]]:
    response = await client.get("/_sandbox/calls", params={"since": since})
    assert response.status_code == 200
    calls: list[dict[str, Any]] = response.json()
    return calls


async def test_whatsapp_send_is_answered_recorded_listed_and_cleared(client: httpx.AsyncClient) -> None:
    sent = await client.post(
        "/v23.0/106540352242922/messages", json=WA_SEND, headers={"Authorization": "Bearer sandbox-token"}
    )

    assert sent.status_code == 200
    answer = sent.json()
    assert answer["messaging_product"] == "whatsapp"
    assert answer["contacts"] == [{"input": "6281234567890", "wa_id": "6281234567890"}]
    assert answer["messages"][0]["id"].startswith("wamid.")

    [call] = await _calls(client)
    assert call["seq"] == 1
    assert (call["method"], call["path"]) == ("POST", "/v23.0/106540352242922/messages")
    assert call["body"] == WA_SEND
    assert call["authorization"] is True and call["auth_scheme"] == "Bearer"
    assert call["content_type"] == "application/json"
    assert call["response"] == answer

    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<meta http-equiv="refresh" content="2">' in page.text
    assert "/v23.0/106540352242922/messages" in page.text
    assert "RMB-2025-000001" in page.text

    assert (await client.delete("/_sandbox/calls")).status_code == 204
    assert await _calls(client) == []
    assert "Belum ada panggilan tercatat" in (await client.get("/")).text


async def test_each_platform_call_gets_its_platform_shaped_answer(client: httpx.AsyncClient) -> None:
    messenger = await client.post(
        "/v23.0/me/messages",
        json={"recipient": {"id": "6543210987654321"}, "messaging_type": "RESPONSE", "message": {"text": "Halo"}},
    )
    assert messenger.status_code == 200
    assert messenger.json()["recipient_id"] == "6543210987654321"
    assert messenger.json()["message_id"]

    instagram = await client.post(
        "/v23.0/17841400000000001/messages", json={"recipient": {"id": "1234567890123456"}, "message": {"text": "Halo"}}
    )
    assert set(instagram.json()) == {"recipient_id", "message_id"}

    comment = await client.post("/v23.0/555666777888999_1122334455667788/comments", data={"message": "Halo"})
    assert comment.json()["id"].startswith("555666777888999_")
    ig_reply = await client.post("/v23.0/17860000000000001/replies", params={"message": "Halo"})
    assert ig_reply.json()["id"].isdigit()

    tweet = await client.post(
        "/2/tweets",
        json={"text": "@warga Laporan Anda kami terima", "reply": {"in_reply_to_tweet_id": "1797000000000000002"}},
    )
    assert tweet.status_code == 201
    assert tweet.json()["data"]["text"] == "@warga Laporan Anda kami terima"
    assert tweet.json()["data"]["id"]

    anything = await client.get("/v23.0/me", params={"access_token": "sandbox-page-token"})
    assert anything.json() == {"success": True}

    calls = await _calls(client)
    assert [c["seq"] for c in calls] == [1, 2, 3, 4, 5, 6]
    assert calls[2]["body"] == "message=Halo", "a form body is recorded as the text that was sent"
    assert calls[5]["query"] == {"access_token": "***"}, "tokens are never kept"
    assert calls[5]["authorization"] is False
    assert [c["seq"] for c in await _calls(client, since=4)] == [5, 6]


async def test_form_encoded_graph_send_is_understood(client: httpx.AsyncClient) -> None:
    """facebook-sdk posts forms with JSON-encoded values and the token as a parameter."""
    sent = await client.post(
        "/v3.1/me/messages",
        data={"recipient": '{"id": "6543210987654321"}', "message": '{"text": "Halo"}', "access_token": "PAGE_TOKEN"},
    )

    assert sent.json()["recipient_id"] == "6543210987654321"
    [call] = await _calls(client)
    assert "PAGE_TOKEN" not in call["body"]


async def test_the_sandbox_own_paths_are_not_recorded(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/_sandbox/healthz")).json()["status"] == "ok"
    assert (await client.get("/")).status_code == 200
    assert (await client.get("/_sandbox/nothing-here")).status_code == 404

    assert await _calls(client) == []
