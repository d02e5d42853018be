"""The webhook over HTTP, in-process, against the real embedded broker: handshake, refusals, and every
message and status of a POST read back from the broker once the answer is 200."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeAlias, TypeVar

import httpx
from aiokafka import ConsumerRecord
from prometheus_client import REGISTRY
from pydantic import BaseModel, ValidationError

from suara_devstack.infra import free_port
from suara_ingest_wa.config import Settings
from suara_ingest_wa.main import create_app
from suara_ingest_wa.testing import citizen, envelope, meta_body, signed_headers, text_message, wamid
from suara_shared import topics
from suara_shared.events import DeliveryState, DeliveryStatus, InboundMessage, MessageKind

Record: TypeAlias = ConsumerRecord[bytes, bytes]
TopicReader = Callable[[str], Awaitable[list[Record]]]
M = TypeVar("M", bound=BaseModel)

URL = "/webhooks/whatsapp"
SITI = "6281234567890"
BUDI = "6285700000001"


def _signed(settings: Settings, body: bytes) -> dict[str, str]:
    return signed_headers(body, settings.meta_app_secret.get_secret_value())


def _count(outcome: str) -> float:
    value = REGISTRY.get_sample_value("suara_webhook_requests_total", {"channel": "whatsapp", "outcome": outcome})
    return value or 0.0


def _decoded(records: list[Record], model: type[M]) -> list[tuple[Record, M]]:
    """The records that hold a `model`: other suites share these topics, some with deliberately bad records."""
    decoded = []
    for record in records:
        try:
            decoded.append((record, model.model_validate_json(record.value or b"")))
        except ValidationError:
            continue
    return decoded


async def _published_ids(read_topic: TopicReader) -> set[str]:
    return {m.platform_message_id for _, m in _decoded(await read_topic(topics.INBOUND), InboundMessage)}


# --- the GET handshake -------------------------------------------------------------------------------------


async def test_handshake_echoes_the_challenge_for_the_right_token(
    client: httpx.AsyncClient, wa_settings: Settings
) -> None:
    token = wa_settings.meta_verify_token.get_secret_value()
    params = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}
    response = await client.get(URL, params=params)
    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


async def test_handshake_refuses_a_wrong_token_or_mode(client: httpx.AsyncClient, wa_settings: Settings) -> None:
    token = wa_settings.meta_verify_token.get_secret_value()
    for params in (
        {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "77"},
        {"hub.mode": "subscribe", "hub.verify_token": token[:-1], "hub.challenge": "77"},
        {"hub.mode": "subscribe", "hub.verify_token": "tökén", "hub.challenge": "77"},
        {"hub.mode": "unsubscribe", "hub.verify_token": token, "hub.challenge": "77"},
        {"hub.verify_token": token, "hub.challenge": "77"},
        {},
    ):
        response = await client.get(URL, params=params)
        assert response.status_code == 403, params
        assert response.json()["error_code"] == "forbidden"
        assert "77" not in response.text


# --- refusals ----------------------------------------------------------------------------------------------


async def test_unsigned_or_badly_signed_posts_get_401_and_publish_nothing(
    client: httpx.AsyncClient, wa_settings: Settings, read_topic: TopicReader
) -> None:
    unsigned_id, forged_id = wamid(), wamid()
    before = _count("bad_signature")
    unsigned = meta_body(
        envelope({"contacts": citizen(SITI, "Siti"), "messages": [text_message(SITI, unsigned_id, "a")]})
    )
    forged = meta_body(envelope({"contacts": citizen(SITI, "Siti"), "messages": [text_message(SITI, forged_id, "b")]}))

    response = await client.post(URL, content=unsigned, headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    assert response.json()["error_code"] == "unauthorized"
    response = await client.post(URL, content=forged, headers=signed_headers(forged, "not-the-app-secret"))
    assert response.status_code == 401
    # A valid signature of other bytes does not cover these.
    response = await client.post(URL, content=forged, headers=_signed(wa_settings, unsigned))
    assert response.status_code == 401

    assert _count("bad_signature") == before + 3
    assert not {unsigned_id, forged_id} & await _published_ids(read_topic)


async def test_malformed_json_gets_400(client: httpx.AsyncClient, wa_settings: Settings) -> None:
    before = _count("malformed")
    for body in (b'{"object": "whatsapp_business_account", ', b"\xff\xfe", b"[" * 100_000):
        response = await client.post(URL, content=body, headers=_signed(wa_settings, body))
        assert response.status_code == 400
        assert response.json()["error_code"] == "malformed_json"
    assert _count("malformed") == before + 3
    # The signature is checked first: an unsigned malformed body is a 401.
    response = await client.post(URL, content=b"{", headers={"Content-Type": "application/json"})
    assert response.status_code == 401


async def test_a_body_over_1_mib_gets_413(client: httpx.AsyncClient, wa_settings: Settings) -> None:
    limit = 1024 * 1024
    before = _count("too_large")
    big = b" " * (limit + 1)
    response = await client.post(URL, content=big, headers=_signed(wa_settings, big))
    assert response.status_code == 413
    assert response.json()["error_code"] == "payload_too_large"

    # Without Content-Length the body is cut off as soon as it is over the limit, not read to its end.
    chunk = b" " * (64 * 1024)
    sent: list[int] = []

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(64):  # 4 MiB in all
            sent.append(len(chunk))
            yield chunk

    response = await client.post(URL, content=stream(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert limit < sum(sent) < 2 * limit
    assert _count("too_large") == before + 2

    # Exactly at the limit is still a webhook.
    payload = meta_body(envelope({}))
    exact = payload + b" " * (limit - len(payload))
    response = await client.post(URL, content=exact, headers=_signed(wa_settings, exact))
    assert response.status_code == 200


async def test_another_graph_object_is_acknowledged_and_ignored(
    client: httpx.AsyncClient, wa_settings: Settings
) -> None:
    # Signed, so from Meta: an error would only make Meta retry for days what this endpoint never processes.
    for payload in ({"object": "page", "entry": []}, [1, 2, 3]):
        body = meta_body(payload)
        response = await client.post(URL, content=body, headers=_signed(wa_settings, body))
        assert response.status_code == 200
        assert response.json() == {"status": "ignored"}


# --- accepted POSTs, read back from the broker -------------------------------------------------------------


async def test_a_batch_of_messages_and_a_status_reaches_the_broker(
    client: httpx.AsyncClient, wa_settings: Settings, read_topic: TopicReader
) -> None:
    siti_text, siti_image, siti_place, budi_text, outbound = wamid(), wamid(), wamid(), wamid(), wamid()
    image = {
        "from": SITI,
        "id": siti_image,
        "timestamp": "1717236001",
        "type": "image",
        "image": {"caption": "Lubang di jalan", "mime_type": "image/jpeg", "sha256": "abc=", "id": "98765"},
    }
    place = {
        "from": SITI,
        "id": siti_place,
        "timestamp": "1717236002",
        "type": "location",
        "location": {"latitude": -6.7079, "longitude": 111.3416, "name": "Alun-alun Rembang"},
    }
    status = {"id": outbound, "status": "delivered", "timestamp": "1717236006", "recipient_id": BUDI}
    payload = envelope(
        {
            "contacts": citizen(SITI, "Siti"),
            "messages": [text_message(SITI, siti_text, "Jalan rusak — tolong 🙏"), image, place],
        },
        {
            "contacts": citizen(BUDI, "Budi"),
            "messages": [text_message(BUDI, budi_text, "Lampu mati")],
            "statuses": [status],
        },
    )
    body = meta_body(payload)
    assert b"\\u2014" in body  # escaped as Meta sends it; the signature covers these very bytes
    text_events = {"channel": "whatsapp", "kind": "text"}
    before_events = REGISTRY.get_sample_value("suara_webhook_events_total", text_events) or 0.0

    response = await client.post(URL, content=body, headers=_signed(wa_settings, body))
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "messages": 4, "statuses": 1}

    ours = {siti_text, siti_image, siti_place, budi_text}
    decoded = [
        (r, m) for r, m in _decoded(await read_topic(topics.INBOUND), InboundMessage) if m.platform_message_id in ours
    ]
    by_id = {m.platform_message_id: m for _, m in decoded}
    assert set(by_id) == ours
    assert by_id[siti_text].text == "Jalan rusak — tolong 🙏"
    assert by_id[siti_text].sender.phone == "+6281234567890"
    assert by_id[siti_image].kind is MessageKind.IMAGE
    assert by_id[siti_image].attachments[0].media_id == "98765"
    location = by_id[siti_place].location
    assert location is not None and (location.latitude, location.longitude) == (-6.7079, 111.3416)
    assert (by_id[budi_text].conversation_key, by_id[budi_text].sender.display_name) == (BUDI, "Budi")
    # Keyed by conversation: one citizen's messages share a partition and keep their order.
    siti = sorted(
        (r.offset, r.partition, r.key, m.platform_message_id) for r, m in decoded if m.conversation_key == SITI
    )
    assert {(partition, key) for _, partition, key, _ in siti} == {(siti[0][1], f"whatsapp:{SITI}".encode())}
    assert [message_id for *_, message_id in siti] == [siti_text, siti_image, siti_place]

    statuses = _decoded(await read_topic(topics.DELIVERY), DeliveryStatus)
    [(record, delivered)] = [(r, s) for r, s in statuses if s.platform_message_id == outbound]
    assert delivered.status is DeliveryState.DELIVERED
    assert record.key == outbound.encode()
    after_events = REGISTRY.get_sample_value("suara_webhook_events_total", text_events) or 0.0
    assert after_events - before_events == 2


async def test_an_unknown_type_and_the_text_behind_it_are_both_published_in_order(
    client: httpx.AsyncClient, wa_settings: Settings, read_topic: TopicReader
) -> None:
    odd_id, text_id = wamid(), wamid()
    odd = {"from": SITI, "id": odd_id, "timestamp": "1717236000", "type": "hologram", "hologram": {"x": 1}}
    body = meta_body(
        envelope({"contacts": citizen(SITI, "Siti"), "messages": [odd, text_message(SITI, text_id, "Halo")]})
    )
    response = await client.post(URL, content=body, headers=_signed(wa_settings, body))
    assert response.status_code == 200

    found = sorted(
        (r.partition, r.offset, m)
        for r, m in _decoded(await read_topic(topics.INBOUND), InboundMessage)
        if m.platform_message_id in {odd_id, text_id}
    )
    assert [m.platform_message_id for *_, m in found] == [odd_id, text_id]
    assert found[0][0] == found[1][0]  # one partition, so the offsets give the order
    assert [m.kind for *_, m in found] == [MessageKind.UNSUPPORTED, MessageKind.TEXT]
    assert found[0][2].raw == odd


async def test_broker_unreachable_gets_503_so_meta_retries(wa_settings: Settings) -> None:
    down = wa_settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"})
    app = create_app(down)
    before = _count("broker_unavailable")
    body = meta_body(envelope({"contacts": citizen(SITI, "Siti"), "messages": [text_message(SITI, wamid(), "Halo")]}))
    # The lifespan starts although the broker is down.
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest-wa.test") as client,
    ):
        response = await client.post(URL, content=body, headers=_signed(down, body))
        assert response.status_code == 503
        assert response.json()["error_code"] == "broker_unavailable"
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"broker": False}
    assert _count("broker_unavailable") == before + 1


async def test_health_readiness_and_metrics(client: httpx.AsyncClient, wa_settings: Settings) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"broker": True}
    body = meta_body(envelope({}))
    assert (await client.post(URL, content=body, headers=_signed(wa_settings, body))).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert 'suara_webhook_requests_total{channel="whatsapp",outcome="accepted"}' in metrics
    # How long the answers waited for the broker, what an operator looks at when Meta reports slow webhooks.
    acknowledged = REGISTRY.get_sample_value("suara_kafka_publish_seconds_count") or 0.0
    message = meta_body(envelope({"contacts": citizen(SITI, "Siti"), "messages": [text_message(SITI, wamid(), "a")]}))
    assert (await client.post(URL, content=message, headers=_signed(wa_settings, message))).status_code == 200
    assert REGISTRY.get_sample_value("suara_kafka_publish_seconds_count") == acknowledged + 1
    assert "suara_kafka_publish_seconds_bucket" in (await client.get("/metrics")).text
