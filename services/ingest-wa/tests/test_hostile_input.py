"""Hostile input: whatever JSON a correctly signed POST to `/webhooks/whatsapp` carries, the answer is never a
5xx (Meta would retry it for days), nothing is published for what is not a WhatsApp webhook, every message of one
that is reaches the broker (kept as `unsupported` if need be), and whatever is published reads back as a valid
event. The normalizer itself never raises, whatever dict it is handed.

The app runs in-process with a publisher that records instead of sending (hypothesis tries hundreds of bodies)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suara_devstack.hostile import (
    WA_MESSAGE,
    WA_VALUE,
    RecordingPublisher,
    body_of,
    json_values,
    loose,
    published,
    whatsapp_webhooks,
)
from suara_ingest_wa.config import Settings
from suara_ingest_wa.main import create_app
from suara_ingest_wa.normalize import (
    WHATSAPP_OBJECT,
    is_whatsapp_envelope,
    normalize_message,
    normalize_status,
    normalize_webhook,
)
from suara_ingest_wa.testing import citizen, envelope, meta_body, signed_headers, text_message, wamid
from suara_shared import untrusted
from suara_shared.events import Channel, InboundMessage

SECRET = "hostile-test-secret"
URL = "/webhooks/whatsapp"
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class App:
    """The webhook app in-process with a recording publisher, and an event loop to call it from sync tests."""

    def __init__(self) -> None:
        self.publisher = RecordingPublisher(Settings(meta_app_secret=SECRET))
        app = create_app(Settings(meta_app_secret=SECRET))
        app.state.publisher = self.publisher
        self.app = app
        self.runner = asyncio.Runner()

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST `body` and return the answer; the records published for it are in `publisher.records`."""
        self.publisher.records.clear()

        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://ingest-wa.test") as client:
                return await client.post(URL, content=body, headers=headers)

        return self.runner.run(call())

    def post_signed(self, payload: Any) -> httpx.Response:
        body = body_of(payload)
        return self.post(body, signed_headers(body, SECRET))


@pytest.fixture(scope="module")
def wa() -> Iterator[App]:
    app = App()
    yield app
    app.runner.close()


def _messages_in(payload: Any) -> int:
    """How many entries of `messages[]` a webhook holds in its `messages` changes: each must be published."""
    if not isinstance(payload, dict) or payload.get("object") != WHATSAPP_OBJECT:
        return 0
    count = 0
    for entry in payload.get("entry") if isinstance(payload.get("entry"), list) else []:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            if not isinstance(change, dict) or change.get("field", "messages") != "messages":
                continue
            value = change.get("value")
            if isinstance(value, dict) and isinstance(value.get("messages"), list):
                count += len(value["messages"])
    return count


@FAST
@given(payload=json_values().filter(lambda value: not is_whatsapp_envelope(value)))
def test_any_signed_json_is_answered_without_a_server_error_and_publishes_nothing(wa: App, payload: Any) -> None:
    response = wa.post_signed(payload)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ignored"}
    assert wa.publisher.records == []


@FAST
@given(payload=whatsapp_webhooks())
def test_any_signed_whatsapp_envelope_publishes_every_message_and_only_valid_events(wa: App, payload: Any) -> None:
    response = wa.post_signed(payload)
    assert response.status_code == 200, response.text
    messages, statuses = published(wa.publisher.records)
    expected = _messages_in(payload)
    if payload["object"] != WHATSAPP_OBJECT:
        assert response.json() == {"status": "ignored"}
        assert wa.publisher.records == []
        return
    # Nothing lost and nothing invented: one event per message Meta sent, however broken.
    assert len(messages) == expected
    assert response.json() == {"status": "accepted", "messages": expected, "statuses": len(statuses)}
    assert all(m.channel is Channel.WHATSAPP for m in messages)
    assert all(s.channel is Channel.WHATSAPP and s.platform_message_id for s in statuses)


@FAST
@given(body=st.binary(max_size=200))
def test_any_signed_bytes_get_200_or_400_never_a_server_error(wa: App, body: bytes) -> None:
    response = wa.post(body, signed_headers(body, SECRET))
    assert response.status_code in (200, 400), response.text
    assert wa.publisher.records == []


@FAST
@given(payload=whatsapp_webhooks())
def test_an_unsigned_envelope_is_refused_and_publishes_nothing(wa: App, payload: Any) -> None:
    body = body_of(payload)
    response = wa.post(body, signed_headers(body, SECRET + "x"))
    assert response.status_code == 401
    assert wa.publisher.records == []


def test_a_signed_message_padded_past_1_mib_is_refused_and_publishes_nothing(wa: App) -> None:
    value = {"contacts": citizen("6281234567890", "Siti"), "messages": [text_message("6281234567890", wamid(), "a")]}
    body = meta_body(envelope(value))
    padded = body[:-1] + b"," + b'"pad":"' + b"x" * (1024 * 1024) + b'"}'
    response = wa.post(padded, signed_headers(padded, SECRET))
    assert response.status_code == 413
    assert wa.publisher.records == []


