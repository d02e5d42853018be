"""Fixtures for ingest-social: the app in-process (with its lifespan) against the session's embedded broker,
and a reader of what reached the INBOUND topic.

No `__init__.py` here and no helper module: with `--import-mode=importlib` every suite's `tests` folder would
otherwise be the same package, so helpers are handed to the tests as fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from suara_devstack.infra import free_port
from suara_ingest_social.config import Settings
from suara_ingest_social.main import create_app
from suara_shared import topics
from suara_shared.events import InboundMessage
from suara_shared.settings import ServiceSettings

BASE_URL = "http://suara.test"

#: A record of the INBOUND topic: its key, its bytes as stored, and the event they hold.
Record = tuple[bytes | None, bytes, InboundMessage]
ServeApp = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]
ReadInbound = Callable[[Callable[[InboundMessage], bool]], Awaitable[list[Record]]]


@asynccontextmanager
async def serve_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan entered, as uvicorn would run it, and a client that reaches it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            yield http


async def read_inbound(settings: ServiceSettings, match: Callable[[InboundMessage], bool]) -> list[Record]:
    """Every INBOUND record matching `match`, read from the start of each partition up to its current end."""
    spec = next(t for t in topics.ALL_TOPICS if t.name == topics.INBOUND)
    partitions = [TopicPartition(topics.INBOUND, p) for p in range(spec.partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # The publisher returned only after the broker's ack, so what it sent lies below these ends.
        ends = await consumer.end_offsets(partitions)
        found: list[Record] = []
        for _ in range(500):
            positions = {tp: await consumer.position(tp) for tp in partitions}
            if all(positions[tp] >= ends[tp] for tp in partitions):
                return found
            batches = await consumer.getmany(*partitions, timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.offset >= ends[TopicPartition(record.topic, record.partition)]:
                        continue
                    try:
                        event = InboundMessage.model_validate_json(record.value or b"")
                    except ValidationError:
                        continue  # other suites leave poison messages here on purpose
                    if match(event):
                        found.append((record.key, record.value or b"", event))
        raise AssertionError("could not read the INBOUND topic to its end")
    finally:
        await consumer.stop()


@pytest.fixture
def app_settings(settings: ServiceSettings) -> Settings:
    """The service's settings on the test broker; ticketing is nowhere (status tests bring their own)."""
    return Settings.model_validate({**settings.model_dump(), "ticketing_url": f"http://127.0.0.1:{free_port()}"})


@pytest.fixture
def serve() -> ServeApp:
    """`async with serve(settings) as client:` runs the app with those settings."""
    return serve_app


@pytest.fixture
def inbound(settings: ServiceSettings) -> ReadInbound:
    """`await inbound(match)`: the INBOUND records whose event satisfies `match`."""

    async def read(match: Callable[[InboundMessage], bool]) -> list[Record]:
        return await read_inbound(settings, match)

    return read


@pytest.fixture
async def client(app_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the running app."""
    async with serve_app(app_settings) as http:
        yield http


@pytest.fixture
async def client_without_broker(app_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its broker on a port where nothing listens."""
    no_broker = app_settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"})
    async with serve_app(no_broker) as http:
        yield http
