"""The Kafka plumbing against the real embedded broker: acknowledged publishing, ordered consumption with
commits after processing, and poison messages set aside in the dead-letter topic without blocking others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

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


def _consuming(
    settings: ServiceSettings, publisher: Publisher, topic: str, group: str, handle: Any, batch: Any, **options: Any
) -> tuple[ConsumerLoop, asyncio.Task[None]]:
    """A consumer loop of `topic` with a one-by-one and a batch handler, running."""
    loop = ConsumerLoop(
        settings,
        group_id=group,
        routes={topic: Route(InboundMessage, handle, batch=batch)},
        publisher=publisher,
        **options,
    )
    return loop, asyncio.create_task(loop.run())


async def _until(done: Callable[[], bool], *, polls: int = 400) -> None:
    """Wait until `done()` holds, polling every 50 ms at most `polls` times (the assertions after say what failed)."""
    for _ in range(polls):
        if done():
            return
        await asyncio.sleep(0.05)


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
        # Shown from 0 before any letter: a series born at 1 shows Prometheus no increase, and no alert.
        dead_letters = {"topic": topics.INBOUND}
        before = REGISTRY.get_sample_value("suara_dlq_messages_total", dead_letters)
        assert before is not None
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
        assert REGISTRY.get_sample_value("suara_dlq_messages_total", dead_letters) == before + 1
        headers = dict(records[0].headers)
        assert headers["x-origin-topic"] == topics.INBOUND.encode()
        assert headers["x-error-reason"] == b"invalid_event"
    finally:
        await publisher.stop()


async def test_batches_go_to_the_batch_handler_and_a_bad_record_is_set_aside_alone(settings: ServiceSettings) -> None:
    """A poll's records reach the batch handler together, in order; a record that does not parse, or one the
    handler keeps failing on, sends that poll one by one: the others are processed, the bad ones dead-lettered."""
    tag = f"batch-{id(settings)}"
    topic = f"test.batch.{tag}"  # its own topic: no other test's records in its polls
    publisher = Publisher(settings)
    seen: list[str] = []
    batch_sizes: list[int] = []

    def ours(event: InboundMessage) -> bool:
        return event.platform_message_id.startswith(tag)

    async def handle(event: InboundMessage, _record: object) -> None:
        if ours(event):
            if event.text == "boom":
                raise ValueError("this message always fails")
            seen.append(event.platform_message_id)

    async def handle_batch(events: list[InboundMessage]) -> None:
        mine = [e for e in events if ours(e)]
        if any(e.text == "boom" for e in mine):
            raise ValueError("a message of this batch always fails")
        batch_sizes.append(len(mine))
        seen.extend(e.platform_message_id for e in mine)

    def message(n: int, text: str | None = None) -> InboundMessage:
        return InboundMessage(
            channel=Channel.WEB,
            platform_message_id=f"{tag}-{n:03d}",
            conversation_key="c-batch",
            sender=Sender(channel_user_id="u1"),
            text=text or f"pesan {n}",
        )

    try:
        await publisher.publish_many([(topic, message(i), b"kb") for i in range(20)])
        loop, task = _consuming(settings, publisher, topic, f"test-{tag}", handle, handle_batch)
        await _until(lambda: len(seen) >= 20)
        await publisher.send_raw([(topic, b"kb", b"{not json", ())])
        await publisher.publish_many([(topic, message(i), b"kb") for i in range(20, 30)])
        await publisher.publish(topic, message(30, "boom"), key=b"kb")
        await publisher.publish_many([(topic, message(i), b"kb") for i in range(31, 40)])
        await _until(lambda: len(set(seen)) >= 39)
        loop.stop()
        await asyncio.wait_for(task, 10)
        expected = [f"{tag}-{i:03d}" for i in range(40) if i != 30]
        assert list(dict.fromkeys(seen)) == expected
        assert any(size > 1 for size in batch_sizes), "the batch handler should have been used"

        assert sorted(await _dead_letter_reasons(settings, topic)) == [b"handler_error", b"invalid_event"]
    finally:
        await publisher.stop()


async def _dead_letter_reasons(settings: ServiceSettings, topic: str) -> list[bytes]:
    """Why each record of `topic` in the dead-letter topic was set aside."""
    dlq = AIOKafkaConsumer(
        topics.DEAD_LETTER, bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="earliest"
    )
    await dlq.start()
    try:
        batches = await dlq.getmany(timeout_ms=3000)
        return [
            dict(r.headers)["x-error-reason"]
            for rs in batches.values()
            for r in rs
            if dict(r.headers).get("x-origin-topic") == topic.encode()
        ]
    finally:
        await dlq.stop()


async def test_a_batch_failing_on_the_database_waits_and_retries_whole_and_sets_nothing_aside(
    settings: ServiceSettings,
) -> None:
    """The database is away (a connection refused): the batch is retried as it was, not split into records that
    would each fail too, and once the database answers every record is handled once; none is dead-lettered."""
    tag = f"transient-{id(settings)}"
    topic = f"test.transient.{tag}"
    publisher = Publisher(settings)
    handled: list[str] = []
    attempts: list[int] = []
    one_by_one: list[str] = []

    async def handle(event: InboundMessage, _record: object) -> None:
        one_by_one.append(event.platform_message_id)

    async def handle_batch(events: list[InboundMessage]) -> None:
        attempts.append(len(events))
        if len(attempts) <= 3:
            raise ConnectionRefusedError("the database is restarting")
        handled.extend(e.platform_message_id for e in events)

    try:
        await publisher.publish_many([(topic, _message(n, tag), b"kt") for n in range(10)])
        loop, task = _consuming(settings, publisher, topic, f"test-{tag}", handle, handle_batch)
        await _until(lambda: len(handled) >= 10)
        loop.stop()
        await asyncio.wait_for(task, 10)
    finally:
        await publisher.stop()
    assert handled == [f"kafka-test-{n}" for n in range(10)]
    assert attempts[0] > 1 and attempts[:4] == [attempts[0]] * 4  # the same batch, whole, until it went through
    assert one_by_one == []
    assert await _dead_letter_reasons(settings, topic) == []


async def test_with_gather_records_arriving_one_by_one_are_handled_together(settings: ServiceSettings) -> None:
    """Delivery statuses trickle in a few per second; written one poll at a time they cost a write each. A loop
    with `gather_seconds` lets them gather after a poll that was not full: ten records published 50 ms apart reach
    the handler together, not one by one, and none is lost; a loop asked to stop while it lets them gather does
    not wait its time out."""
    tag = f"gather-{id(settings)}"
    topic = f"test.gather.{tag}"
    publisher = Publisher(settings)
    calls: list[list[str]] = []

    async def handle(event: InboundMessage, _record: object) -> None:
        calls.append([event.platform_message_id])

    async def handle_batch(events: list[InboundMessage]) -> None:
        calls.append([e.platform_message_id for e in events])

    def message(n: int) -> InboundMessage:
        return InboundMessage(
            channel=Channel.WEB,
            platform_message_id=f"{tag}-{n:03d}",
            conversation_key="c-gather",
            sender=Sender(channel_user_id="u1"),
            text=f"pesan {n}",
        )

    try:
        await publisher.publish(topic, message(0), key=b"kg")
        loop, task = _consuming(settings, publisher, topic, f"test-{tag}", handle, handle_batch, gather_seconds=5.0)
        await _until(lambda: bool(calls))
        assert calls == [[f"{tag}-000"]]
        for n in range(1, 11):
            await publisher.publish(topic, message(n), key=b"kg")
            await asyncio.sleep(0.05)
        await _until(lambda: sum(len(c) for c in calls) >= 11, polls=200)
        assert [m for c in calls for m in c] == [f"{tag}-{n:03d}" for n in range(11)]
        assert len(calls) <= 3, calls
        loop.stop()  # now letting records gather for 5 s
        await asyncio.wait_for(task, 3)
    finally:
        await publisher.stop()


def test_a_member_of_a_group_knows_its_share_of_a_topics_partitions(settings: ServiceSettings) -> None:
    """What a group-wide limit (the WhatsApp number's throughput) is divided by: the partitions this process holds
    of all of them, as the broker assigned them; the whole of it before the loop has joined."""

    class Joined:
        def partitions_for_topic(self, topic: str) -> set[int] | None:
            return {0, 1, 2, 3, 4, 5} if topic == topics.OUTBOUND else None

        def assignment(self) -> set[TopicPartition]:
            return {TopicPartition(topics.OUTBOUND, 1), TopicPartition(topics.OUTBOUND, 4), TopicPartition("x", 0)}

    async def handle(_event: object, _record: object) -> None:
        return None

    loop = ConsumerLoop(
        settings,
        group_id="share",
        routes={topics.OUTBOUND: Route(InboundMessage, handle)},
        publisher=Publisher(settings),
    )
    assert loop.share(topics.OUTBOUND) == 1.0  # not joined yet
    loop._consumer = Joined()  # type: ignore[assignment]
    assert loop.share(topics.OUTBOUND) == pytest.approx(2 / 6)
    assert loop.share("unknown") == 1.0


def test_a_partition_given_to_another_member_no_longer_shows_this_ones_lag(settings: ServiceSettings) -> None:
    """After a rebalance (the HPA added a pod during a backlog), the lag this pod last saw on a partition it no
    longer holds must go, or the lag alert fires until the pod restarts."""
    one, two = TopicPartition(topics.INBOUND, 0), TopicPartition(topics.INBOUND, 1)

    class Member:
        def __init__(self) -> None:
            self.held = {one, two}

        def assignment(self) -> set[TopicPartition]:
            return self.held

        def highwater(self, tp: TopicPartition) -> int:
            return 1500

    async def handle(_event: object, _record: object) -> None:
        return None

    routes: dict[str, Route[Any]] = {topics.INBOUND: Route(InboundMessage, handle)}
    loop = ConsumerLoop(settings, group_id="lag-test", routes=routes, publisher=Publisher(settings))
    loop._positions = {one: 500, two: 1400}
    member = Member()
    loop._record_lag(member)  # type: ignore[arg-type]

    def lag(tp: TopicPartition) -> float | None:
        labels = {"group": "lag-test", "topic": tp.topic, "partition": str(tp.partition)}
        return REGISTRY.get_sample_value("suara_kafka_consumer_lag_messages", labels)

    assert (lag(one), lag(two)) == (1000, 100)
    member.held = {two}  # partition 0 went to the new pod
    loop._record_lag(member)  # type: ignore[arg-type]
    assert (lag(one), lag(two)) == (None, 100)
    # It comes back after the other pod worked it on: no lag is shown from this pod's old position.
    member.held = {one, two}
    loop._record_lag(member)  # type: ignore[arg-type]
    assert (lag(one), lag(two)) == (None, 100)
