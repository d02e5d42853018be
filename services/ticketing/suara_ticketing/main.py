"""The ticketing service: the ticket API and the consumer of inbound messages and delivery statuses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, timedelta

from fastapi import FastAPI

from suara_shared import db, topics
from suara_shared.events import DeliveryStatus, InboundMessage, utcnow
from suara_shared.http import install_error_handlers, ops_router, serve
from suara_shared.kafka import BrokerUnavailable, ConsumerLoop, Publisher, Route
from suara_shared.metrics import INBOUND_TO_TICKET_SECONDS

from . import citizens, console, media, open311, window
from .access.router import router as tokens_router
from .access.service import TokenService
from .canned import CannedService
from .canned import router as canned_router
from .config import Settings
from .lifecycle import Policy
from .routing import Router, load_rules
from .stats import router as stats_router
from .tickets import workflow
from .tickets.router import router as tickets_router
from .tickets.service import TicketService

log = logging.getLogger(__name__)

#: Delivery statuses (three or four per reply) are written per batch, each message's highest once: after a poll
#: that did not fill a batch the consumer lets statuses gather this long, so that a reply's sent, delivered and read
#: (and the notifier's report they often overtake) are more often written together. Ticks show up to this much
#: later. Measured side by side (`make bench` at 500/s): with 1 s the smaller batches cost the embedded database
#: 10 % more CPU than the statuses one by one did; with 3 s 3-14 % more, and tickets stored as fast or faster.
DELIVERY_GATHER_SECONDS = 3.0
DELIVERY_BATCH = 500


async def _relay(service: TicketService, every: float, stop: asyncio.Event) -> None:
    """Publish outbound messages and events whose first publication failed (the outbox relay)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
        try:
            sent = await service.publish_pending({}, older_than=timedelta(seconds=every))
            sent += await service.publish_outbox(older_than=timedelta(seconds=every))
            if sent:
                log.info("outbox relay published", extra={"count": sent})
        except BrokerUnavailable:
            log.warning("outbox relay: broker unavailable")
        except db.PyMongoError as exc:
            log.warning("outbox relay: database unavailable", extra={"error": type(exc).__name__})


async def _sweep(service: TicketService, every: float, stop: asyncio.Event) -> None:
    """Detect deadline breaches, close resolved tickets nobody answered, refresh the status gauge."""
    while not stop.is_set():
        try:
            await workflow.sweep(service)
        except db.PyMongoError as exc:
            log.warning("sweep: database unavailable", extra={"error": type(exc).__name__})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # A routing file that does not load stops the service here, naming the line at fault.
    routing = Router(load_rules(settings.routing_rules_file or None))
    policy = Policy(
        reopen_window_working_days=settings.reopen_window_working_days,
        auto_close_working_days=settings.auto_close_working_days,
        survey_window_days=settings.survey_window_days,
        office_hours=settings.office_window,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client, database = db.connect(settings.mongodb_uri)
        publisher = Publisher(settings)
        access = TokenService(database=database)
        service = TicketService(
            database=database,
            publisher=publisher,
            prefix=settings.ticket_prefix,
            status_url=settings.public_status_url,
            routing=routing,
            access=access,
            policy=policy,
        )
        app.state.settings = settings
        app.state.tickets = service
        app.state.routing = routing
        app.state.access = access
        app.state.canned = CannedService(database=database)
        store = media.MediaStore(database, settings)
        app.state.media = store
        tasks: list[asyncio.Task[None]] = []
        stop = asyncio.Event()
        loops: list[ConsumerLoop] = []
        try:
            with contextlib.suppress(*db.MongoUnavailable):
                await _ensure_indexes(service, store)
            if "consumer" in settings.roles:
                # Citizens' messages and delivery statuses are consumed apart: a flood of statuses (three or
                # four per reply) must never keep a citizen's message waiting behind it.
                loops = [
                    ConsumerLoop(
                        settings,
                        group_id="suara-ticketing",
                        publisher=publisher,
                        routes={
                            topics.INBOUND: Route(
                                InboundMessage,
                                lambda e, _r: _store_inbound(service, store, [e]),
                                batch=lambda events: _store_inbound(service, store, events),
                            )
                        },
                    ),
                    ConsumerLoop(
                        settings,
                        group_id="suara-ticketing-delivery",
                        publisher=publisher,
                        max_records=DELIVERY_BATCH,
                        gather_seconds=DELIVERY_GATHER_SECONDS,
                        routes={
                            topics.DELIVERY: Route(
                                DeliveryStatus,
                                lambda e, _r: window.record_delivery(service, e),
                                batch=lambda statuses: window.record_deliveries(service, statuses),
                            )
                        },
                    ),
                ]
                app.state.consumers = loops
                tasks.append(asyncio.create_task(_indexes_then(service, store, loops)))
                tasks.append(asyncio.create_task(media.keeper(store, service, stop)))
                tasks.append(asyncio.create_task(_relay(service, settings.outbox_retry_seconds, stop)))
                tasks.append(asyncio.create_task(_sweep(service, settings.sweep_seconds, stop)))
            yield
        finally:
            stop.set()
            for loop in loops:
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
            return all(loop.running for loop in app.state.consumers)

        checks["consumer"] = consumer_ready
    app.include_router(ops_router(checks))
    if "api" in settings.roles:
        app.include_router(tickets_router)
        app.include_router(media.router)
        app.include_router(citizens.router)
        app.include_router(tokens_router)
        app.include_router(canned_router)
        app.include_router(stats_router)
        open311.install(app)
        console.install(app)
    return app


async def _store_inbound(service: TicketService, store: media.MediaStore, events: list[InboundMessage]) -> None:
    """Store inbound messages (their files noted for the keeper first), then record the end-to-end latency since
    Suara received each."""
    await media.enqueue(store, events)
    if len(events) == 1:
        await service.handle_inbound(events[0])
    else:
        await service.handle_inbound_batch(events)
    now = utcnow()
    for event in events:
        received = event.received_at if event.received_at.tzinfo else event.received_at.replace(tzinfo=UTC)
        INBOUND_TO_TICKET_SECONDS.labels(event.channel.value).observe(max(0.0, (now - received).total_seconds()))


async def _ensure_indexes(service: TicketService, store: media.MediaStore) -> None:
    """Every index ticketing reads through: the tickets' and their messages', the citizens' files'."""
    await service.ensure_indexes()
    await store.ensure_indexes()


async def _indexes_then(service: TicketService, store: media.MediaStore, loops: list[ConsumerLoop]) -> None:
    """Make sure the indexes exist (waiting for the database if needed), then consume."""
    attempt = 0
    while True:
        try:
            await _ensure_indexes(service, store)
            break
        except db.MongoUnavailable:
            attempt += 1
            await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
    await asyncio.gather(*(loop.run() for loop in loops))


def run() -> None:
    settings = Settings()
    serve(create_app(settings), settings, service="ticketing", port=settings.port)
