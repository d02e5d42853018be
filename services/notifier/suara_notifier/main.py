"""The notifier's app factory and lifespan: consume outbound replies, send them, publish delivery statuses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from suara_shared import topics
from suara_shared.events import OutboundReply
from suara_shared.http import install_error_handlers, ops_router, serve
from suara_shared.kafka import ConsumerLoop, Publisher, Route, backoff

from .adapters import AdapterRegistry
from .config import Settings
from .delivery import Notifier, RetryPolicy

log = logging.getLogger(__name__)

GROUP_ID = "suara-notifier"


def create_app(settings: Settings, *, adapters: AdapterRegistry | None = None, group_id: str = GROUP_ID) -> FastAPI:
    """The notifier: health and metrics over HTTP, the work in a consumer task started by the lifespan.

    `adapters` replaces the ones built from the settings (tests pass fakes); the caller then closes them."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        publisher = Publisher(settings)
        registry = adapters if adapters is not None else AdapterRegistry.from_settings(settings)
        notifier = Notifier(
            adapters=registry,
            publisher=publisher,
            retry=RetryPolicy.from_settings(settings),
            dedup_capacity=settings.dedup_capacity,
        )
        loop = ConsumerLoop(
            settings,
            group_id=group_id,
            routes={topics.OUTBOUND: Route(OutboundReply, notifier.handle)},
            publisher=publisher,
        )
        app.state.publisher, app.state.consumer, app.state.adapters = publisher, loop, registry
        # No connection is made here: the consumer waits for the broker on its own, so a broker that is down
        # at start only keeps the notifier unready instead of failing it.
        task = asyncio.create_task(_supervise(loop), name="notifier-consumer")
        try:
            yield
        finally:
            try:
                loop.stop()
                notifier.stop()
                await task
            finally:
                await publisher.stop()
                if adapters is None:
                    await registry.aclose()

    async def broker_ready() -> bool:
        publisher: Publisher | None = getattr(app.state, "publisher", None)
        return publisher is not None and await publisher.ready()

    async def consumer_running() -> bool:
        loop: ConsumerLoop | None = getattr(app.state, "consumer", None)
        return loop is not None and loop.running

    async def channels_can_send() -> bool:
        registry: AdapterRegistry | None = getattr(app.state, "adapters", None)
        return registry is not None and not registry.unhealthy()

    app = FastAPI(title="Suara notifier", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.include_router(
        ops_router({"broker": broker_ready, "consumer": consumer_running, "channels": channels_can_send})
    )
    return app


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
