"""No reply goes out twice across notifier processes: a second notifier (the same one restarted after a crash, or
another replica after a rebalance) handed a reply the first already sent sends nothing and publishes the
recorded status; a claim left by a notifier that died with a call in flight is never sent again and fails
visibly; one left between attempts is sent; without the database nothing is sent. Real embedded database and
broker; WhatsApp through the channel sandbox over local HTTP."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pymongo.errors import AutoReconnect

from suara_devstack.infra import free_port
from suara_devstack.sandbox.app import create_app as create_sandbox
from suara_devstack.testing import serve_app
from suara_notifier.adapters import AdapterRegistry, SendResult, TransientSendError
from suara_notifier.adapters.fake import ScriptedAdapter
from suara_notifier.adapters.whatsapp import WhatsAppAdapter
from suara_notifier.config import Settings
from suara_notifier.delivery import OUTCOME_UNKNOWN, Notifier, RetryPolicy, ShuttingDown
from suara_notifier.ledger import Claim, SendLedger, SendState
from suara_shared import db
from suara_shared.events import Channel, DeliveryState, DeliveryStatus, Event, OutboundReply, utcnow
from suara_shared.kafka import BrokerUnavailable, Publisher, is_transient

StatusReader = Callable[..., Awaitable[dict[str, list[DeliveryStatus]]]]


@pytest.fixture
async def publisher(notifier_settings: Settings) -> AsyncIterator[Publisher]:
    pub = Publisher(notifier_settings)
    yield pub
    await pub.stop()


@pytest.fixture
async def sandbox() -> AsyncIterator[str]:
    async with serve_app(create_sandbox()) as url:
        yield url


def _process(
    settings: Settings, publisher: Publisher, ledger: SendLedger, adapter: Any, *, lease: float = 60.0
) -> Notifier:
    """One notifier process: its own adapters and its own identity in the shared ledger."""
    return Notifier(
        adapters=AdapterRegistry([adapter]),
        publisher=publisher,
        ledger=ledger,
        retry=RetryPolicy.from_settings(settings),
        lease_seconds=lease,
    )


def _reply(channel: Channel = Channel.FACEBOOK, to: str = "psid-7") -> OutboundReply:
    return OutboundReply(
        channel=channel,
        conversation_key=to,
        recipient=to,
        text="Terima kasih, laporan Anda sudah kami terima dengan nomor RMB-2026-000077.",
        ticket_reference="RMB-2026-000077",
        window_expires_at=utcnow() + timedelta(hours=3),
    )


async def _whatsapp_sends(sandbox: str, to: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        calls = (await http.get(f"{sandbox}/_sandbox/calls")).json()
    return [c for c in calls if c["path"].endswith("/messages") and c["body"].get("to") == to]


class _BrokerGone(Publisher):
    """The process died right after recording the platform's answer: its status never reached the broker."""

    async def publish(self, topic: str, event: Event, *, key: bytes | None = None) -> None:
        raise BrokerUnavailable("the process was killed before publishing")


async def test_a_reply_sent_before_a_crash_is_not_sent_again_by_the_restarted_notifier(
    notifier_settings: Settings, sandbox: str, database: db.Database, publisher: Publisher, read_statuses: StatusReader
) -> None:
    wa = {"meta_graph_url": sandbox, "wa_access_token": "sandbox-test-token", "wa_phone_number_id": "106540352242922"}
    settings = Settings.model_validate({**notifier_settings.model_dump(), **wa})
    to = "62812" + "".join(str(secrets.randbelow(10)) for _ in range(8))
    reply = _reply(Channel.WHATSAPP, to)
    first, second, third = (WhatsAppAdapter.from_settings(settings) for _ in range(3))
    try:
        # The first process sends and records the answer, then dies before its status is published or its
        # offset committed; the restarted process gets the reply again, and then once more (killed again).
        with pytest.raises(BrokerUnavailable):
            await _process(settings, _BrokerGone(settings), SendLedger(database), first).handle(reply)
        await _process(settings, publisher, SendLedger(database), second).handle(reply)
        await _process(settings, publisher, SendLedger(database), third).handle(reply)
    finally:
        for adapter in (first, second, third):
            await adapter.aclose()

    [send] = await _whatsapp_sends(sandbox, to)
    wamid = send["response"]["messages"][0]["id"]
    statuses = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert [(s.status, s.platform_message_id) for s in statuses] == [(DeliveryState.SENT, wamid)] * 2, (
        "the lost status is published by the next process, with the first one's wamid, and nothing is sent again"
    )


