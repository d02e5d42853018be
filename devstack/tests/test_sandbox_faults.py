"""The sandbox's fault switches (`/_sandbox/faults`), as `make chaos` uses them: a Graph API that answers sends
with 500 and 429 for a while and then recovers, webhooks delivered twice, and the counts that prove both."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from suara_devstack.sandbox.app import SandboxSettings, create_app
from suara_devstack.testing import eventually, serve_app

TOKEN = {"Authorization": "Bearer sandbox-test-token"}
SITI, BUDI = "6281234567890", "6285700000001"
SEND = "/v23.0/106540352242922/messages"


@dataclass
class Receiver:
    """A stand-in ingest-wa: records every webhook body, answers from `answers` (then 200)."""

    posts: list[tuple[str, bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    def message_ids(self) -> list[str]:
        ids = []
        for _, body in self.posts:
            for change in json.loads(body)["entry"][0]["changes"]:
                ids += [m["id"] for m in change["value"].get("messages", [])]
        return ids


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    got = Receiver()
    app = FastAPI()

    @app.post("/webhooks/whatsapp")
    async def webhook(request: Request) -> JSONResponse:
        got.posts.append((request.headers["x-hub-signature-256"], await request.body()))
        status = got.answers.pop(0) if got.answers else 200
        return JSONResponse({}, status_code=status)

    async with serve_app(app) as url:
        yield got, url


@pytest.fixture
async def sandbox(receiver: tuple[Receiver, str]) -> AsyncIterator[httpx.AsyncClient]:
    settings = SandboxSettings(ingest_wa_url=receiver[1], meta_app_secret="s", sandbox_status_delay_seconds=0.01)
    async with serve_app(create_app(settings=settings)) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


def _send(to: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": "Laporan Anda kami terima."}}


async def _async(value: Any) -> Any:
    return value


async def test_a_graph_outage_answers_each_recipient_500_then_429_until_switched_off(
    sandbox: httpx.AsyncClient,
) -> None:
    on = await sandbox.put("/_sandbox/faults/graph", json={"statuses": [500, 429], "retry_after": 7.5})
    assert on.status_code == 200 and on.json()["graph_outage"]["statuses"] == [500, 429]

    first, other, second = [await sandbox.post(SEND, json=_send(to), headers=TOKEN) for to in (SITI, BUDI, SITI)]
    # Each recipient's retries meet both errors, whoever else is being refused meanwhile.
    assert (first.status_code, other.status_code, second.status_code) == (500, 500, 429)
    assert first.json()["error"]["code"] == 131000 and second.json()["error"]["code"] == 130429
    assert second.headers["retry-after"] == "8" and "retry-after" not in first.headers
    tweet = await sandbox.post("/2/tweets", json={"text": "Terima kasih"}, headers=TOKEN)
    assert tweet.status_code == 201, "the X API is not the Graph API"
    calls = (await sandbox.get("/_sandbox/calls")).json()
    assert [c["status"] for c in calls] == [500, 500, 429, 201], "refusals are recorded like any call"

    off = await sandbox.delete("/_sandbox/faults/graph")
    assert off.json() == {"graph_outage": None, "graph_refused": {"429": 1, "500": 2}, "webhook_duplicate_ratio": 0.0}
    after = await sandbox.post(SEND, json=_send(SITI), headers=TOKEN)
    assert after.status_code == 200 and after.json()["messages"][0]["id"].startswith("wamid.")


async def test_a_partial_outage_refuses_its_share_and_a_timed_one_recovers_by_itself(
    sandbox: httpx.AsyncClient,
) -> None:
    await sandbox.put("/_sandbox/faults/graph", json={"statuses": [429], "ratio": 0.5})
    answers = [(await sandbox.post(SEND, json=_send(SITI), headers=TOKEN)).status_code for _ in range(6)]
    assert answers == [200, 429, 200, 429, 200, 429], "every other send, evenly"

    await sandbox.put("/_sandbox/faults/graph", json={"statuses": [500], "seconds": 0.5})
    assert (await sandbox.post(SEND, json=_send(SITI), headers=TOKEN)).status_code == 500

    async def recovered() -> bool:
        return (await sandbox.post(SEND, json=_send(SITI), headers=TOKEN)).status_code == 200

    await eventually(recovered, within=20, what="the Graph API answering again")
    assert (await sandbox.get("/_sandbox/faults")).json()["graph_outage"] is None


async def test_only_the_errors_meta_gives_can_be_played(sandbox: httpx.AsyncClient) -> None:
    assert (await sandbox.put("/_sandbox/faults/graph", json={"statuses": [404]})).status_code == 422
    assert (await sandbox.put("/_sandbox/faults/graph", json={"ratio": 0})).status_code == 422
    assert (await sandbox.put("/_sandbox/faults/webhooks", json={"ratio": 1.5})).status_code == 422


async def test_a_share_of_the_webhooks_is_delivered_twice_byte_for_byte(
    sandbox: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    got, _ = receiver
    await sandbox.put("/_sandbox/faults/webhooks", json={"ratio": 0.5})

    async def quiet() -> bool:
        return bool((await sandbox.get("/_sandbox/whatsapp/webhooks/stats")).json()["in_hand"] == 0)

    ids = [f"wamid.chaos-test-{i}" for i in range(4)]
    for i, wamid in enumerate(ids):
        written = await sandbox.post(f"/_sandbox/whatsapp/phones/{SITI}/messages", json={"text": f"m{i}", "id": wamid})
        assert written.status_code == 202 and written.json()["id"] == wamid
        # One at a time, so that which ones are posted twice does not depend on who answers first.
        await eventually(quiet, what=f"message {i} posted")
    assert sorted(got.message_ids()) == sorted([*ids, ids[1], ids[3]]), "two in four, evenly"
    for wamid in (ids[1], ids[3]):
        copies = {post for post in got.posts if wamid.encode() in post[1]}
        assert len(copies) == 1, "the second copy carries the same bytes and signature"
    stats = (await sandbox.get("/_sandbox/whatsapp/webhooks/stats")).json()
    assert stats == {"answers": {"200": 6}, "duplicates": {"message": 2}, "abandoned": 0, "in_hand": 0}


async def test_webhook_stats_count_refusals_and_phones_can_be_listed_with_their_chats(
    sandbox: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    got, _ = receiver
    got.answers = [503, 503]
    await sandbox.post(f"/_sandbox/whatsapp/phones/{SITI}/messages", json={"text": "Jalan rusak", "id": "wamid.x-1"})
    await sandbox.post(f"/_sandbox/whatsapp/phones/{BUDI}/messages", json={"text": "Lampu mati"})

    async def taken() -> bool:
        stats = (await sandbox.get("/_sandbox/whatsapp/webhooks/stats")).json()
        return bool(stats["in_hand"] == 0 and stats["answers"].get("200") == 2)

    await eventually(taken, what="both messages taken after the 503s")
    stats = (await sandbox.get("/_sandbox/whatsapp/webhooks/stats")).json()
    assert stats["answers"] == {"200": 2, "503": 2}

    listed = (await sandbox.get("/_sandbox/whatsapp/phones", params={"prefix": "62812", "detail": "true"})).json()
    assert [p["wa_id"] for p in listed] == [SITI]
    assert [(m["id"], m["direction"], m["status"]) for m in listed[0]["messages"]] == [("wamid.x-1", "in", "delivered")]
    assert len((await sandbox.get("/_sandbox/whatsapp/phones")).json()) == 2
    bad_id = await sandbox.post(f"/_sandbox/whatsapp/phones/{SITI}/messages", json={"text": "x", "id": "nope"})
    assert bad_id.status_code == 422
