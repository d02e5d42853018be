"""`/webhooks/facebook`, `/webhooks/instagram` and `/webhooks/x`: answer the platform's handshake; verify,
normalize and publish each POST, and answer 200 only once the broker acknowledged (503 otherwise, so the
platform retries). Bodies over 1 MiB are refused with 413 by the app's BodyLimit before they get here."""

from __future__ import annotations

import hmac
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from suara_shared import topics, untrusted
from suara_shared.events import Channel, DeliveryStatus, Event, InboundMessage
from suara_shared.http import ApiError
from suara_shared.kafka import BrokerUnavailable, Publisher
from suara_shared.metrics import WEBHOOK_EVENTS, WEBHOOK_REQUESTS

from ..config import Settings
from . import meta, signature, x

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])

#: The Graph `object` each Meta webhook URL takes.
META_OBJECTS = {Channel.FACEBOOK: meta.PAGE_OBJECT, Channel.INSTAGRAM: meta.INSTAGRAM_OBJECT}


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _rejected(channel: Channel, outcome: str, status: int, error_code: str, message: str) -> ApiError:
    WEBHOOK_REQUESTS.labels(channel.value, outcome).inc()
    return ApiError(status, error_code, message)


def _json(channel: Channel, raw: bytes) -> Any:
    try:
        # Lone surrogates replaced and nesting bounded: whatever is kept must still encode as an event.
        return untrusted.loads(raw)
    except ValueError:
        raise _rejected(channel, "malformed", 400, "malformed_json", "request body is not valid JSON") from None


async def publish(
    publisher: Publisher,
    channel: Channel,
    messages: Sequence[InboundMessage],
    ignored: Sequence[str],
    statuses: Sequence[DeliveryStatus] = (),
) -> JSONResponse:
    """Publish the messages keyed by conversation (and receipts to the delivery topic) and wait for the broker;
    503 if it did not take them."""
    items: list[tuple[str, Event, bytes | None]] = [(topics.INBOUND, m, m.partition_key) for m in messages]
    items += [(topics.DELIVERY, s, s.partition_key) for s in statuses]
    try:
        await publisher.publish_many(items)
    except BrokerUnavailable as exc:
        log.warning(
            "broker did not take a webhook; answering 503 so the platform retries",
            extra={"channel": channel.value, "error": repr(exc), "messages": len(messages)},
        )
        raise _rejected(
            channel, "broker_unavailable", 503, "broker_unavailable", "the message broker is unavailable; retry later"
        ) from None
    WEBHOOK_REQUESTS.labels(channel.value, "accepted").inc()
    kinds = Counter("echo" if m.metadata.get("echo") else m.kind.value for m in messages)
    kinds["ignored"] = len(ignored)
    kinds["receipt"] = len(statuses)
    for kind, count in kinds.items():
        if count:
            WEBHOOK_EVENTS.labels(channel.value, kind).inc(count)
    if ignored:
        log.info("webhook parts set aside", extra={"channel": channel.value, "ignored": ",".join(sorted(set(ignored)))})
    return JSONResponse({"status": "accepted", "messages": len(messages)})


def _meta_handshake(settings: Settings, mode: str | None, token: str | None, challenge: str | None) -> str:
    expected = settings.meta_verify_token.get_secret_value().encode()
    given = (token or "").encode()
    if mode == "subscribe" and token is not None and challenge is not None and hmac.compare_digest(given, expected):
        return challenge
    raise ApiError(403, "forbidden", "webhook verification failed")


async def _meta_receive(request: Request, channel: Channel) -> JSONResponse:
    settings = _settings(request)
    raw = await request.body()
    if not signature.meta_verify(
        raw, request.headers.get("x-hub-signature-256"), settings.meta_app_secret.get_secret_value()
    ):
        log.warning("webhook with a missing or invalid signature refused", extra={"channel": channel.value})
        raise _rejected(channel, "bad_signature", 401, "unauthorized", "missing or invalid X-Hub-Signature-256")
    payload = _json(channel, raw)
    if meta.envelope_object(payload) != META_OBJECTS[channel]:
        # Signed by Meta for our app, but another object: retrying it forever would not help; say so and move on.
        WEBHOOK_REQUESTS.labels(channel.value, "ignored").inc()
        log.warning("webhook for another Graph object ignored", extra={"channel": channel.value})
        return JSONResponse({"status": "ignored"})
    own_id = settings.fb_page_id if channel is Channel.FACEBOOK else settings.ig_account_id
    batch = meta.normalize(payload, channel=channel, own_id=own_id)
    return await publish(request.app.state.publisher, channel, batch.messages, batch.ignored, batch.statuses)


MetaMode = Annotated[str | None, Query(alias="hub.mode")]
MetaToken = Annotated[str | None, Query(alias="hub.verify_token")]
MetaChallenge = Annotated[str | None, Query(alias="hub.challenge")]


@router.get("/webhooks/facebook", response_class=PlainTextResponse)
async def facebook_handshake(
    request: Request, mode: MetaMode = None, token: MetaToken = None, challenge: MetaChallenge = None
) -> PlainTextResponse:
    """Meta's subscription handshake for the Page: echo `hub.challenge` when the verify token matches."""
    return PlainTextResponse(_meta_handshake(_settings(request), mode, token, challenge))


@router.post("/webhooks/facebook")
async def facebook_receive(request: Request) -> JSONResponse:
    """Messenger events and Page feed comments."""
    return await _meta_receive(request, Channel.FACEBOOK)


@router.get("/webhooks/instagram", response_class=PlainTextResponse)
async def instagram_handshake(
    request: Request, mode: MetaMode = None, token: MetaToken = None, challenge: MetaChallenge = None
) -> PlainTextResponse:
    """Meta's subscription handshake for the Instagram account."""
    return PlainTextResponse(_meta_handshake(_settings(request), mode, token, challenge))


@router.post("/webhooks/instagram")
async def instagram_receive(request: Request) -> JSONResponse:
    """Instagram direct messages (and their echoes), comments and mentions."""
    return await _meta_receive(request, Channel.INSTAGRAM)


def _x_secret(settings: Settings) -> str:
    if settings.x_consumer_secret is None:
        raise ApiError(503, "x_not_configured", "X_CONSUMER_SECRET is not set; the X webhook cannot verify anything")
    return settings.x_consumer_secret.get_secret_value()


@router.get("/webhooks/x")
async def x_crc(request: Request, crc_token: Annotated[str | None, Query()] = None) -> dict[str, str]:
    """X's challenge-response check: `{"response_token": "sha256=<base64 HMAC>"}`."""
    if not crc_token:
        raise ApiError(400, "crc_token_missing", "crc_token is required")
    return signature.x_crc_response(crc_token, _x_secret(_settings(request)))


@router.post("/webhooks/x")
async def x_receive(request: Request) -> JSONResponse:
    """Account Activity events: mentions (`tweet_create_events`) and direct messages."""
    secret = _x_secret(_settings(request))
    raw = await request.body()
    if not signature.x_verify(raw, request.headers.get("x-twitter-webhooks-signature"), secret):
        log.warning("x webhook with a missing or invalid signature refused")
        raise _rejected(
            Channel.X, "bad_signature", 401, "unauthorized", "missing or invalid x-twitter-webhooks-signature"
        )
    payload = _json(Channel.X, raw)
    if not isinstance(payload, dict):
        raise _rejected(Channel.X, "malformed", 400, "malformed_payload", "expected a JSON object")
    messages, ignored = x.account_activity(payload)
    return await publish(request.app.state.publisher, Channel.X, messages, ignored)
