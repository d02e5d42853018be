"""Ticketing test fixtures: the app in-process, on a fresh database of the real embedded server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from suara_devstack.infra import EmbeddedInfra
from suara_devstack.sandbox.app import create_app as create_sandbox
from suara_devstack.testing import serve_app
from suara_shared import db
from suara_shared.events import Channel, InboundMessage, MessageKind, OutboundReply, ReplyContext, Sender, new_id
from suara_ticketing.config import Settings
from suara_ticketing.main import create_app
from suara_ticketing.tickets.service import TicketService

TOKEN = "test-token-ticketing"


@dataclass
class App:
    client: httpx.AsyncClient
    service: TicketService
    settings: Settings


def settings_for(infra: EmbeddedInfra, database: db.Database, **overrides: Any) -> Settings:
    """Ticketing's settings for the tests: the embedded broker and a fresh database, the test admin token."""
    return Settings(
        kafka_bootstrap_servers=infra.bootstrap,
        kafka_enable_idempotence=False,
        mongodb_uri=infra.database_uri(database.name),
        admin_api_token=TOKEN,
        ticketing_roles="api",
        ticket_prefix="RMB",
        **overrides,
    )


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[App]:
    """The app in-process, started as uvicorn would, with a client signed in as the admin."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ticketing", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            yield App(client, application.state.tickets, settings)


@pytest.fixture
async def sandbox() -> AsyncIterator[str]:
    """The channel sandbox (Meta's Graph API and CDN, X) over local HTTP: its base URL."""
    async with serve_app(create_sandbox()) as url:
        yield url


@pytest.fixture
async def app(infra: EmbeddedInfra, database: db.Database) -> AsyncIterator[App]:
    async with running(settings_for(infra, database)) as started:
        yield started


def web_message(
    text: str = "Jalan di Desa Tireman rusak parah, mohon segera diperbaiki",
    *,
    conversation: str | None = None,
    message_id: str | None = None,
    name: str | None = "Siti Aminah",
) -> InboundMessage:
    conversation = conversation or new_id()
    return InboundMessage(
        channel=Channel.WEB,
        platform_message_id=message_id or new_id(),
        conversation_key=conversation,
        sender=Sender(channel_user_id=conversation, display_name=name, phone="+6281234567890"),
        text=text,
        metadata={"submission_id": conversation, "kecamatan": "Rembang", "desa": "Tireman"},
    )


def whatsapp_message(text: str, *, number: str, message_id: str | None = None, name: str = "Warga") -> InboundMessage:
    """A citizen's WhatsApp text from `number` (their conversation), as ingest-wa publishes it."""
    return InboundMessage(
        channel=Channel.WHATSAPP,
        platform_message_id=message_id or f"wamid.{new_id()}",
        conversation_key=number,
        sender=Sender(channel_user_id=number, display_name=name, phone=f"+{number}"),
        text=text,
    )


def comment_message(post: str, author: str, text: str = "Jalan menuju Pasar Kragan berlubang") -> InboundMessage:
    """A citizen's comment under the Page's post `post`, as ingest-social publishes it."""
    comment = new_id()
    return InboundMessage(
        channel=Channel.FACEBOOK,
        platform_message_id=comment,
        conversation_key=f"post:{post}:{author}",
        sender=Sender(channel_user_id=author, display_name="Warga"),
        kind=MessageKind.COMMENT,
        text=text,
        reply_context=ReplyContext(comment_id=comment, post_id=post),
    )


async def outbound_for(
    settings: Settings,
    predicate: object,
    *,
    expect: int = 1,
    timeout_ms: int = 3000,
    actions: tuple[str, ...] = ("send",),
) -> list[OutboundReply]:
    """Read the outbound topic from the start and return the replies matching `predicate` (messages sent by
    default; read-receipt requests only when `actions` names them)."""
    from suara_shared import topics

    consumer = AIOKafkaConsumer(
        topics.OUTBOUND, bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[OutboundReply] = []
    try:
        for _ in range(10):
            batches = await consumer.getmany(timeout_ms=timeout_ms // 10)
            for records in batches.values():
                for record in records:
                    reply = OutboundReply.model_validate_json(record.value or b"")
                    if reply.action in actions and predicate(reply):  # type: ignore[operator]
                        found.append(reply)
            if len(found) >= expect and not batches:
                break
    finally:
        await consumer.stop()
    return found
