"""The WhatsApp adapter against the channel sandbox over local HTTP, its statuses on the real broker: text that
quotes the citizen and is split past 4096 characters, the template outside the 24-hour window (or when Meta says
131047), retries on throttling, failures with Meta's code, a refused token turning readiness and a metric red,
read receipts, and a pace that never exceeds the number's rate."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from suara_devstack.sandbox.app import create_app as create_sandbox
from suara_devstack.testing import eventually, serve_app
from suara_notifier.adapters import AdapterRegistry
from suara_notifier.adapters.whatsapp import WhatsAppAdapter, one_line, split_text
from suara_notifier.config import Settings
from suara_notifier.delivery import Notifier, RetryPolicy
from suara_notifier.ledger import SendLedger
from suara_notifier.main import create_app
from suara_notifier.ratelimit import RateLimiter
from suara_shared import topics
from suara_shared.events import (
    Channel,
    DeliveryState,
    DeliveryStatus,
    OutboundAction,
    OutboundReply,
    new_id,
    utcnow,
)
from suara_shared.kafka import Publisher

StatusReader = Callable[..., Awaitable[dict[str, list[DeliveryStatus]]]]
SAMPLES = Path(__file__).parent / "samples"
PHONE_NUMBER_ID = "106540352242922"


@pytest.fixture
async def sandbox() -> AsyncIterator[str]:
    async with serve_app(create_sandbox()) as url:
        yield url


@pytest.fixture
def wa_settings(notifier_settings: Settings, sandbox: str) -> Settings:
    return Settings.model_validate(
        {
            **notifier_settings.model_dump(),
            "meta_graph_url": sandbox,
            "wa_access_token": "sandbox-test-token",
            "wa_phone_number_id": PHONE_NUMBER_ID,
        }
    )


@pytest.fixture
async def publisher(notifier_settings: Settings) -> AsyncIterator[Publisher]:
    pub = Publisher(notifier_settings)
    yield pub
    await pub.stop()


@pytest.fixture
async def notifier(wa_settings: Settings, publisher: Publisher, ledger: SendLedger) -> AsyncIterator[Notifier]:
    registry = AdapterRegistry([WhatsAppAdapter.from_settings(wa_settings)])
    yield Notifier(adapters=registry, publisher=publisher, ledger=ledger, retry=RetryPolicy.from_settings(wa_settings))
    await registry.aclose()


def _citizen() -> str:
    return "62812" + "".join(str(secrets.randbelow(10)) for _ in range(8))


def _reply(to: str, text: str = "Petugas DPUPR akan menambal jalan besok pagi.", **fields: Any) -> OutboundReply:
    fields.setdefault("window_expires_at", utcnow() + timedelta(hours=3))
    return OutboundReply(
        channel=Channel.WHATSAPP,
        conversation_key=to,
        recipient=to,
        text=text,
        ticket_reference="RMB-2026-000042",
        **fields,
    )


async def _script(sandbox: str, to: str, **script: Any) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{sandbox}/_sandbox/whatsapp/recipients/{to}/script", json=script)
        response.raise_for_status()


async def _set_token(sandbox: str, *, valid: bool) -> None:
    async with httpx.AsyncClient() as http:
        (await http.put(f"{sandbox}/_sandbox/whatsapp/token", json={"valid": valid})).raise_for_status()


async def _sends(sandbox: str, to: str) -> list[dict[str, Any]]:
    """The calls to the messages endpoint about `to` (sends) or naming no one (read receipts), oldest first."""
    async with httpx.AsyncClient() as http:
        calls = (await http.get(f"{sandbox}/_sandbox/calls")).json()
    return [c for c in calls if c["path"].endswith("/messages") and c["body"].get("to") in (to, None)]


def _sample(name: str) -> dict[str, Any]:
    sample: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return sample


async def test_a_reply_inside_the_window_is_text_quoting_the_citizens_message(
    sandbox: str, notifier: Notifier, read_statuses: StatusReader
) -> None:
    to = _citizen()
    reply = _reply(to, reply_to="wamid.citizen-asked")

    await notifier.handle(reply)

    [call] = await _sends(sandbox, to)
    assert call["path"] == f"/v23.0/{PHONE_NUMBER_ID}/messages" and call["auth_scheme"] == "Bearer"
    expected = _sample("wa_send_text_reply_request.json")
    assert call["body"].keys() == expected.keys()
    assert call["body"]["context"] == {"message_id": "wamid.citizen-asked"}
    assert call["body"]["text"]["body"] == reply.text
    [status] = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert status.status is DeliveryState.SENT
    assert status.platform_message_id == call["response"]["messages"][0]["id"]
    assert status.template is None


async def test_a_reply_over_4096_characters_goes_as_several_messages(
    sandbox: str, notifier: Notifier, read_statuses: StatusReader
) -> None:
    to = _citizen()
    text = " ".join(f"kalimat-{i:04d}" for i in range(500))  # 6,499 characters
    reply = _reply(to, text, reply_to="wamid.citizen-asked")

    await notifier.handle(reply)

    calls = await _sends(sandbox, to)
    bodies = [c["body"]["text"]["body"] for c in calls]
    assert len(bodies) == 2 and all(len(b) <= 4096 for b in bodies)
    assert " ".join(bodies) == text, "cut between words, nothing lost"
    assert "context" in calls[0]["body"] and "context" not in calls[1]["body"]
    [status] = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    ids = [c["response"]["messages"][0]["id"] for c in calls]
    assert (status.platform_message_id, status.more_platform_message_ids) == (ids[0], (ids[1],))


async def test_outside_the_24_hour_window_the_approved_template_is_sent(
    sandbox: str, notifier: Notifier, read_statuses: StatusReader
) -> None:
    to = _citizen()
    reply = _reply(to, "Laporan Anda sudah selesai ditangani.\nTerima kasih.", window_expires_at=utcnow())

    await notifier.handle(reply)

    [call] = await _sends(sandbox, to)
    assert call["body"].keys() == _sample("wa_send_template_request.json").keys()
    template = call["body"]["template"]
    assert template["name"] == "suara_tanggapan_laporan" and template["language"] == {"code": "id"}
    assert template["components"] == [
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "RMB-2026-000042"},
                {"type": "text", "text": "Laporan Anda sudah selesai ditangani. Terima kasih."},
            ],
        }
    ]
    [status] = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert (status.status, status.template) == (DeliveryState.SENT, "suara_tanggapan_laporan")


async def test_meta_saying_131047_makes_the_reply_go_as_the_template(
    sandbox: str, notifier: Notifier, read_statuses: StatusReader
) -> None:
    to = _citizen()
    await _script(sandbox, to, errors=[131047])
    reply = _reply(to)  # Suara believes the window is open

    await notifier.handle(reply)

    calls = await _sends(sandbox, to)
    assert [(c["body"]["type"], c["status"]) for c in calls] == [("text", 400), ("template", 200)]
    [status] = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert (status.status, status.template) == (DeliveryState.SENT, "suara_tanggapan_laporan")


async def test_without_a_template_a_reply_outside_the_window_fails_clearly(
    wa_settings: Settings, publisher: Publisher, ledger: SendLedger, sandbox: str, read_statuses: StatusReader
) -> None:
    settings = wa_settings.model_copy(update={"wa_template_name": ""})
    registry = AdapterRegistry([WhatsAppAdapter.from_settings(settings)])
    to = _citizen()
    reply = _reply(to, window_expires_at=utcnow() - timedelta(days=2))
    try:
        retry = RetryPolicy.from_settings(settings)
        await Notifier(adapters=registry, publisher=publisher, ledger=ledger, retry=retry).handle(reply)
    finally:
        await registry.aclose()

    assert await _sends(sandbox, to) == []
    [status] = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert status.status is DeliveryState.FAILED
    assert status.error is not None and status.error.code == "window_closed"
    assert "WA_TEMPLATE_NAME" in (status.error.detail or "")


async def test_throttling_errors_are_retried_until_the_message_goes(
    sandbox: str, notifier: Notifier, read_statuses: StatusReader
) -> None:
    to = _citizen()
    await _script(sandbox, to, errors=[130429, 131056, 131000])
    retried = {"channel": "whatsapp", "code": "130429"}
    before = REGISTRY.get_sample_value("suara_notifier_send_retries_total", retried) or 0.0
    reply = _reply(to)

    await notifier.handle(reply)

    assert [c["status"] for c in await _sends(sandbox, to)] == [429, 429, 500, 200]
    [status] = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert status.status is DeliveryState.SENT
    assert REGISTRY.get_sample_value("suara_notifier_send_retries_total", retried) == before + 1


async def test_131026_fails_the_reply_with_metas_code_without_retrying(
    sandbox: str, notifier: Notifier, read_statuses: StatusReader
) -> None:
    to = _citizen()
    await _script(sandbox, to, errors=[131026])
    reply = _reply(to)

    await notifier.handle(reply)

    assert len(await _sends(sandbox, to)) == 1
    [status] = (await read_statuses([reply.outbound_id]))[reply.outbound_id]
    assert status.status is DeliveryState.FAILED
    assert status.error is not None
    assert (status.error.code, status.error.title) == ("131026", "(#131026) Message Undeliverable")
    assert "Message Undeliverable." in (status.error.detail or "") and "fbtrace_id" in (status.error.detail or "")


async def test_read_receipts_are_sent_and_publish_no_status(
    sandbox: str, notifier: Notifier, read_statuses: StatusReader
) -> None:
    to = _citizen()
    receipt = OutboundReply(
        action=OutboundAction.MARK_READ,
        channel=Channel.WHATSAPP,
        conversation_key=to,
        recipient=to,
        reply_to="wamid.citizen-wrote",
    )
    marker = _reply(to)

    await notifier.handle(receipt)
    await notifier.handle(marker)

    calls = await _sends(sandbox, to)
    assert calls[0]["body"] == {**_sample("wa_mark_read_request.json"), "message_id": "wamid.citizen-wrote"}
    assert calls[0]["response"] == {"success": True}
    found = await read_statuses([receipt.outbound_id], wait_for=[marker.outbound_id])
    assert receipt.outbound_id not in found


async def test_a_refused_token_fails_the_reply_and_turns_readiness_and_the_metric_red(
    wa_settings: Settings, sandbox: str, publisher: Publisher, read_statuses: StatusReader
) -> None:
    to = _citizen()
    app = create_app(wa_settings, group_id=f"suara-notifier-test-{new_id()}")

    def token_valid() -> float | None:
        return REGISTRY.get_sample_value("suara_channel_token_valid", {"channel": "whatsapp"})

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notifier") as client,
    ):
        assert token_valid() == 1.0
        # The token expired at Meta: every call is refused with 190 (whatever else this consumer finds to send).
        await _set_token(sandbox, valid=False)
        refused = _reply(to)
        await publisher.publish(topics.OUTBOUND, refused, key=refused.partition_key)
        [status] = (await read_statuses([refused.outbound_id]))[refused.outbound_id]
        assert status.status is DeliveryState.FAILED
        assert status.error is not None and status.error.code == "190"

        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["channels"] is False
        assert token_valid() == 0.0
        assert 'suara_channel_token_valid{channel="whatsapp"} 0.0' in (await client.get("/metrics")).text

        # Someone replaced the token: the next send works and everything is green again.
        await _set_token(sandbox, valid=True)
        accepted = _reply(to)
        await publisher.publish(topics.OUTBOUND, accepted, key=accepted.partition_key)
        [status] = (await read_statuses([accepted.outbound_id]))[accepted.outbound_id]
        assert status.status is DeliveryState.SENT
        assert token_valid() == 1.0

        async def ready_again() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await eventually(ready_again, what="readiness back once a send succeeded")


async def test_sends_are_paced_to_the_numbers_rate() -> None:
    now = [100.0]
    starts: list[float] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(80, clock=lambda: now[0], sleep=sleep)
    for _ in range(400):
        await limiter.acquire()
        starts.append(now[0])

    busiest = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
    assert busiest == 80, "never more than 80 sends in any second"
    assert starts[-1] - starts[0] == pytest.approx(399 / 80)


async def test_notifier_pods_together_keep_to_the_numbers_rate() -> None:
    """Meta's 80 messages a second are the business number's: three notifier pods holding 1, 2 and 3 of the six
    outbound partitions send at 13.3, 26.7 and 40 a second, 80 together, whatever the HPA scales to."""
    now = [100.0]
    starts: list[tuple[int, float]] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    async def pod(index: int, share: float) -> None:
        limiter = RateLimiter(80, clock=lambda: now[0], sleep=sleep)
        limiter.share = lambda: share
        for _ in range(int(400 * share)):
            await limiter.acquire()
            starts.append((index, now[0]))

    # One clock, pods taking turns: each pod's calls are spaced by its own share.
    for index, share in enumerate((1 / 6, 2 / 6, 3 / 6)):
        now[0] = 100.0
        await pod(index, share)
    per_pod = [sorted(t for i, t in starts if i == index) for index in range(3)]
    rates = [(len(times) - 1) / (times[-1] - times[0]) for times in per_pod]
    assert rates == [pytest.approx(80 / 6), pytest.approx(160 / 6), pytest.approx(40)]
    assert sum(rates) == pytest.approx(80)


def test_text_is_cut_between_words_and_template_parameters_are_one_line() -> None:
    assert split_text("pendek") == ["pendek"]
    parts = split_text("a" * 5000)
    assert [len(p) for p in parts] == [4096, 904], "a word longer than a message is cut"
    words = " ".join(["kata"] * 2000)
    parts = split_text(words)
    assert all(len(p) <= 4096 for p in parts) and " ".join(parts) == words
    assert one_line("Baris satu\n\n\tbaris   dua  ") == "Baris satu baris dua"
    assert len(one_line("x" * 5000)) == 1000 and one_line("x" * 5000).endswith("…")
    # Cut where the citizen can read the rest: the status page's link stays whole at the end.
    link = "https://lapor.example/status/RMB-2026-000001"
    long = one_line(" ".join(["langkah"] * 400), link=link)
    assert len(long) <= 1000 and long.endswith(f"… {link}") and "langkah langkah" in long