async def test_a_claim_left_with_a_call_in_flight_is_never_sent_again_and_fails_visibly(
    notifier_settings: Settings, database: db.Database, publisher: Publisher, read_statuses: StatusReader
) -> None:
    reply = _reply()
    # A notifier claimed the reply and was killed before the platform answered (or before it could record it).
    await SendLedger(database, owner="killed").claim(reply, lease=0.2)
    adapter = ScriptedAdapter(Channel.FACEBOOK, [SendResult(platform_message_id="m_second")])
    restarted = _process(notifier_settings, publisher, SendLedger(database), adapter)

    await restarted.handle(reply)
    await _process(notifier_settings, publisher, SendLedger(database), adapter).handle(reply)

    assert adapter.sent == [], "whether the platform took it is unknown: never risk a second copy"
    statuses = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert [(s.status, s.error.code if s.error else None) for s in statuses] == [
        (DeliveryState.FAILED, OUTCOME_UNKNOWN)
    ] * 2
    assert statuses[0].error is not None and "not sent again" in (statuses[0].error.detail or "")


async def test_a_claim_left_between_attempts_is_sent_by_the_next_notifier(
    notifier_settings: Settings, database: db.Database, publisher: Publisher, read_statuses: StatusReader
) -> None:
    reply = _reply()
    # Killed during the pause after a transient error: the platform took nothing.
    killed = SendLedger(database, owner="killed")
    await killed.claim(reply, lease=60)
    assert await killed.hold(reply.outbound_id, state=SendState.WAITING, lease=0.2)
    adapter = ScriptedAdapter(Channel.FACEBOOK, [SendResult(platform_message_id="m_taken_over")])

    await _process(notifier_settings, publisher, SendLedger(database), adapter).handle(reply)
    await _process(notifier_settings, publisher, SendLedger(database), adapter).handle(reply)

    assert adapter.sent == [reply.outbound_id]
    statuses = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert [(s.status, s.platform_message_id) for s in statuses] == [(DeliveryState.SENT, "m_taken_over")] * 2


class _SeesClaims(SendLedger):
    """A ledger that says when it found the reply claimed by someone else."""

    def __init__(self, database: db.Database) -> None:
        super().__init__(database)
        self.saw_foreign_claim = asyncio.Event()

    async def claim(self, reply: OutboundReply, *, lease: float) -> Claim | None:
        found = await super().claim(reply, lease=lease)
        if found is not None and not found.done and found.owner != self.owner:
            self.saw_foreign_claim.set()
        return found


async def test_a_reply_another_live_notifier_is_sending_waits_for_its_outcome(
    notifier_settings: Settings, database: db.Database, publisher: Publisher, read_statuses: StatusReader
) -> None:
    reply = _reply()
    # A rebalance gave the partition to a second notifier while the first was still sending the reply.
    sending = SendLedger(database, owner="still-sending")
    await sending.claim(reply, lease=60)
    adapter = ScriptedAdapter(Channel.FACEBOOK, [SendResult(platform_message_id="m_mine")])
    ledger = _SeesClaims(database)
    handled = asyncio.create_task(_process(notifier_settings, publisher, ledger, adapter).handle(reply))

    await asyncio.wait_for(ledger.saw_foreign_claim.wait(), timeout=30)
    assert not handled.done(), "it waits for the live sender"
    sent = DeliveryStatus(
        channel=Channel.FACEBOOK,
        outbound_id=reply.outbound_id,
        platform_message_id="m_first",
        status=DeliveryState.SENT,
    )
    assert await sending.finish(sent)
    await asyncio.wait_for(handled, timeout=30)

    assert adapter.sent == []
    [status] = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert (status.status, status.platform_message_id) == (DeliveryState.SENT, "m_first")


