"""The ticketing service: the ticket API and the consumer of inbound messages and delivery statuses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from fastapi import FastAPI

from suara_shared import db, topics
from suara_shared.events import DeliveryStatus, InboundMessage
from suara_shared.http import install_error_handlers, ops_router, serve
from suara_shared.kafka import BrokerUnavailable, ConsumerLoop, Publisher, Route

from .config import Settings
from .tickets.router import router as tickets_router
from .tickets.service import TicketService

log = logging.getLogger(__name__)


async def _relay(service: TicketService, every: float, stop: asyncio.Event) -> None:
    """Publish outbound messages and events whose first publication failed (the outbox relay)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
        try:
            sent = await service.publish_pending({}, older_than=timedelta(seconds=every))
            if sent:
                log.info("outbox relay published", extra={"count": sent})
        except BrokerUnavailable:
            log.warning("outbox relay: broker unavailable")
        except db.PyMongoError as exc:
            log.warning("outbox relay: database unavailable", extra={"error": type(exc).__name__})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client, database = db.connect(settings.mongodb_uri)
        publisher = Publisher(settings)
        service = TicketService(
            database=database, publisher=publisher, prefix=settings.ticket_prefix, status_url=settings.public_status_url
        )
        app.state.settings = settings
        app.state.tickets = service
        tasks: list[asyncio.Task[None]] = []
        stop = asyncio.Event()
        loop: ConsumerLoop | None = None
        try:
            with contextlib.suppress(*db.MongoUnavailable):
                await service.ensure_indexes()
            if "consumer" in settings.roles:
                loop = ConsumerLoop(
                    settings,
                    group_id="suara-ticketing",
                    publisher=publisher,
                    routes={
                        topics.INBOUND: Route(InboundMessage, lambda e, _r: service.handle_inbound(e)),
                        topics.DELIVERY: Route(DeliveryStatus, lambda e, _r: service.record_delivery(e)),
                    },
                )
                app.state.consumer = loop
                tasks.append(asyncio.create_task(_indexes_then(service, loop)))
                tasks.append(asyncio.create_task(_relay(service, settings.outbox_retry_seconds, stop)))
            yield
        finally:
            stop.set()
            if loop is not None:
                loop.stop()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=15)
            await publisher.stop()
            await db.close(client)

    app = FastAPI(
        title="Suara ticketing",
        version="0.1.0",
        lifespan=lifespan,
        description="The response team's ticket API. Authenticate with `Authorization: Bearer <token>`.",
    )
    install_error_handlers(app)

    async def database_ready() -> bool:
        service: TicketService = app.state.tickets
        return await db.ping(service.db)

    async def broker_ready() -> bool:
        service: TicketService = app.state.tickets
        return await service.publisher.ready()

    checks = {"database": database_ready, "broker": broker_ready}
    if "consumer" in settings.roles:

        async def consumer_ready() -> bool:
            return bool(app.state.consumer.running)

        checks["consumer"] = consumer_ready
    app.include_router(ops_router(checks))
    if "api" in settings.roles:
        app.include_router(tickets_router)
    return app


async def _indexes_then(service: TicketService, loop: ConsumerLoop) -> None:
    """Make sure the indexes exist (waiting for the database if needed), then consume."""
    attempt = 0
    while True:
        try:
            await service.ensure_indexes()
            break
        except db.MongoUnavailable:
            attempt += 1
            await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
    await loop.run()


def run() -> None:
    settings = Settings()
    serve(create_app(settings), settings, service="ticketing", port=settings.port)
