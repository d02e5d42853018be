"""The Kafka plumbing against the real embedded broker: acknowledged publishing, ordered consumption with
commits after processing, and poison messages set aside in the dead-letter topic without blocking others."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from suara_shared import topics
from suara_shared.events import Channel, InboundMessage, Sender
from suara_shared.kafka import ConsumerLoop, Publisher, Route
from suara_shared.settings import ServiceSettings


def _message(n: int, conversation: str = "c1") -> InboundMessage:
    return InboundMessage(
        channel=Channel.WEB,
        platform_message_id=f"kafka-test-{n}",
        conversation_key=conversation,
        sender=Sender(channel_user_id="u1"),
        text=f"pesan nomor {n}",
    )


async def test_consumer_processes_in_order_and_dead_letters_poison(settings: ServiceSettings) -> None:
    group = "test-order-dlq"
    publisher = Publisher(settings)
    seen: list[str] = []
    poison = b"{not json"
    try:
        await publisher.publish_many([(topics.INBOUND, _message(i), b"k") for i in range(3)])
        await publisher.send_raw([(topics.INBOUND, b"k", poison, ())])
        await publisher.publish(topics.INBOUND, _message(3), key=b"k")

        async def handle(event: InboundMessage, _record: object) -> None:
            if event.platform_message_id.startswith("kafka-test-"):
                seen.append(event.platform_message_id)

        loop = ConsumerLoop(
            settings, group_id=group, routes={topics.INBOUND: Route(InboundMessage, handle)}, publisher=publisher
        )
        task = asyncio.create_task(loop.run())
        for _ in range(200):
            if len(seen) >= 4:
                break
            await asyncio.sleep(0.05)
        loop.stop()
        await asyncio.wait_for(task, 10)
        assert seen[-4:] == [f"kafka-test-{i}" for i in range(4)]

        dlq = AIOKafkaConsumer(
            topics.DEAD_LETTER,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await dlq.start()
        try:
            batches = await dlq.getmany(timeout_ms=3000)
            records = [r for rs in batches.values() for r in rs if r.value == poison]
        finally:
            await dlq.stop()
        assert records, "the unparsable message should be in the dead-letter topic"
        headers = dict(records[0].headers)
        assert headers["x-origin-topic"] == topics.INBOUND.encode()
        assert headers["x-error-reason"] == b"invalid_event"
    finally:
        await publisher.stop()
