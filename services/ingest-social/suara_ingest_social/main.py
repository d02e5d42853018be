"""The ingest-social app: its factory, its lifespan (broker, database and ticketing clients), and `run()`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from suara_shared import db
from suara_shared.http import install_error_handlers, ops_router, serve
from suara_shared.kafka import BrokerUnavailable, Publisher

from .config import Settings
from .limits import BodyLimit, RateLimiter, parse_networks
from .web import photos
from .web.kiosk import router as kiosk_router
from .web.router import PHOTO_FORMS_AT_ONCE, install_rate_limit_handler
from .web.router import router as web_router
from .webhooks import poller as x_poller
from .webhooks.router import router as webhooks_router

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """Build the app; clients are opened by its lifespan, not here."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        publisher = Publisher(settings)
        ticketing = httpx.AsyncClient(base_url=settings.ticketing_url, timeout=settings.ticketing_timeout_seconds)
        # Connected lazily: only the web form's photos and the X poller's cursors use it, so a database that is
        # down stops neither the webhooks nor a complaint without photos.
        client, database = db.connect(settings.mongodb_uri)
        app.state.settings = settings
        app.state.publisher = publisher
        app.state.ticketing = ticketing
        app.state.database = database
        try:
            try:
                await publisher.start()
            except BrokerUnavailable as exc:
                # A broker that is down must not stop the service: /readyz says so, and publishing retries.
                log.warning("broker not reachable at start; will retry on use", extra={"error": repr(exc)})
            async with _x_polling(app, settings, publisher, database):
                yield
        finally:
            await ticketing.aclose()
            await publisher.stop()
            await db.close(client)

    app = FastAPI(
        title="Suara ingest-social",
        summary="Web form, public status page and social-media webhooks of Suara",
        version="0.1.0",
        lifespan=lifespan,
    )

    async def broker_ready() -> bool:
        publisher: Publisher | None = getattr(app.state, "publisher", None)
        return publisher is not None and await publisher.ready()

    # Not a client to open: state the app keeps for its life (buckets of who filed how many complaints).
    app.state.form_limiter = RateLimiter(per_minute=settings.web_form_rate_per_minute, burst=settings.web_form_burst)
    app.state.trusted_proxies = parse_networks(settings.trusted_proxies)
    app.state.photo_forms = asyncio.Semaphore(PHOTO_FORMS_AT_ONCE)
    app.state.photo_budget = photos.ByteBudget(settings.web_photo_bytes_per_hour)
    install_error_handlers(app)
    install_rate_limit_handler(app)
    # The form with photos streams to disk (Starlette spools each file past 1 MB); everything else stays small.
    photo_form = photos.form_bytes(settings.web_photo_max_bytes)
    app.add_middleware(BodyLimit, larger={"/lapor": photo_form, "/kiosk/": photo_form})
    app.include_router(ops_router({"broker": broker_ready}))
    app.include_router(web_router)
    app.include_router(kiosk_router)
    app.include_router(webhooks_router)
    return app


@asynccontextmanager
async def _x_polling(
    app: FastAPI, settings: Settings, publisher: Publisher, database: db.Database
) -> AsyncIterator[None]:
    """The X poller, while X is configured: its cursors in the database."""
    if not settings.x_polling:
        yield
        return
    assert settings.x_user_id is not None
    x_client, session = x_poller.make_client(settings)
    poller = x_poller.XPoller(
        client=x_client,
        session=session,
        cursors=database[x_poller.COLLECTION],
        publisher=publisher,
        user_id=settings.x_user_id,
        interval=settings.x_poll_interval_seconds,
        poll_dms=settings.x_access_token is not None and settings.x_consumer_key is not None,
    )
    app.state.x_poller = poller
    task = asyncio.create_task(_supervise(poller), name="x-poller")
    try:
        yield
    finally:
        poller.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)
        await session.close()


async def _supervise(poller: x_poller.XPoller) -> None:
    """Keep polling whatever happens (a database outage included); a crash is logged and the loop restarted."""
    while True:
        try:
            await poller.run()
            return
        except Exception:
            log.exception("x poller crashed; restarting in 5 s")
            await asyncio.sleep(5)


def run() -> None:
    """Serve the service on `PORT` (default 8002)."""
    settings = Settings()
    serve(create_app(settings), settings, service="ingest-social", port=settings.port)
