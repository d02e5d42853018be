"""The ingest-wa app: the WhatsApp webhook, health and metrics, and the broker publisher's lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from suara_shared.http import install_error_handlers, ops_router, serve
from suara_shared.kafka import BrokerUnavailable, Publisher

from . import webhook
from .config import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """Build the app; the publisher connects in the lifespan and is closed when it ends."""
    # Built here, not connected: it connects in the lifespan, or at the first publish if the broker was away.
    publisher = Publisher(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            try:
                await publisher.start()
            except BrokerUnavailable as exc:
                # Start anyway: /healthz stays up, /readyz says not ready, webhooks get 503 and Meta retries.
                log.warning(
                    "broker not reachable at start; webhooks answer 503 until it is",
                    extra={"error": repr(exc)},
                )
            yield
        finally:
            await publisher.stop()

    app = FastAPI(title="Suara ingest-wa", summary="WhatsApp webhook -> normalized events", lifespan=lifespan)
    app.state.settings = settings
    app.state.publisher = publisher
    app.include_router(ops_router({"broker": publisher.ready}))
    app.include_router(webhook.router)
    install_error_handlers(app)
    return app


def run() -> None:
    """Entry point of `python -m suara_ingest_wa`: settings from the environment, then serve."""
    settings = Settings()
    serve(create_app(settings), settings, service="ingest-wa", port=settings.port)
