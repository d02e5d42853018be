"""Sending one reply through its channel's adapter: retries on transient errors, failures with the platform's
code, each ending in one status on the delivery topic of the real embedded broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from suara_notifier.adapters import AdapterRegistry, PermanentSendError, SendResult, TransientSendError
from suara_notifier.adapters.fake import ScriptedAdapter
from suara_notifier.config import Settings
from suara_notifier.delivery import Notifier, RetryPolicy
from suara_notifier.ledger import SendLedger
from suara_shared.events import Channel, DeliveryState, DeliveryStatus, Event, OutboundAction, OutboundReply
from suara_shared.kafka import BrokerUnavailable, Publisher

StatusReader = Callable[..., Awaitable[dict[str, list[DeliveryStatus]]]]


@pytest.fixture
async def publisher(notifier_settings: Settings) -> AsyncIterator[Publisher]:
    pub = Publisher(notifier_settings)
    yield pub
    await pub.stop()


def _notifier(settings: Settings, publisher: Publisher, ledger: SendLedger, adapter: ScriptedAdapter) -> Notifier:
    return Notifier(
        adapters=AdapterRegistry([adapter]),
        publisher=publisher,
        ledger=ledger,
        retry=RetryPolicy.from_settings(settings),
    )


def _reply(channel: Channel = Channel.FACEBOOK) -> OutboundReply:
    return OutboundReply(
        channel=channel,
        conversation_key="psid-1",
        recipient="psid-1",
        text="Laporan Anda RMB-2025-000001 sudah kami terima.",
        ticket_reference="RMB-2025-000001",
    )


async def test_transient_errors_are_retried_until_the_platform_takes_the_reply(
    notifier_settings: Settings, publisher: Publisher, ledger: SendLedger, read_statuses: StatusReader
) -> None:
    adapter = ScriptedAdapter(
        Channel.FACEBOOK,
        [
            TransientSendError("http_503", "service unavailable"),
            TransientSendError("4", "rate limited", retry_after=0.01),
            SendResult(platform_message_id="m_ok", status=DeliveryState.SENT),
        ],
    )
    reply = _reply()

    await _notifier(notifier_settings, publisher, ledger, adapter).handle(reply)

    statuses = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert [(s.status, s.platform_message_id, s.error) for s in statuses] == [(DeliveryState.SENT, "m_ok", None)]
    assert adapter.sent == [reply.outbound_id] * 3


async def test_permanent_error_fails_the_reply_with_the_platform_code(
    notifier_settings: Settings, publisher: Publisher, ledger: SendLedger, read_statuses: StatusReader
) -> None:
    adapter = ScriptedAdapter(
        Channel.WHATSAPP,
        [
            PermanentSendError("131047", "Re-engagement message", "more than 24 hours since the last message"),
        ],
    )
    reply = _reply(Channel.WHATSAPP)

    await _notifier(notifier_settings, publisher, ledger, adapter).handle(reply)

    [status] = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert status.status == DeliveryState.FAILED
    assert status.channel == Channel.WHATSAPP
    assert status.error is not None
    assert (status.error.code, status.error.title) == ("131047", "Re-engagement message")
    assert adapter.sent == [reply.outbound_id], "a permanent error is not retried"


async def test_transient_errors_that_never_stop_end_in_failed_after_bounded_attempts(
    notifier_settings: Settings, publisher: Publisher, ledger: SendLedger, read_statuses: StatusReader
) -> None:
    adapter = ScriptedAdapter(Channel.X, [TransientSendError("http_500", "internal error")])
    reply = _reply(Channel.X)

    await _notifier(notifier_settings, publisher, ledger, adapter).handle(reply)

    [status] = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert status.status == DeliveryState.FAILED
    assert status.error is not None and status.error.code == "http_500"
    assert len(adapter.sent) == notifier_settings.send_max_attempts


async def test_an_adapter_bug_ends_in_a_failed_status_not_in_silence(
    notifier_settings: Settings, publisher: Publisher, ledger: SendLedger, read_statuses: StatusReader
) -> None:
    adapter = ScriptedAdapter(Channel.INSTAGRAM, [KeyError("recipient")])
    reply = _reply(Channel.INSTAGRAM)

    await _notifier(notifier_settings, publisher, ledger, adapter).handle(reply)

    [status] = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert status.status == DeliveryState.FAILED
    assert status.error is not None and status.error.code == "adapter_error"


async def test_a_redelivered_reply_is_not_sent_again(
    notifier_settings: Settings, publisher: Publisher, ledger: SendLedger, read_statuses: StatusReader
) -> None:
    adapter = ScriptedAdapter(Channel.FACEBOOK, [SendResult(platform_message_id="m_once")])
    notifier = _notifier(notifier_settings, publisher, ledger, adapter)
    reply = _reply()

    await notifier.handle(reply)
    await notifier.handle(reply)

    assert adapter.sent == [reply.outbound_id]
    assert len((await read_statuses([reply.outbound_id]))[reply.outbound_id]) == 1


class _BrokerAwayOnce(Publisher):
    """A publisher whose first publish fails as when the broker is away."""

    failures = 1

    async def publish(self, topic: str, event: Event, *, key: bytes | None = None) -> None:
        if self.failures:
            self.failures -= 1
            raise BrokerUnavailable("broker did not acknowledge")
        await super().publish(topic, event, key=key)


async def test_a_reply_sent_while_the_broker_was_away_is_not_sent_again_on_retry(
    notifier_settings: Settings, ledger: SendLedger, read_statuses: StatusReader
) -> None:
    adapter = ScriptedAdapter(Channel.FACEBOOK, [SendResult(platform_message_id="m_kept")])
    publisher = _BrokerAwayOnce(notifier_settings)
    notifier = _notifier(notifier_settings, publisher, ledger, adapter)
    reply = _reply()
    try:
        with pytest.raises(BrokerUnavailable):  # the consumer retries the message after this
            await notifier.handle(reply)
        await notifier.handle(reply)
    finally:
        await publisher.stop()

    assert adapter.sent == [reply.outbound_id]
    [status] = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert status.platform_message_id == "m_kept"


class _SlowAdapter(ScriptedAdapter):
    """Takes a while per send, like a platform across the internet; records how many sends overlapped."""

    def __init__(self) -> None:
        super().__init__(Channel.FACEBOOK, [SendResult(platform_message_id="m", status=DeliveryState.SENT)])
        self.in_flight = 0
        self.most_in_flight = 0
        self.order: list[tuple[str, str]] = []

    async def send(self, reply: OutboundReply) -> SendResult:
        import asyncio

        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.05)
            self.order.append((reply.conversation_key, reply.text))
            return await super().send(reply)
        finally:
            self.in_flight -= 1


async def test_a_polls_replies_go_out_conversations_side_by_side_each_in_its_order_each_once(
    notifier_settings: Settings, publisher: Publisher, ledger: SendLedger, read_statuses: StatusReader
) -> None:
    adapter = _SlowAdapter()
    replies = [
        OutboundReply(
            channel=Channel.FACEBOOK,
            conversation_key=f"psid-batch-{c}",
            recipient=f"psid-batch-{c}",
            text=f"balasan {n}",
        )
        for n in range(3)
        for c in range(8)
    ]
    notifier = _notifier(notifier_settings, publisher, ledger, adapter)

    await notifier.handle_batch(replies)
    await notifier.handle_batch(replies)  # the poll redelivered: nothing goes out twice

    assert sorted(adapter.sent) == sorted(r.outbound_id for r in replies)
    for c in range(8):
        texts = [text for key, text in adapter.order if key == f"psid-batch-{c}"]
        assert texts == ["balasan 0", "balasan 1", "balasan 2"]
    assert adapter.most_in_flight > 1, "one citizen's reply should not wait for another's"
    statuses = await read_statuses([r.outbound_id for r in replies])
    assert all(statuses[r.outbound_id][0].status is DeliveryState.SENT for r in replies)


@pytest.mark.parametrize(
    ("receipts", "tries"),
    [
        ([TransientSendError("http_503", "service unavailable")], 2),  # given on the second try
        ([TransientSendError("http_503", "unavailable"), TransientSendError("130429", "rate limit hit")], 2),
        ([PermanentSendError("100", "Invalid parameter")], 1),
        ([RuntimeError("an adapter's bug")], 1),
    ],
)
async def test_a_read_receipt_the_platform_will_not_take_is_dropped_and_the_reply_behind_it_still_goes(
    notifier_settings: Settings,
    publisher: Publisher,
    ledger: SendLedger,
    read_statuses: StatusReader,
    receipts: list[Exception],
    tries: int,
) -> None:
    """An agent opened the ticket, so the citizen's message is to show as read; the platform refuses. The receipt
    is tried at most twice (once when refused for good), then dropped with a log line: the next opening asks again.
    It never fails the notifier's batch, never publishes a status, and the agent's reply behind it is sent."""
    adapter = ScriptedAdapter(
        Channel.WHATSAPP, [SendResult(platform_message_id="wamid.ok", status=DeliveryState.SENT)], receipts=receipts
    )
    notifier = _notifier(notifier_settings, publisher, ledger, adapter)
    receipt = OutboundReply(
        action=OutboundAction.MARK_READ,
        channel=Channel.WHATSAPP,
        conversation_key="6281234567890",
        recipient="6281234567890",
        reply_to="wamid.citizen-wrote",
    )
    reply = _reply(Channel.WHATSAPP)

    await notifier.handle(receipt)
    await notifier.handle(reply)

    assert adapter.marked == ["wamid.citizen-wrote"] * tries
    found = await read_statuses([receipt.outbound_id, reply.outbound_id], wait_for=[reply.outbound_id])
    assert receipt.outbound_id not in found
    assert [s.status for s in found[reply.outbound_id]] == [DeliveryState.SENT]