# --- the normalizer alone ----------------------------------------------------------------------------------


def _serializable(message: InboundMessage) -> None:
    """What the publisher does with it: a message that cannot be encoded would be a 500 and a retry storm."""
    assert InboundMessage.model_validate_json(message.model_dump_json()).platform_message_id


CONTACTS = [{"wa_id": "6281234567890", "profile": {"name": "Siti"}}]


@FAST
@given(message=loose(WA_MESSAGE))
def test_normalize_message_keeps_anything_as_a_valid_message(message: Any) -> None:
    # Never raises, even on what the webhook would have cleaned first (lone surrogates)...
    assert isinstance(normalize_message(message, contacts=CONTACTS), InboundMessage)
    # ...and what it makes of what the webhook hands it can always be published.
    _serializable(normalize_message(untrusted.clean(message), contacts=CONTACTS))


@FAST
@given(payload=whatsapp_webhooks() | st.dictionaries(st.text(), json_values(), max_size=4))
def test_normalize_webhook_never_raises(payload: dict[str, Any]) -> None:
    normalize_webhook(payload)
    batch = normalize_webhook(untrusted.clean(payload))
    for message in batch.messages:
        _serializable(message)
    for status in batch.statuses:
        status.model_dump_json()


@FAST
@given(status=loose(WA_VALUE["statuses"][0]))
def test_normalize_status_never_raises(status: Any) -> None:
    found = normalize_status(status)
    assert found is None or found.model_dump_json()


# --- what the properties found (each answered 500 before, so Meta would have retried it for days) -------------


def _with(message: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"contacts": citizen("6281234567890", "Siti")}
    if message is not None:
        value["messages"] = [message]
    if status is not None:
        value["statuses"] = [status]
    return envelope(value)


@pytest.mark.parametrize(
    ("payload", "texts", "statuses"),
    [
        # A message without an id whose text holds a lone surrogate: its fallback id could not be computed.
        # Kept as `unsupported` (no id), with no text.
        (_with({"from": "6281234567890", "type": "text", "text": {"body": "jalan \ud800 rusak"}}), [None], 0),
        # A lone surrogate in a text: the event could not be encoded for the broker.
        (_with(text_message("6281234567890", "wamid.S1", "lampu \udfff mati")), ["lampu \ufffd mati"], 0),
        # A status whose timestamp is an integer beyond any float.
        (_with(status={"id": "wamid.S2", "status": "read", "timestamp": 10**400}), [], 1),
    ],
    ids=["surrogate-without-id", "surrogate-text", "huge-timestamp"],
)
def test_inputs_that_once_broke_the_webhook_are_kept(
    wa: App, payload: dict[str, Any], texts: list[str | None], statuses: int
) -> None:
    response = wa.post_signed(payload)
    assert response.status_code == 200, response.text
    found, found_statuses = published(wa.publisher.records)
    assert [m.text for m in found] == texts
    assert len(found_statuses) == statuses


def test_json_nested_absurdly_deep_is_refused_with_400_not_a_server_error(wa: App) -> None:
    # At 250 levels the event could not be encoded (500); at 200 it could, but no consumer could read it back.
    for depth in (200, 250, 5000):
        nested: Any = "x"
        for _ in range(depth):
            nested = [nested]
        message = {**text_message("6281234567890", f"wamid.D{depth}", "halo"), "context": {"deep": nested}}
        body = _with(message) if depth < 900 else None
        raw = body_of(body) if body is not None else b'{"object":"whatsapp_business_account","entry":' + b"[" * depth
        response = wa.post(raw, signed_headers(raw, SECRET))
        assert response.status_code == 400, (depth, response.text)
        assert response.json()["error_code"] == "malformed_json"
        assert wa.publisher.records == []


def test_a_message_id_that_is_not_text_the_broker_can_carry_still_gives_a_valid_message() -> None:
    """Found by hypothesis: an id ending in a lone surrogate made the fallback id itself invalid."""
    from suara_ingest_wa.normalize import normalize_message

    for raw in ({"id": "0" * 40 + "\ud800"}, {"id": "\udfff", "type": "text", "text": {"body": "x"}}):
        message = normalize_message(raw)
        assert message.kind == "unsupported" and "\ud800" not in message.platform_message_id
        assert normalize_message(raw).platform_message_id == message.platform_message_id  # retries still dedupe
        message.model_dump_json()  # and the broker can carry it


def test_a_status_with_text_the_broker_cannot_carry_still_gives_a_valid_status() -> None:
    """Found by hypothesis: a lone surrogate in a status's error text made the status unpublishable."""
    from suara_ingest_wa.normalize import normalize_status

    found = normalize_status(
        {"id": "wamid.x", "status": "failed", "errors": [{"code": 131026, "title": "bad \ud800", "message": "\udfff"}]}
    )
    assert found is not None and found.error is not None and "\ufffd" in (found.error.title or "")
    found.model_dump_json()
