"""Fault injection on the notifier: killed (-9) in the middle of a burst of WhatsApp acknowledgements, after some
were sent and before their Kafka offsets were committed, then restarted. Every citizen's phone (the sandbox)
shows the acknowledgement once: the restarted notifier finds what was sent in its send ledger."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from suara_devstack.stack import Stack
from suara_devstack.testing import eventually, url
from suara_notifier.ledger import COLLECTION
from suara_notifier.main import GROUP_ID
from suara_shared import db, topics
from suara_shared.events import OutboundReply

pytestmark = pytest.mark.e2e

TOKEN = {"Authorization": "Bearer dev-only-admin-token"}
#: Enough acknowledgements that every partition holds several: a partition's offset is committed only after all
#: of its records in one poll were handled, which leaves room to kill between a send and its commit.
CITIZENS = 30
ROUNDS = 3


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
async def ledger(stack: Stack) -> AsyncIterator[db.Collection]:
    client, database = db.connect(stack.infra.mongodb_uri)
    yield database[COLLECTION]
    await db.close(client)


def _number() -> tuple[str, str]:
    local = "0813" + "".join(str(secrets.randbelow(10)) for _ in range(8))
    return local, "62" + local[1:]


async def _acknowledgements(http: httpx.AsyncClient, stack: Stack, wa_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Each citizen's acknowledgement (the outbound message on their ticket, with the ticket's reference), once
    every one exists."""
    found: dict[str, dict[str, Any]] = {}

    async def probe() -> bool:
        listing = await http.get(
            url(stack, "ticketing", "/api/v1/tickets"), headers=TOKEN, params={"channel": "whatsapp", "limit": 100}
        )
        for item in listing.json()["items"]:
            wa_id, reference = item["citizen"]["channel_user_id"], item["reference"]
            if wa_id in wa_ids and wa_id not in found:
                ticket = (await http.get(url(stack, "ticketing", f"/api/v1/tickets/{reference}"), headers=TOKEN)).json()
                acks = [m for m in ticket["messages"] if m["direction"] == "outbound"]
                if acks:
                    found[wa_id] = {**acks[0], "reference": reference}
        return found.keys() == wa_ids

    await eventually(probe, within=90, what="every citizen's ticket with its acknowledgement")
    return found


async def _first_sent(ledger: db.Collection, ids: list[str]) -> None:
    """Return as soon as one of `ids` is recorded sent: polled without pause, so the kill that follows lands
    while that partition's other records are still being handled."""
    deadline = asyncio.get_running_loop().time() + 90
    while await ledger.find_one({"_id": {"$in": ids}, "state": "sent"}) is None:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("no acknowledgement sent within 90 s of the restart")


async def _uncommitted(stack: Stack) -> set[str]:
    """Outbound ids on the outbound topic past the notifier group's committed offsets (read, never committed)."""
    ids: set[str] = set()
    group = AIOKafkaConsumer(bootstrap_servers=stack.infra.bootstrap, group_id=GROUP_ID, enable_auto_commit=False)
    reader = AIOKafkaConsumer(bootstrap_servers=stack.infra.bootstrap, group_id=None, enable_auto_commit=False)
    await group.start()
    await reader.start()
    try:
        await reader.topics()  # fetches the cluster's metadata, partitions included
        partitions = [TopicPartition(topics.OUTBOUND, p) for p in sorted(reader.partitions_for_topic(topics.OUTBOUND))]
        assert partitions
        reader.assign(partitions)
        ends = await reader.end_offsets(partitions)
        for tp in partitions:
            reader.seek(tp, await group.committed(tp) or 0)
        pending = set(partitions)
        while pending:
            for records in (await reader.getmany(timeout_ms=500)).values():
                ids |= {OutboundReply.model_validate_json(r.value or b"").outbound_id for r in records}
            pending = {tp for tp in pending if await reader.position(tp) < ends[tp]}
    finally:
        await reader.stop()
        await group.stop()
    return ids


async def _phone_acks(http: httpx.AsyncClient, stack: Stack, wa_id: str, reference: str) -> list[dict[str, Any]]:
    phone = (await http.get(url(stack, "sandbox", f"/_sandbox/whatsapp/phones/{wa_id}"))).json()
    return [m for m in phone["messages"] if m["direction"] == "out" and reference in (m["text"] or "")]


async def test_a_notifier_killed_between_sends_and_their_commit_sends_each_acknowledgement_once(
    stack: Stack, http: httpx.AsyncClient, ledger: db.Collection
) -> None:
    try:
        for _ in range(ROUNDS):
            # The notifier is down while citizens write: their acknowledgements wait in the topic.
            stack.kill_service("notifier")
            citizens = dict(_number() for _ in range(CITIZENS))
            for number in citizens:
                sent = await http.post(
                    url(stack, "sandbox", f"/_sandbox/whatsapp/phones/{number}/messages"),
                    json={"name": "Warga", "text": "Saluran air di Desa Tireman mampet"},
                )
                assert sent.status_code == 202, sent.text
            acks = await _acknowledgements(http, stack, set(citizens.values()))
            ids = [m["id"] for m in acks.values()]

            # Back up, it works through them; killed again as soon as the first one is recorded sent.
            await asyncio.to_thread(stack.restart_service, "notifier")
            await _first_sent(ledger, ids)
            stack.kill_service("notifier")
            recorded = {d["_id"] async for d in ledger.find({"_id": {"$in": ids}, "state": "sent"})}
            caught = recorded & await _uncommitted(stack)
            await asyncio.to_thread(stack.restart_service, "notifier")
            if caught:
                break
        else:
            raise AssertionError(f"in {ROUNDS} rounds the kill never fell between a send and its commit")

        async def all_settled() -> dict[str, dict[str, Any]] | None:
            found = await _acknowledgements(http, stack, set(citizens.values()))
            return found if all(m["delivery_status"] != "queued" for m in found.values()) else None

        # A notifier killed with a call in flight leaves a claim that lapses after SEND_LEASE_SECONDS (60 s).
        settled = await eventually(all_settled, within=180, what="every acknowledgement's outcome")
        by_id = {m["id"]: (wa_id, m) for wa_id, m in settled.items()}
        for outbound_id in caught:
            wa_id, message = by_id[outbound_id]
            assert message["delivery_status"] != "failed", message
        for wa_id, message in settled.items():
            on_phone = await _phone_acks(http, stack, wa_id, message["reference"])
            if message["id"] in caught or message["delivery_status"] != "failed":
                assert len(on_phone) == 1, f"{wa_id}: {len(on_phone)} acknowledgements on the phone"
            else:  # killed with the call in flight: never sent again, shown failed on the ticket
                assert message["delivery_error"]["code"] == "outcome_unknown", message
                assert len(on_phone) <= 1
    finally:
        run = stack.running.get("notifier")
        if run is None or run.proc.poll() is not None:
            await asyncio.to_thread(stack.restart_service, "notifier")
