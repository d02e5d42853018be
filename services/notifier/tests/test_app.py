"""The notifier as it runs: its lifespan consumes outbound replies from the real embedded broker and publishes
one delivery status per reply; it serves health, readiness and metrics, and starts without a broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI

from suara_devstack.infra import free_port
from suara_notifier.config import Settings
from suara_notifier.main import create_app
from suara_shared import topics
from suara_shared.events import Channel, DeliveryState, DeliveryStatus, OutboundReply, new_id
from suara_shared.kafka import Publisher

StatusReader = Callable[..., Awaitable[dict[str, list[DeliveryStatus]]]]


@pytest.fixture(scope="module")
async def app(notifier_settings: Settings) -> AsyncIterator[FastAPI]:
    """The notifier with the adapters its settings give it, running through its own lifespan.

    A consumer group of its own keeps it apart from any other notifier on the same broker."""
    application = create_app(notifier_settings, group_id=f"suara-notifier-test-{new_id()}")
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notifier") as c:
        yield c


@pytest.fixture
async def publisher(notifier_settings: Settings) -> AsyncIterator[Publisher]:
    pub = Publisher(notifier_settings)
    yield pub
    await pub.stop()


def _reply(channel: Channel, conversation: str | None = None) -> OutboundReply:
    conversation = conversation or f"conv-{new_id()}"
    return OutboundReply(
        channel=channel,
        conversation_key=conversation,
        recipient=conversation,
        text="Terima kasih, laporan Anda sudah kami terima.",
        ticket_reference="RMB-2025-000042",
    )


async def _publish(publisher: Publisher, *replies: OutboundReply) -> None:
    await publisher.publish_many([(topics.OUTBOUND, r, r.partition_key) for r in replies])


async def test_web_reply_is_delivered(app: FastAPI, publisher: Publisher, read_statuses: StatusReader) -> None:
    reply = _reply(Channel.WEB)

    await _publish(publisher, reply)

    [status] = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert status.status == DeliveryState.DELIVERED
    assert status.channel == Channel.WEB
    assert status.platform_message_id == reply.outbound_id
    assert status.error is None


async def test_the_same_reply_published_twice_gets_one_status(
    app: FastAPI, publisher: Publisher, read_statuses: StatusReader
) -> None:
    reply = _reply(Channel.WEB)
    # Same conversation, so same partition: once the marker's status is out, both copies have been handled.
    marker = _reply(Channel.WEB, conversation=reply.conversation_key)

    await _publish(publisher, reply, reply, marker)

    found = await read_statuses([reply.outbound_id], wait_for=[marker.outbound_id])
    assert [s.status for s in found[reply.outbound_id]] == [DeliveryState.DELIVERED]


async def test_reply_on_a_channel_without_adapter_fails_visibly(
    app: FastAPI, publisher: Publisher, read_statuses: StatusReader
) -> None:
    reply = _reply(Channel.WHATSAPP)

    await _publish(publisher, reply)

    [status] = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert status.status == DeliveryState.FAILED
    assert status.channel == Channel.WHATSAPP
    assert status.error is not None and status.error.code == "channel_not_configured"


async def test_health_readiness_and_metrics(
    app: FastAPI, client: httpx.AsyncClient, publisher: Publisher, read_statuses: StatusReader
) -> None:
    reply = _reply(Channel.WEB)
    await _publish(publisher, reply)
    await read_statuses([reply.outbound_id])  # the consumer has joined and handled a reply by now

    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"broker": True, "database": True, "consumer": True, "channels": True}
    metrics = (await client.get("/metrics")).text
    assert 'suara_notifier_replies_total{channel="web",outcome="delivered"}' in metrics
    assert "suara_notifier_send_duration_seconds_bucket" in metrics
    assert (await client.get("/docs")).status_code == 404, "health and metrics only"


async def test_starts_without_a_broker_and_reports_not_ready(notifier_settings: Settings) -> None:
    nowhere = notifier_settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"})
    app = create_app(nowhere, group_id=f"suara-notifier-test-{new_id()}")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notifier") as client,
    ):
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"broker": False, "database": True, "consumer": False, "channels": True}


def test_a_claim_lease_shorter_than_a_send_is_refused_at_start(notifier_settings: Settings) -> None:
    short = {"send_lease_seconds": 5, "graph_timeout_seconds": 10}
    with pytest.raises(ValueError, match="SEND_LEASE_SECONDS"):
        Settings.model_validate({**notifier_settings.model_dump(), **short})
