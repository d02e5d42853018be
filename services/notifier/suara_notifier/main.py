"""The notifier's app factory and lifespan: consume outbound replies, send them, publish delivery statuses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from suara_shared import db, topics
from suara_shared.events import OutboundReply
from suara_shared.http import install_error_handlers, ops_router, serve
from suara_shared.kafka import ConsumerLoop, Publisher, Route, backoff

from .adapters import AdapterRegistry
from .config import Settings
from .delivery import Notifier, RetryPolicy
from .ledger import SendLedger

log = logging.getLogger(__name__)

GROUP_ID = "suara-notifier"
#: How long a stopping notifier waits for its consumer (Kubernetes kills it 30 s after SIGTERM).
STOP_WITHIN_SECONDS = 20.0


def create_app(settings: Settings, *, adapters: AdapterRegistry | None = None, group_id: str = GROUP_ID) -> FastAPI:
    """The notifier: health and metrics over HTTP, the work in a consumer task started by the lifespan.

    `adapters` replaces the ones built from the settings (tests pass fakes); the caller then closes them."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client, database = db.connect(settings.mongodb_uri)
        publisher = Publisher(settings)
        registry = adapters if adapters is not None else AdapterRegistry.from_settings(settings)
        ledger = SendLedger(database)
        notifier = Notifier(
            adapters=registry,
            publisher=publisher,
            ledger=ledger,
            retry=RetryPolicy.from_settings(settings),
            lease_seconds=settings.send_lease_seconds,
            dedup_capacity=settings.dedup_capacity,
            concurrency=settings.send_concurrency,
        )
        loop = ConsumerLoop(
            settings,
            group_id=group_id,
            routes={topics.OUTBOUND: Route(OutboundReply, notifier.handle, batch=notifier.handle_batch)},
            publisher=publisher,
        )
        # Meta's throughput limit is the business number's, whatever the number of notifier pods: each paces at the
        # part of the outbound partitions it holds.
        registry.pace_by(lambda: loop.share(topics.OUTBOUND))
        app.state.publisher, app.state.consumer, app.state.adapters = publisher, loop, registry
        app.state.database = database
        # No connection is made here: the consumer waits for the broker and the database on its own, so either
        # being down at start only keeps the notifier unready instead of failing it.
        task = asyncio.create_task(_supervise(loop), name="notifier-consumer")
        housekeeping = asyncio.create_task(_expire_finished_sends(ledger), name="notifier-ledger-index")
        try:
            yield
        finally:
            try:
                housekeeping.cancel()
                loop.stop()
                notifier.stop()
                try:
                    # Long enough for a send in flight (one platform call, GRAPH_TIMEOUT_SECONDS) to finish and be
                    # recorded; bounded, because with the database away each write waits for it in turn.
                    await asyncio.wait_for(task, timeout=STOP_WITHIN_SECONDS)
                except TimeoutError:
                    log.warning(
                        "consumer did not stop in time; what it had not committed is redelivered to the next notifier",
                        extra={"seconds": STOP_WITHIN_SECONDS},
                    )
            finally:
                await publisher.stop()
                await db.close(client)
                if adapters is None:
                    await registry.aclose()

    async def broker_ready() -> bool:
        publisher: Publisher | None = getattr(app.state, "publisher", None)
        return publisher is not None and await publisher.ready()

    async def database_ready() -> bool:
        database: db.Database | None = getattr(app.state, "database", None)
        return database is not None and await db.ping(database)

    async def consumer_running() -> bool:
        loop: ConsumerLoop | None = getattr(app.state, "consumer", None)
        return loop is not None and loop.running

    async def channels_can_send() -> bool:
        registry: AdapterRegistry | None = getattr(app.state, "adapters", None)
        return registry is not None and not registry.unhealthy()

    app = FastAPI(title="Suara notifier", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.include_router(
        ops_router(
            {
                "broker": broker_ready,
                "database": database_ready,
                "consumer": consumer_running,
                "channels": channels_can_send,
            }
        )
    )
    return app


async def _expire_finished_sends(ledger: SendLedger) -> None:
    """Create the ledger's expiry index once the database answers. Housekeeping only: sends never wait for it."""
    attempt = 0
    while True:
        try:
            await ledger.ensure_indexes()
            return
        except db.MongoUnavailable:
            attempt += 1
            await asyncio.sleep(backoff(attempt, cap=10.0))
        except db.PyMongoError:
            log.exception("send ledger expiry index not created; finished entries will not expire")
            return


async def _supervise(loop: ConsumerLoop) -> None:
    """Run the consumer until it is stopped; if it ever crashes, start it again rather than sit idle."""
    attempt = 0
    while True:
        try:
            await loop.run()
            return  # run() returns only once stop() was called
        except Exception:
            attempt += 1
            delay = backoff(attempt, cap=10.0)
            log.exception("consumer crashed; restarting", extra={"retry_in_s": round(delay, 2)})
            await asyncio.sleep(delay)


def run() -> None:
    """Entry point of `python -m suara_notifier`."""
    settings = Settings()
    serve(create_app(settings), settings, service="notifier", port=settings.port)
