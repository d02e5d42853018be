"""Fixtures for the notifier's tests: its settings against the test broker, a send ledger in a fresh database, and
a reader of delivery statuses."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable

import pytest
from aiokafka import AIOKafkaConsumer

from suara_notifier.config import Settings
from suara_notifier.ledger import SendLedger
from suara_shared import db, topics
from suara_shared.events import DeliveryStatus
from suara_shared.settings import ServiceSettings

StatusReader = Callable[..., Awaitable[dict[str, list[DeliveryStatus]]]]


@pytest.fixture(scope="session")
def notifier_settings(settings: ServiceSettings) -> Settings:
    """The notifier's settings on the test broker, with retries quick enough for a test."""
    return Settings.model_validate(
        {
            **settings.model_dump(),
            "send_retry_base_seconds": 0.01,
            "send_retry_cap_seconds": 0.05,
            "send_max_attempts": 4,
        }
    )


@pytest.fixture
def ledger(database: db.Database) -> SendLedger:
    """The send ledger of one notifier process, in a database of the test's own."""
    return SendLedger(database)


@pytest.fixture
def read_statuses(settings: ServiceSettings) -> StatusReader:
    """Read the delivery topic from the start until every id in `wait_for` has a status, then to its current
    end, and return the statuses of the `wanted` outbound ids, in the order they were published."""

    async def read(
        wanted: Iterable[str], *, wait_for: Iterable[str] | None = None, limit_s: float = 60.0
    ) -> dict[str, list[DeliveryStatus]]:
        wanted = set(wanted)
        waiting = set(wanted if wait_for is None else wait_for)
        found: dict[str, list[DeliveryStatus]] = defaultdict(list)
        consumer = AIOKafkaConsumer(
            topics.DELIVERY,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()

        async def poll() -> None:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    status = DeliveryStatus.model_validate_json(record.value or b"")
                    if status.outbound_id in wanted | waiting:
                        found[status.outbound_id].append(status)

        try:
            deadline = time.monotonic() + limit_s
            while not waiting <= found.keys():
                if time.monotonic() > deadline:
                    raise AssertionError(f"no delivery status for {sorted(waiting - found.keys())}")
                await poll()
            # Everything published before the awaited statuses is in the topic by now: read to its end.
            ends = await consumer.end_offsets(list(consumer.assignment()))
            for tp, end in ends.items():
                while await consumer.position(tp) < end:
                    await poll()
        finally:
            await consumer.stop()
        return dict(found)

    return read