async def test_without_the_database_nothing_is_sent_and_the_consumer_waits(
    notifier_settings: Settings, publisher: Publisher
) -> None:
    client, database = db.connect(f"mongodb://127.0.0.1:{free_port()}/suara", timeout_ms=300)
    adapter = ScriptedAdapter(Channel.FACEBOOK, [SendResult(platform_message_id="m_never")])
    try:
        with pytest.raises(Exception) as raised:
            await _process(notifier_settings, publisher, SendLedger(database), adapter).handle(_reply())
    finally:
        await db.close(client)

    assert adapter.sent == [], "never a send without a claim"
    assert is_transient(raised.value), "the consumer waits the database out instead of dead-lettering the reply"


class _LedgerAwayOnce(SendLedger):
    """The database goes away just as the platform's answer is to be recorded, once."""

    failures = 1

    async def finish(self, status: DeliveryStatus) -> bool:
        if self.failures:
            self.failures -= 1
            raise AutoReconnect("database unreachable")
        return await super().finish(status)


async def test_an_answer_the_database_could_not_take_is_recorded_on_retry_and_not_sent_again(
    notifier_settings: Settings, database: db.Database, publisher: Publisher, read_statuses: StatusReader
) -> None:
    reply = _reply()
    adapter = ScriptedAdapter(Channel.FACEBOOK, [SendResult(platform_message_id="m_kept")])
    notifier = _process(notifier_settings, publisher, _LedgerAwayOnce(database), adapter)

    with pytest.raises(AutoReconnect):  # the consumer retries the message after this
        await notifier.handle(reply)
    await notifier.handle(reply)
    await _process(notifier_settings, publisher, SendLedger(database), adapter).handle(reply)

    assert adapter.sent == [reply.outbound_id]
    statuses = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert [s.platform_message_id for s in statuses] == ["m_kept", "m_kept"]


class _SeesPauses(SendLedger):
    """A ledger that says when its notifier paused between attempts."""

    def __init__(self, database: db.Database) -> None:
        super().__init__(database)
        self.pausing = asyncio.Event()

    async def hold(self, outbound_id: str, *, state: SendState, lease: float) -> bool:
        held = await super().hold(outbound_id, state=state, lease=lease)
        if state is SendState.WAITING and lease > 0:
            self.pausing.set()
        return held


async def test_a_notifier_stopped_between_attempts_leaves_the_reply_to_the_next_at_once(
    notifier_settings: Settings, database: db.Database, publisher: Publisher, read_statuses: StatusReader
) -> None:
    reply = _reply()
    slow = notifier_settings.model_copy(update={"send_retry_base_seconds": 60.0, "send_retry_cap_seconds": 60.0})
    failing = ScriptedAdapter(Channel.FACEBOOK, [TransientSendError("http_503", "service unavailable")])
    ledger = _SeesPauses(database)
    notifier = _process(slow, publisher, ledger, failing)
    handled = asyncio.create_task(notifier.handle(reply))
    await asyncio.wait_for(ledger.pausing.wait(), timeout=30)

    notifier.stop()  # SIGTERM in the middle of the pause: the reply stays uncommitted
    with pytest.raises(ShuttingDown):
        await handled
    left = await ledger.read(reply.outbound_id)
    assert left is not None and left.state is SendState.WAITING
    assert left.lease_left() <= 0, "released: the next notifier need not wait out the pause"
    working = ScriptedAdapter(Channel.FACEBOOK, [SendResult(platform_message_id="m_after_restart")])
    await _process(notifier_settings, publisher, SendLedger(database), working, lease=3600).handle(reply)

    assert failing.sent == [reply.outbound_id] and working.sent == [reply.outbound_id]
    [status] = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert status.platform_message_id == "m_after_restart"
