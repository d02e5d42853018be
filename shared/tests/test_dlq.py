"""An operator can list the dead-letter topic and replay what failed once the cause is mended: each letter goes
back to the topic it came from, once, and is processed like any other message."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import ConsumerRecord

from suara_shared import dlq, topics
from suara_shared.dlq import replay
from suara_shared.events import Channel, InboundMessage, Sender, new_id
from suara_shared.kafka import ConsumerLoop, PermanentError, Publisher, Route
from suara_shared.settings import ServiceSettings

Handler = Callable[[InboundMessage, ConsumerRecord[bytes, bytes]], Awaitable[None]]


def _complaint(conversation: str, text: str) -> InboundMessage:
    """A citizen's web complaint, as ingest-social publishes it."""
    return InboundMessage(
        channel=Channel.WEB,
        platform_message_id=new_id(),
        conversation_key=conversation,
        sender=Sender(channel_user_id="warga"),
        text=text,
    )


@contextlib.asynccontextmanager
async def _consuming(settings: ServiceSettings, handle: Handler) -> AsyncIterator[Publisher]:
    """A consumer of the inbound topic whose failures `handle` decides, and a publisher to feed it."""
    publisher = Publisher(settings)
    loop = ConsumerLoop(
        settings,
        group_id=f"dlq-test-{new_id()}",
        publisher=publisher,
        routes={topics.INBOUND: Route(InboundMessage, handle)},
    )
    task = asyncio.create_task(loop.run())
    try:
        yield publisher
    finally:
        loop.stop()
        await asyncio.wait_for(task, 15)
        await publisher.stop()


async def test_a_dead_letter_is_replayed_to_its_topic_once_and_then_processed(settings: ServiceSettings) -> None:
    broken = {"on": True}
    stored: list[str] = []
    message = _complaint(new_id(), "Sampah menumpuk di Pasar Rembang")

    async def handle(event: InboundMessage, _record: ConsumerRecord[bytes, bytes]) -> None:
        if event.platform_message_id != message.platform_message_id:
            return
        if broken["on"]:
            raise PermanentError("routing rules missing a category")
        stored.append(event.platform_message_id)

    group = f"replay-test-{new_id()}"
    async with _consuming(settings, handle) as publisher:
        await publisher.publish(topics.INBOUND, message, key=message.partition_key)
        for _ in range(300):
            listed = await replay(
                settings, origin_topic=topics.INBOUND, reason="permanent_error", dry_run=True, group=group
            )
            if listed:
                break
            await asyncio.sleep(0.1)
        assert listed and listed[-1].detail == "routing rules missing a category"
        assert not stored

        broken["on"] = False  # the operator mends the cause, then replays
        replayed = await replay(settings, origin_topic=topics.INBOUND, reason="permanent_error", group=group)
        assert [letter.offset for letter in replayed] == [letter.offset for letter in listed]
        for _ in range(300):
            if stored:
                break
            await asyncio.sleep(0.1)
        assert stored == [message.platform_message_id]
        # A second replay finds nothing new: what was replayed is not sent again.
        assert await replay(settings, origin_topic=topics.INBOUND, group=group) == []


async def test_a_filtered_replay_leaves_every_other_letter_for_later_and_a_second_failure_says_why(
    settings: ServiceSettings,
) -> None:
    """The operator mends the inbound consumer and replays only its letters: a reply's letter waiting for another
    fix must not be marked replayed with them. A replayed letter that fails again is listed with the new error."""
    conversation = new_id()
    message = _complaint(conversation, "Lampu jalan mati di Sluke")
    failures = iter(["cause number 1", "cause number 2"])
    stored: list[str] = []

    async def handle(event: InboundMessage, _record: ConsumerRecord[bytes, bytes]) -> None:
        if event.conversation_key != conversation:
            return
        cause = next(failures, None)
        if cause is not None:
            raise PermanentError(f"{cause} for {conversation}")
        stored.append(event.platform_message_id)

    group = f"replay-test-{new_id()}"
    reply_letter = (
        topics.DEAD_LETTER,
        conversation.encode(),
        b'{"a reply": "waiting for another fix"}',
        [
            (b"x-origin-topic", topics.OUTBOUND.encode()),
            (b"x-error-reason", b"handler_error"),
            (b"x-error-detail", f"template refused for {conversation}".encode()),
        ],
    )

    async def listed(**filters: str) -> list[dlq.DeadLetter]:
        letters = await replay(settings, dry_run=True, group=group, **filters)
        return [letter for letter in letters if conversation in letter.detail]

    async with _consuming(settings, handle) as publisher:
        await publisher.send_raw([(t, k, v, [(h.decode(), x) for h, x in hs]) for t, k, v, hs in [reply_letter]])
        await publisher.publish(topics.INBOUND, message, key=message.partition_key)
        for _ in range(300):
            if any(letter.origin_topic == topics.INBOUND for letter in await listed()):
                break
            await asyncio.sleep(0.1)

        await replay(settings, origin_topic=topics.INBOUND, group=group)  # fails again: "cause number 2"
        for _ in range(300):
            again = [letter for letter in await listed() if letter.origin_topic == topics.INBOUND]
            if again:
                break
            await asyncio.sleep(0.1)
        assert [(letter.detail, letter.failures) for letter in again] == [(f"cause number 2 for {conversation}", 2)]
        # The reply's letter was passed over, not buried: it is still waiting for its own replay.
        assert [letter.origin_topic for letter in await listed(origin_topic=topics.OUTBOUND)] == [topics.OUTBOUND]

        await replay(settings, origin_topic=topics.INBOUND, group=group)  # mended now
        for _ in range(300):
            if stored:
                break
            await asyncio.sleep(0.1)
        assert stored == [message.platform_message_id]
        assert [letter.origin_topic for letter in await listed()] == [topics.OUTBOUND]


async def test_the_list_an_operator_reads_masks_the_personal_data_an_error_quoted(
    settings: ServiceSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A handler's error may quote what it worked on (a WhatsApp conversation is the citizen's number): `list`
    prints to the job's log, where no phone number or NIK may appear, as in every service's log."""
    phone, nik = "6281234567890", "3317011508850001"
    conversation = new_id()
    message = _complaint(conversation, "Jalan rusak")

    async def handle(event: InboundMessage, _record: ConsumerRecord[bytes, bytes]) -> None:
        if event.conversation_key == conversation:
            raise PermanentError(f"no citizen {phone} (NIK {nik}) for {conversation}")

    async with _consuming(settings, handle) as publisher:
        await publisher.publish(topics.INBOUND, message, key=message.partition_key)
        for _ in range(300):
            letters = await replay(settings, origin_topic=topics.INBOUND, dry_run=True, group=f"look-{new_id()}")
            if any(conversation in letter.detail for letter in letters):
                break
            await asyncio.sleep(0.1)
        assert any(phone in letter.detail for letter in letters), "the letter keeps the error as it was"

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    monkeypatch.setenv("KAFKA_ENABLE_IDEMPOTENCE", "false")
    assert await asyncio.to_thread(dlq.main, ["list", "--topic", topics.INBOUND, "--reason", "permanent_error"]) == 0
    printed = capsys.readouterr().out
    (line,) = [line for line in printed.splitlines() if conversation in line]
    assert phone not in printed and nik not in printed, printed
    assert "no citizen" in line and "permanent_error" in line  # the rest of the error is still there to read
