"""Fixtures for ingest-wa's tests: the service's settings, the app in-process against the real broker, and
a reader of what the broker holds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from suara_ingest_wa.config import Settings
from suara_ingest_wa.main import create_app
from suara_shared.settings import ServiceSettings

Records = list[ConsumerRecord[bytes, bytes]]
TopicReader = Callable[[str], Awaitable[Records]]


@pytest.fixture
def wa_settings(settings: ServiceSettings) -> Settings:
    """The service's settings, against the session's broker, with known test secrets."""
    return Settings.model_validate(
        {**settings.model_dump(), "meta_app_secret": "test_app_secret", "meta_verify_token": "test-verify-token"}
    )


@pytest.fixture
async def client(wa_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, its lifespan entered (publisher started), behind an httpx client."""
    app = create_app(wa_settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest-wa.test") as http,
    ):
        yield http


async def _read_topic(bootstrap: str, topic: str) -> Records:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster metadata, so that the topic's partitions are known
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"topic {topic} does not exist"
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: Records = []
        for _ in range(1000):
            behind = [tp for tp in partitions if await consumer.position(tp) < end[tp]]
            if not behind:
                return records
            batches = await consumer.getmany(*behind, timeout_ms=1000)
            records.extend(r for rs in batches.values() for r in rs)
        raise AssertionError(f"could not read {topic} to its end")
    finally:
        await consumer.stop()


@pytest.fixture
def read_topic(wa_settings: Settings) -> TopicReader:
    """Read every record of a topic up to its end offsets at the time of the call: what the broker holds
    after an acknowledged publish, so that absence can be asserted without waiting for anything."""

    async def read(topic: str) -> Records:
        return await _read_topic(wa_settings.kafka_bootstrap_servers, topic)

    return read
