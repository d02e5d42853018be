"""The Messenger and Instagram adapters against the channel sandbox over local HTTP: the Send API's window branches
(RESPONSE inside 24 hours, the HUMAN_AGENT tag up to 7 days, later failed `window_closed` without a call), and a
refused token (Graph 190) failing the reply and turning the channel unhealthy until a send works."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from suara_devstack.sandbox.app import create_app as create_sandbox
from suara_devstack.testing import serve_app
from suara_notifier.adapters import PermanentSendError
from suara_notifier.adapters.meta import FacebookAdapter, InstagramAdapter, MetaMessagingAdapter
from suara_shared.events import Channel, OutboundReply, utcnow
from suara_shared.graph import GraphClient

PAGE_ID = "109876543210987"
IG_ID = "17841400000000001"


@pytest.fixture
async def sandbox() -> AsyncIterator[str]:
    async with serve_app(create_sandbox()) as url:
        yield url


def _adapter(sandbox: str, channel: Channel) -> MetaMessagingAdapter:
    kind = FacebookAdapter if channel is Channel.FACEBOOK else InstagramAdapter
    graph = GraphClient(base_url=sandbox, version="v23.0", access_token="sandbox-test-token", timeout=10)
    return kind(graph=graph, node_id=PAGE_ID if channel is Channel.FACEBOOK else IG_ID)


def _dm(channel: Channel, *, citizen_wrote: datetime) -> OutboundReply:
    psid = "65" + "".join(str(secrets.randbelow(10)) for _ in range(14))
    return OutboundReply(
        channel=channel,
        conversation_key=f"dm:{psid}",
        recipient=psid,
        text="Petugas PDAM menuju lokasi.",
        ticket_reference="RMB-2026-000042",
        window_expires_at=citizen_wrote + timedelta(hours=24),
    )


async def _sends(sandbox: str, recipient: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        calls = (await http.get(f"{sandbox}/_sandbox/calls")).json()
    return [c["body"] for c in calls if c["path"].endswith("/messages") and c["body"]["recipient"] == {"id": recipient}]


async def _refused(adapter: MetaMessagingAdapter, reply: OutboundReply) -> PermanentSendError:
    """What the adapter refuses this reply with (it must refuse it), the adapter closed after."""
    try:
        with pytest.raises(PermanentSendError) as failed:
            await adapter.send(reply)
    finally:
        await adapter.aclose()
    return failed.value


@pytest.mark.parametrize("channel", [Channel.FACEBOOK, Channel.INSTAGRAM])
async def test_inside_24_hours_a_dm_is_a_response(sandbox: str, channel: Channel) -> None:
    adapter = _adapter(sandbox, channel)
    reply = _dm(channel, citizen_wrote=utcnow() - timedelta(hours=23))
    try:
        result = await adapter.send(reply)
    finally:
        await adapter.aclose()
    assert result.platform_message_id
    expected = {"messaging_type": "RESPONSE"} if channel is Channel.FACEBOOK else {}
    assert await _sends(sandbox, reply.recipient) == [
        {"recipient": {"id": reply.recipient}, **expected, "message": {"text": reply.text}}
    ]


@pytest.mark.parametrize("channel", [Channel.FACEBOOK, Channel.INSTAGRAM])
async def test_between_24_hours_and_7_days_a_dm_carries_the_human_agent_tag(sandbox: str, channel: Channel) -> None:
    adapter = _adapter(sandbox, channel)
    reply = _dm(channel, citizen_wrote=utcnow() - timedelta(days=2))
    try:
        await adapter.send(reply)
    finally:
        await adapter.aclose()
    # As msgr_send_human_agent_request.json.
    assert await _sends(sandbox, reply.recipient) == [
        {
            "recipient": {"id": reply.recipient},
            "messaging_type": "MESSAGE_TAG",
            "tag": "HUMAN_AGENT",
            "message": {"text": reply.text},
        }
    ]


@pytest.mark.parametrize("channel", [Channel.FACEBOOK, Channel.INSTAGRAM])
async def test_after_7_days_a_dm_fails_window_closed_without_calling_meta(sandbox: str, channel: Channel) -> None:
    reply = _dm(channel, citizen_wrote=utcnow() - timedelta(days=7, minutes=5))
    failed = await _refused(_adapter(sandbox, channel), reply)
    assert failed.code == "window_closed"
    assert failed.detail is not None and "over 7 days old" in failed.detail
    assert await _sends(sandbox, reply.recipient) == []


async def test_a_refused_page_token_fails_with_190_until_a_send_works(sandbox: str) -> None:
    def token_valid() -> float | None:
        return REGISTRY.get_sample_value("suara_channel_token_valid", {"channel": "facebook"})

    adapter = _adapter(sandbox, Channel.FACEBOOK)
    async with httpx.AsyncClient() as http:
        switch = f"{sandbox}/_sandbox/social/token"
        try:
            (await http.put(switch, json={"platform": "facebook", "valid": False})).raise_for_status()
            with pytest.raises(PermanentSendError) as failed:
                await adapter.send(_dm(Channel.FACEBOOK, citizen_wrote=utcnow()))
            assert failed.value.code.startswith("190")
            assert not adapter.healthy() and token_valid() == 0.0
            (await http.put(switch, json={"platform": "facebook", "valid": True})).raise_for_status()
            await adapter.send(_dm(Channel.FACEBOOK, citizen_wrote=utcnow()))
            assert adapter.healthy() and token_valid() == 1.0
        finally:
            await adapter.aclose()


@pytest.mark.parametrize(("channel", "thread"), [(Channel.FACEBOOK, "post"), (Channel.INSTAGRAM, "media")])
async def test_a_reply_on_a_comment_thread_with_no_comment_left_fails_comment_removed_without_calling_meta(
    sandbox: str, channel: Channel, thread: str
) -> None:
    """Every comment of the thread was removed: ticketing finds nothing to reply under. A commenter's id is no
    messaging id, so a direct message instead would reach no one; the reply fails, saying why."""
    commenter = "77" + "".join(str(secrets.randbelow(10)) for _ in range(14))
    reply = OutboundReply(
        channel=channel,
        conversation_key=f"{thread}:{PAGE_ID}_555666777888999:{commenter}",
        recipient=commenter,
        text="Petugas menuju lokasi.",
        ticket_reference="RMB-2026-000043",
        window_expires_at=utcnow() + timedelta(hours=20),
    )
    assert (await _refused(_adapter(sandbox, channel), reply)).code == "comment_removed"
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{sandbox}/_sandbox/calls")).json() == []
