"""The console's poll for what changed (`/api/v1/changes`), as an agent's screen uses it: a reply's ticks refresh
the ticket on screen, without the tick counting as a change to the citizen's complaint."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from suara_shared.events import Channel, DeliveryState, DeliveryStatus
from suara_ticketing import live

from .conftest import App, whatsapp_message


async def moment(app: App) -> str:
    """The `since` to ask from, with what is written next safely after it: the database keeps times to the
    millisecond, so a write within the same millisecond would be stored before it (the poll's look-back covers that
    in service; these tests turn it off)."""
    since: str = (await app.client.get("/api/v1/changes")).json()["at"]
    await asyncio.sleep(0.002)
    return since


async def changed(app: App, since: str, headers: dict[str, str] | None = None) -> list[str]:
    answer = await app.client.get("/api/v1/changes", params={"since": since}, headers=headers or {})
    assert answer.status_code == 200, answer.text
    return [t["reference"] for t in answer.json()["tickets"]]


async def test_a_replys_ticks_reach_the_consoles_poll_without_changing_the_ticket(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The poll looks back a little for writes that commit late; here only what happened after `since` may show.
    monkeypatch.setattr(live, "LOOK_BACK", timedelta(0))
    await app.service.handle_inbound(whatsapp_message("Air PDAM tidak mengalir sejak kemarin", number="6281233300001"))
    await app.service.handle_inbound(whatsapp_message("Jalan berlubang di depan SD Sulang", number="6281233300002"))
    tickets = {t["department"]: t["reference"] for t in (await app.client.get("/api/v1/tickets")).json()["items"]}
    water, road = tickets["PDAM"], tickets["DPUPR"]
    created = await app.client.post("/api/v1/tokens", json={"name": "budi.pdam", "role": "agent", "department": "PDAM"})
    pdam = {"Authorization": f"Bearer {created.json()['token']}"}

    def ack_of(ticket: dict[str, Any]) -> dict[str, Any]:
        return next(m for m in ticket["messages"] if m["purpose"] == "acknowledgement")

    before = {ref: (await app.client.get(f"/api/v1/tickets/{ref}")).json() for ref in (water, road)}
    since = await moment(app)
    # The consumer's batch: the notifier's reports and the phones' delivered, for both acknowledgements.
    statuses = []
    for ref, ticket in before.items():
        wamid = f"wamid.ack-{ref}"
        statuses += [
            DeliveryStatus(
                channel=Channel.WHATSAPP,
                outbound_id=ack_of(ticket)["id"],
                platform_message_id=wamid,
                status=DeliveryState.SENT,
            ),
            DeliveryStatus(channel=Channel.WHATSAPP, platform_message_id=wamid, status=DeliveryState.DELIVERED),
        ]
    await app.service.record_plain_deliveries(statuses)

    assert sorted(await changed(app, since)) == sorted([water, road])  # the whole desk's screen
    assert await changed(app, since, pdam) == [water]  # a department's agent: their own ticket only
    for ref, was in before.items():
        now = (await app.client.get(f"/api/v1/tickets/{ref}")).json()
        assert ack_of(now)["delivery_status"] == "delivered"
        # The citizen's complaint did not change: its `updated_at`, which `cek` answers with, stays.
        assert now["updated_at"] == was["updated_at"]

    # A single status (a failure, say, or one the consumer applies alone) refreshes the screen the same way.
    since = await moment(app)
    read = DeliveryStatus(channel=Channel.WHATSAPP, platform_message_id=f"wamid.ack-{road}", status=DeliveryState.READ)
    await app.service.record_delivery(read)
    assert await changed(app, since) == [road] and await changed(app, since, pdam) == []
    assert await changed(app, (datetime.now(UTC) + timedelta(minutes=1)).isoformat()) == []


async def test_when_a_flood_changes_more_tickets_than_listed_the_answer_says_so(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer lists at most `MAX_CHANGES` tickets. Past that, a ticket on an agent's screen may be among those
    left out (a department's agent's, above all, whose ticks are cut before their department is known): `more`
    tells the console to reload what it shows."""
    monkeypatch.setattr(live, "LOOK_BACK", timedelta(0))
    for number in ("6281233300011", "6281233300012"):
        await app.service.handle_inbound(whatsapp_message("Air PDAM keruh dan berbau", number=number))
    references = [t["reference"] for t in (await app.client.get("/api/v1/tickets")).json()["items"]]
    since = await moment(app)
    await app.service.mark_ticked(references)

    whole = (await app.client.get("/api/v1/changes", params={"since": since})).json()
    assert sorted(t["reference"] for t in whole["tickets"]) == sorted(references) and whole["more"] is False
    monkeypatch.setattr(live, "MAX_CHANGES", 1)
    cut = (await app.client.get("/api/v1/changes", params={"since": since})).json()
    assert len(cut["tickets"]) == 1 and cut["tickets"][0]["reference"] in references and cut["more"] is True
