"""`suara-dev measure`: a quick local figure of how many tickets per second the running consumer stores.

Publishes N new-conversation messages straight to the inbound topic of a running `make run` and times until the
database holds a ticket for each. The full benchmark with ceilings and latency percentiles is `make bench`."""

from __future__ import annotations

import asyncio
import time

from suara_shared import db, topics
from suara_shared.events import Channel, Event, InboundMessage, Sender, new_id
from suara_shared.kafka import Publisher
from suara_shared.settings import ServiceSettings


def web_complaint(key: str, text: str) -> InboundMessage:
    """A new web-form complaint as ingest publishes it, `key` its submission (and conversation) id."""
    return InboundMessage(
        channel=Channel.WEB,
        platform_message_id=key,
        conversation_key=key,
        sender=Sender(channel_user_id=key),
        text=text,
        metadata={"submission_id": key},
    )


async def measure(count: int) -> dict[str, float]:
    settings = ServiceSettings(kafka_enable_idempotence=False)
    run = new_id()[:10]
    messages = [
        web_complaint(f"{run}-{i}", f"Pengukuran {run}: jalan berlubang nomor {i} di Kecamatan Lasem")
        for i in range(count)
    ]
    client, database = db.connect(settings.mongodb_uri)
    publisher = Publisher(settings, timeout=30)
    try:
        started = time.perf_counter()
        batch: list[tuple[str, Event, bytes | None]] = [(topics.INBOUND, m, m.partition_key) for m in messages]
        for i in range(0, count, 500):
            await publisher.publish_many(batch[i : i + 500])
        published = time.perf_counter() - started
        query = {"submission_id": {"$regex": f"^{run}-"}}
        while (stored := await database["tickets"].count_documents(query)) < count:
            if time.perf_counter() - started > 600:
                raise SystemExit(f"only {stored} of {count} stored after 600 s")
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
    finally:
        await publisher.stop()
        await db.close(client)
    return {
        "messages": count,
        "publish_s": round(published, 2),
        "stored_s": round(elapsed, 2),
        "tickets_per_s": round(count / elapsed, 1),
    }
