"""Citizens' files on Messenger and Instagram, against the real database and the channel sandbox as Meta's CDN over
local HTTP: a webhook carries a file as a signed link that expires within days, so ticketing keeps the file as it
arrives, before any agent opens the ticket, and follows no link that is not Meta's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from suara_devstack.infra import EmbeddedInfra
from suara_shared import db
from suara_shared import media as kept_files
from suara_shared.events import (
    Attachment,
    Channel,
    InboundMessage,
    MessageKind,
    Sender,
    link_media_id,
    new_id,
    utcnow,
)
from suara_ticketing import media

from .conftest import App, running, settings_for, web_message

PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 24  # a 6 KiB photo of a broken street light
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8


@pytest.fixture
async def social_app(infra: EmbeddedInfra, database: db.Database, sandbox: str, tmp_path: Path) -> AsyncIterator[App]:
    """Ticketing with the Graph API (and so Meta's CDN) pointed at the sandbox, and a 64 KiB media cap."""
    settings = settings_for(infra, database, meta_graph_url=sandbox, media_max_bytes=64 * 1024, data_dir=str(tmp_path))
    async with running(settings) as started:
        yield started


async def _file_link(sandbox: str, content: bytes, mime: str) -> tuple[str, str]:
    """The citizen's file on the sandbox's CDN: its id there and the link a webhook would carry."""
    async with httpx.AsyncClient() as http:
        uploaded = await http.post(f"{sandbox}/_sandbox/social/media", content=content, headers={"Content-Type": mime})
        uploaded.raise_for_status()
    return uploaded.json()["id"], uploaded.json()["link"]


async def _file_state(sandbox: str, file_id: str, *, expire: bool = False) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        answer = await (http.delete if expire else http.get)(f"{sandbox}/_sandbox/social/media/{file_id}")
        answer.raise_for_status()
        state: dict[str, Any] = answer.json()
        return state


def _message(channel: Channel, user: str, kind: MessageKind, url: str) -> InboundMessage:
    return InboundMessage(
        channel=channel,
        platform_message_id=f"m_{new_id()}",
        conversation_key=f"dm:{user}",
        sender=Sender(channel_user_id=user, display_name="Budi Santoso"),
        kind=kind,
        text=None,
        attachments=(Attachment(kind=kind, url=url, media_id=link_media_id(url)),),
    )


async def _reference(app: App, user: str) -> str:
    items = (await app.client.get("/api/v1/tickets", params={"limit": 50})).json()["items"]
    (reference,) = [t["reference"] for t in items if t["citizen"]["channel_user_id"] == user]
    return str(reference)


async def _given_up(app: App, event: InboundMessage) -> httpx.Response:
    """The message arrives, the keeper gives its file up at once (nothing left to try later), and the agent asks
    for the file: the answer the agent gets."""
    store = media.MediaStore(app.service.db, app.settings)
    await media.enqueue(store, [event])
    await app.service.handle_inbound(event)
    assert await media.keep_due(store) == 0
    assert await store.pending.count_documents({}) == 0
    reference = await _reference(app, event.sender.channel_user_id)
    return await app.client.get(f"/api/v1/tickets/{reference}/media/{event.attachments[0].media_id}")


async def test_a_messenger_photo_and_an_instagram_video_are_kept_before_their_links_expire(
    social_app: App, sandbox: str
) -> None:
    """The keeper fetches each file from its link as the message arrives, once even when the message comes twice.
    After the links expired, the agent opening the ticket still sees the photo and the video, with their types."""
    store = media.MediaStore(social_app.service.db, social_app.settings)
    photo_id, photo_link = await _file_link(sandbox, PHOTO, "image/jpeg")
    video_id, video_link = await _file_link(sandbox, VIDEO, "video/mp4")
    events = [
        _message(Channel.FACEBOOK, "6543210987650001", MessageKind.IMAGE, photo_link),
        _message(Channel.INSTAGRAM, "1234567890120001", MessageKind.VIDEO, video_link),
    ]
    await media.enqueue(store, events)
    await media.enqueue(store, events)  # both redelivered
    for event in events:
        await social_app.service.handle_inbound(event)

    assert await media.keep_due(store) == 2
    assert await store.pending.count_documents({}) == 0
    for file_id in (photo_id, video_id):
        assert (await _file_state(sandbox, file_id, expire=True))["downloads"] == 1

    for event, content, mime in ((events[0], PHOTO, "image/jpeg"), (events[1], VIDEO, "video/mp4")):
        reference = await _reference(social_app, event.sender.channel_user_id)
        ticket = (await social_app.client.get(f"/api/v1/tickets/{reference}")).json()
        media_id = ticket["messages"][0]["attachments"][0]["media_id"]
        served = await social_app.client.get(f"/api/v1/tickets/{reference}/media/{media_id}")
        assert served.status_code == 200 and served.content == content
        assert served.headers["content-type"] == mime
        assert served.headers["x-content-type-options"] == "nosniff"
    assert [(await _file_state(sandbox, f))["downloads"] for f in (photo_id, video_id)] == [1, 1]


async def test_a_link_that_expired_before_it_was_kept_tells_the_agent_so(social_app: App, sandbox: str) -> None:
    file_id, link = await _file_link(sandbox, PHOTO, "image/jpeg")
    await _file_state(sandbox, file_id, expire=True)

    gone = await _given_up(social_app, _message(Channel.FACEBOOK, "6543210987650002", MessageKind.IMAGE, link))
    assert gone.status_code == 410 and gone.json()["error_code"] == "media_gone"


@pytest.mark.parametrize(
    "link",
    [
        "https://example.org/foto-jalan.jpg",  # not Meta's
        "https://scontent.xx.fbcdn.net/v/t1.15752-9/example.jpg?oe=667A0000",  # Meta's, while Suara talks to a fake
    ],
)
async def test_a_link_not_to_the_graph_apis_own_host_is_never_followed_in_development(
    social_app: App, sandbox: str, link: str
) -> None:
    """Pointed at the sandbox, ticketing follows no link elsewhere: a sample's real CDN link stays unfetched, and
    nothing leaves the machine. The agent is told the file cannot be fetched."""
    refused = await _given_up(social_app, _message(Channel.FACEBOOK, "6543210987650003", MessageKind.IMAGE, link))
    assert refused.status_code == 404 and refused.json()["error_code"] == "media_not_fetchable"


def test_against_meta_a_cdn_link_is_followed_over_https_only() -> None:
    """In production (the Graph API is Meta's), the links of Meta's CDNs are followed, over https, and no other."""
    graph = media.GraphClient(base_url="https://graph.facebook.com", version="v23.0", access_token="")
    assert media._followable(graph, "https://scontent.xx.fbcdn.net/v/t1.15752-9/1.jpg?oe=667A0000")
    assert media._followable(graph, "https://scontent.cdninstagram.com/v/t51.2885-15/1.jpg")
    assert not media._followable(graph, "http://scontent.xx.fbcdn.net/v/t1.15752-9/1.jpg")
    assert not media._followable(graph, "https://fbcdn.net.example.org/1.jpg")
    assert not media._followable(graph, "https://127.0.0.1/1.jpg")


async def test_a_file_over_the_cap_is_not_kept_and_the_agent_is_told_why(social_app: App, sandbox: str) -> None:
    """A Messenger video larger than MEDIA_MAX_BYTES (64 KiB here) is refused as it comes, kept nowhere."""
    _, link = await _file_link(sandbox, VIDEO * 40, "video/mp4")
    event = _message(Channel.FACEBOOK, "6543210987650004", MessageKind.VIDEO, link)

    refused = await _given_up(social_app, event)
    assert (refused.status_code, refused.json()["error_code"]) == (502, "media_too_large")
    store = media.MediaStore(social_app.service.db, social_app.settings)
    assert await store.open("facebook", event.attachments[0].media_id or "") is None


async def test_a_web_photo_whose_complaint_never_came_is_removed_and_one_whose_complaint_came_is_kept(
    social_app: App,
) -> None:
    """The web form keeps its photos before it publishes the complaint. If the broker then refused the complaint and
    the citizen never sent it again, the photos await a message that never comes: after two days they are removed.
    A photo whose complaint was stored was claimed by it and stays, however old."""
    database = social_app.service.db
    await kept_files.ensure_index(database)
    old = utcnow() - timedelta(days=3)
    for media_id, awaiting in (("claimed", old), ("stray", old), ("fresh", utcnow() - timedelta(hours=1))):
        metadata = {"mime_type": "image/jpeg", "size": len(PHOTO), "awaiting": awaiting}
        await kept_files.put(database, "web", media_id, PHOTO, filename=f"{media_id}.jpg", metadata=metadata)
    complaint = web_message("Jalan berlubang di depan SD Negeri Tireman, mohon segera diperbaiki")
    photo = Attachment(kind=MessageKind.IMAGE, media_id="claimed", mime_type="image/jpeg")
    complaint = complaint.model_copy(update={"attachments": (photo,)})
    await media.enqueue(media.MediaStore(database, social_app.settings), [complaint])
    await social_app.service.handle_inbound(complaint)

    assert await kept_files.remove_strays(database, older_than=utcnow() - media.STRAY_AFTER) == 1
    assert await kept_files.find(database, "web", "stray") is None
    for media_id in ("claimed", "fresh"):
        assert await kept_files.find(database, "web", media_id) is not None, media_id
    assert await database[f"{kept_files.BUCKET}.chunks"].count_documents({}) == 2  # the stray's chunk went too
    reference = (await social_app.client.get("/api/v1/tickets")).json()["items"][0]["reference"]
    shown = await social_app.client.get(f"/api/v1/tickets/{reference}/media/claimed")
    assert shown.status_code == 200 and shown.content == PHOTO
