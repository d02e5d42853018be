"""The ingest-social app: its factory, its lifespan (broker and ticketing clients), and `run()`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from suara_shared.http import install_error_handlers, ops_router, serve
from suara_shared.kafka import BrokerUnavailable, Publisher

from .config import Settings
from .limits import BodyLimit
from .web.router import router as web_router

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """Build the app; clients are opened by its lifespan, not here."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        publisher = Publisher(settings)
        ticketing = httpx.AsyncClient(base_url=settings.ticketing_url, timeout=settings.ticketing_timeout_seconds)
        app.state.settings = settings
        app.state.publisher = publisher
        app.state.ticketing = ticketing
        try:
            try:
                await publisher.start()
            except BrokerUnavailable as exc:
                # A broker that is down must not stop the service: /readyz says so, and publishing retries.
                log.warning("broker not reachable at start; will retry on use", extra={"error": repr(exc)})
            yield
        finally:
            await ticketing.aclose()
            await publisher.stop()

    app = FastAPI(
        title="Suara ingest-social",
        summary="Web form, public status page and social-media webhooks of Suara",
        version="0.1.0",
        lifespan=lifespan,
    )

    async def broker_ready() -> bool:
        publisher: Publisher | None = getattr(app.state, "publisher", None)
        return publisher is not None and await publisher.ready()

    install_error_handlers(app)
    app.add_middleware(BodyLimit)
    app.include_router(ops_router({"broker": broker_ready}))
    app.include_router(web_router)
    return app


def run() -> None:
    """Serve the service on `PORT` (default 8002)."""
    settings = Settings()
    serve(create_app(settings), settings, service="ingest-social", port=settings.port)
