"""`/webhooks/whatsapp`: answer Meta's handshake; verify, normalize and publish each POST, then answer."""

from __future__ import annotations

import hmac
import logging
from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from suara_shared import topics, untrusted
from suara_shared.events import Channel, Event, MessageKind
from suara_shared.http import ApiError
from suara_shared.kafka import BrokerUnavailable, Publisher
from suara_shared.metrics import WEBHOOK_EVENTS, WEBHOOK_REQUESTS

from . import signature
from .config import Settings
from .normalize import WebhookBatch, is_whatsapp_envelope, normalize_webhook

log = logging.getLogger(__name__)

#: The contract's limit; Meta's own batches stay far below it.
MAX_BODY_BYTES = 1024 * 1024

CHANNEL = Channel.WHATSAPP.value

router = APIRouter(tags=["whatsapp"])


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


SettingsDep = Annotated[Settings, Depends(get_settings)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]


class BodyTooLarge(Exception):
    """The request body is over the limit; the rest of it is not read."""


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, as sent (the signature covers these exact bytes), refusing more than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        # Checked per chunk: a chunked body without Content-Length is cut off as soon as it is too big.
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def _rejected(outcome: str, status: int, error_code: str, message: str) -> ApiError:
    WEBHOOK_REQUESTS.labels(CHANNEL, outcome).inc()
    return ApiError(status, error_code, message)


@router.get("/webhooks/whatsapp", response_class=PlainTextResponse)
async def verify_subscription(
    settings: SettingsDep,
    mode: Annotated[str | None, Query(alias="hub.mode")] = None,
    token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
    challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
) -> PlainTextResponse:
    """Meta's subscription handshake: echo `hub.challenge` when the verify token matches, else 403."""
    expected = settings.meta_verify_token.get_secret_value().encode()
    if (
        mode == "subscribe"
        and token is not None
        and challenge is not None
        and hmac.compare_digest(token.encode(), expected)
    ):
        return PlainTextResponse(challenge)
    raise ApiError(403, "forbidden", "webhook verification failed")


def _publishable(batch: WebhookBatch) -> list[tuple[str, Event, bytes | None]]:
    """Messages keyed by conversation (one citizen's messages stay in order), statuses by their message."""
    items: list[tuple[str, Event, bytes | None]] = [(topics.INBOUND, m, m.partition_key) for m in batch.messages]
    items += [(topics.DELIVERY, s, s.partition_key) for s in batch.statuses]
    return items


def _record(batch: WebhookBatch) -> None:
    """Count what was taken in, and say in the log what deserves a look; never the citizen's words."""
    kinds = Counter(m.kind.value for m in batch.messages)
    kinds.update({"status": len(batch.statuses), "error": len(batch.errors), "ignored": len(batch.ignored)})
    for kind, count in kinds.items():
        if count:
            WEBHOOK_EVENTS.labels(CHANNEL, kind).inc(count)
    for message in batch.messages:
        if message.kind is MessageKind.UNSUPPORTED:
            log.warning(
                "whatsapp message kept as unsupported",
                extra={
                    "platform_message_id": message.platform_message_id,
                    "wa_type": message.metadata.get("wa_type"),
                    "normalize_error": message.metadata.get("normalize_error"),
                },
            )
    for error in batch.errors:
        log.warning("whatsapp reported an error outside any message", extra={"code": error.code, "title": error.title})
    if batch.ignored:
        log.info("whatsapp webhook parts ignored", extra={"ignored": ",".join(sorted(set(batch.ignored)))})


@router.post("/webhooks/whatsapp")
async def receive(request: Request, settings: SettingsDep, publisher: PublisherDep) -> JSONResponse:
    """Verify the signature over the raw body, normalize every message and status, publish them all, and
    answer 200 only once the broker has acknowledged them (503 otherwise, so that Meta retries)."""
    try:
        raw = await read_body(request)
    except BodyTooLarge:
        raise _rejected("too_large", 413, "payload_too_large", "request body is over 1 MiB") from None
    secret = settings.meta_app_secret.get_secret_value()
    if not signature.verify(raw, request.headers.get("x-hub-signature-256"), secret):
        log.warning("whatsapp webhook with a missing or invalid signature refused")
        raise _rejected("bad_signature", 401, "unauthorized", "missing or invalid X-Hub-Signature-256")
    try:
        # Lone surrogates replaced and nesting bounded: whatever is kept must still encode as an event.
        payload = untrusted.loads(raw)
    except ValueError:
        raise _rejected("malformed", 400, "malformed_json", "request body is not valid JSON") from None
    if not is_whatsapp_envelope(payload):
        # Signed with our app secret, so it came from Meta: another object (a Page, say) sent to this URL.
        # Any non-2xx would only make Meta retry, for days, what this endpoint will never process.
        WEBHOOK_REQUESTS.labels(CHANNEL, "ignored").inc()
        log.warning(
            "webhook for another Graph object ignored",
            extra={"object": str(payload.get("object"))[:64] if isinstance(payload, dict) else type(payload).__name__},
        )
        return JSONResponse({"status": "ignored"})
    batch = normalize_webhook(payload)
    try:
        await publisher.publish_many(_publishable(batch))
    except BrokerUnavailable as exc:
        log.warning(
            "broker did not take a whatsapp webhook; answering 503 so Meta retries",
            extra={"error": repr(exc), "messages": len(batch.messages), "statuses": len(batch.statuses)},
        )
        raise _rejected(
            "broker_unavailable", 503, "broker_unavailable", "the message broker is unavailable; retry later"
        ) from None
    WEBHOOK_REQUESTS.labels(CHANNEL, "accepted").inc()
    _record(batch)
    return JSONResponse({"status": "accepted", "messages": len(batch.messages), "statuses": len(batch.statuses)})
