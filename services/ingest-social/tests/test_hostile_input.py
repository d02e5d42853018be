"""Hostile input: whatever a correctly signed POST to `/webhooks/facebook`, `/webhooks/instagram` or `/webhooks/x`
carries, and whatever a citizen (or a script) sends to the web form, its JSON twin or a kiosk, the answer is never a
5xx, nothing is published for what is not a complaint or a platform event, and whatever is published reads back as
a valid event. The normalizers themselves never raise, whatever dict they are handed.

The app runs in-process with a publisher that records instead of sending (hypothesis tries hundreds of bodies)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from suara_devstack.hostile import (
    ANY_TEXT,
    X_USER,
    X_V2,
    RecordingPublisher,
    body_of,
    json_values,
    loose,
    meta_webhooks,
    published,
    x_webhooks,
)
from suara_devstack.infra import EmbeddedInfra
from suara_ingest_social.config import Settings
from suara_ingest_social.main import create_app
from suara_ingest_social.web import photos
from suara_ingest_social.web.models import KECAMATAN
from suara_ingest_social.webhooks import meta, signature, x
from suara_shared import db, media
from suara_shared.events import Channel, InboundMessage

META_SECRET = "hostile-meta-secret"
X_SECRET = "hostile-x-secret"
KIOSK = "/kiosk/33.17.10.2034"
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: The photo cap here: small, so that generated photos can pass it.
PHOTO_CAP = 1024


class App:
    """ingest-social in-process with a recording publisher, the embedded database for the photos, and an event loop
    to call it from sync tests."""

    def __init__(self, database_uri: str) -> None:
        config = Settings(
            meta_app_secret=SecretStr(META_SECRET),
            x_consumer_secret=SecretStr(X_SECRET),
            fb_page_id="109876543210987",
            ig_account_id="17841400000000001",
            web_form_rate_per_minute=0,  # hundreds of submissions from one address, on purpose
            web_photo_max_bytes=PHOTO_CAP,
        )
        self.publisher = RecordingPublisher(config)
        self.app = create_app(config)
        # What the lifespan would set up, without a broker or ticketing behind it.
        self.app.state.settings = config
        self.app.state.publisher = self.publisher
        self.app.state.ticketing = httpx.AsyncClient(base_url="http://127.0.0.1:9")
        self.client, self.database = db.connect(database_uri)
        self.app.state.database = self.database
        self.runner = asyncio.Runner()

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """POST and return the answer; what it published is in `publisher.records`."""
        self.publisher.records.clear()

        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://suara.test") as client:
                return await client.post(path, **kwargs)

        return self.runner.run(call())

    def meta(self, path: str, payload: Any) -> httpx.Response:
        body = body_of(payload)
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature.meta_sign(body, META_SECRET)}
        return self.post(path, content=body, headers=headers)

    def x(self, payload: Any) -> httpx.Response:
        body = body_of(payload)
        headers = {
            "Content-Type": "application/json",
            "x-twitter-webhooks-signature": signature.x_digest(body, X_SECRET),
        }
        return self.post("/webhooks/x", content=body, headers=headers)


@pytest.fixture(scope="module")
def social(infra: EmbeddedInfra) -> Iterator[App]:
    app = App(infra.database_uri(f"hostile{secrets.token_hex(4)}"))
    yield app
    app.runner.run(app.app.state.ticketing.aclose())
    app.runner.run(app.client.drop_database(app.database.name))
    app.runner.run(db.close(app.client))
    app.runner.close()


def _events(payload: Any, *keys: str) -> int:
    """How many objects an envelope holds under `entry[].<key>[]`: at most one message each."""
    entries = payload.get("entry") if isinstance(payload, dict) else None
    found = 0
    for entry in entries if isinstance(entries, list) else []:
        for key in keys:
            items = entry.get(key) if isinstance(entry, dict) else None
            found += sum(isinstance(item, dict) for item in items) if isinstance(items, list) else 0
    return found


# --- Facebook and Instagram ----------------------------------------------------------------------------------

META_ENDPOINTS = [
    ("/webhooks/facebook", Channel.FACEBOOK, "page"),
    ("/webhooks/instagram", Channel.INSTAGRAM, "instagram"),
]


@pytest.mark.parametrize(("path", "channel", "obj"), META_ENDPOINTS)
@FAST
@given(payload=json_values().filter(lambda value: meta.envelope_object(value) is None))
def test_any_signed_json_to_a_meta_webhook_publishes_nothing(
    social: App, path: str, channel: Channel, obj: str, payload: Any
) -> None:
    response = social.meta(path, payload)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ignored"}
    assert social.publisher.records == []


@pytest.mark.parametrize(("path", "channel", "obj"), META_ENDPOINTS)
@FAST
@given(data=st.data())
def test_any_signed_meta_envelope_publishes_only_valid_events_of_its_channel(
    social: App, path: str, channel: Channel, obj: str, data: st.DataObject
) -> None:
    payload = data.draw(meta_webhooks(obj))
    response = social.meta(path, payload)
    assert response.status_code == 200, response.text
    messages, statuses = published(social.publisher.records)
    if meta.envelope_object(payload) != obj:
        assert response.json() == {"status": "ignored"}
        assert social.publisher.records == []
        return
    assert response.json() == {"status": "accepted", "messages": len(messages)}
    assert len(messages) <= _events(payload, "messaging", "standby", "changes")
    assert all(m.channel is channel for m in messages)
    assert all(s.channel is channel for s in statuses)


# --- X -------------------------------------------------------------------------------------------------------


@FAST
@given(payload=json_values() | x_webhooks())
def test_any_signed_x_body_publishes_only_valid_mentions_and_direct_messages(social: App, payload: Any) -> None:
    response = social.x(payload)
    if not isinstance(payload, dict):
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "malformed_payload"
        assert social.publisher.records == []
        return
    assert response.status_code == 200, response.text
    messages, statuses = published(social.publisher.records)
    assert statuses == []
    assert response.json() == {"status": "accepted", "messages": len(messages)}
    events = [
        item
        for key in ("tweet_create_events", "direct_message_events")
        if isinstance(payload.get(key), list)
        for item in payload[key]
        if isinstance(item, dict)
    ]
    assert len(messages) <= len(events)
    assert all(m.channel is Channel.X for m in messages)


@pytest.mark.parametrize("path", ["/webhooks/facebook", "/webhooks/instagram", "/webhooks/x"])
@FAST
@given(body=st.binary(max_size=200))
def test_any_signed_bytes_to_a_webhook_get_200_or_400(social: App, path: str, body: bytes) -> None:
    if path == "/webhooks/x":
        headers = {"x-twitter-webhooks-signature": signature.x_digest(body, X_SECRET)}
    else:
        headers = {"X-Hub-Signature-256": signature.meta_sign(body, META_SECRET)}
    response = social.post(path, content=body, headers=headers)
    assert response.status_code in (200, 400), response.text
    assert social.publisher.records == []


# --- the normalizers alone -----------------------------------------------------------------------------------


@FAST
@given(payload=meta_webhooks("page") | st.dictionaries(ANY_TEXT, json_values(), max_size=4), own=st.none() | ANY_TEXT)
def test_meta_normalize_never_raises(payload: dict[str, Any], own: str | None) -> None:
    for channel in (Channel.FACEBOOK, Channel.INSTAGRAM):
        batch = meta.normalize(payload, channel=channel, own_id=own)
        assert all(isinstance(m, InboundMessage) for m in batch.messages)


@FAST
@given(payload=x_webhooks() | st.dictionaries(ANY_TEXT, json_values(), max_size=4))
def test_x_account_activity_never_raises(payload: dict[str, Any]) -> None:
    messages, _ = x.account_activity(payload)
    assert all(isinstance(m, InboundMessage) for m in messages)


@FAST
@given(
    item=loose(X_V2),
    users=st.dictionaries(ANY_TEXT, loose(X_USER), max_size=2),
    own=st.none() | st.from_regex(r"\A[0-9]{1,19}\Z"),
)  # fmt: skip
def test_x_poll_normalizers_never_raise(item: Any, users: dict[str, Any], own: str | None) -> None:
    if not isinstance(item, dict):
        item = {"value": item}
    for normalize in (x.mention, x.dm_event):
        found = normalize(item, users, own_id=own)
        assert found is None or isinstance(found, InboundMessage)


# --- the web form, its JSON twin and the kiosk ----------------------------------------------------------------

PHONES = st.from_regex(r"\A(\+62|62|0)8[0-9]{2}[- ]?[0-9]{3,4}[- ]?[0-9]{3,5}\Z") | ANY_TEXT
TEXTS = st.text(min_size=0, max_size=80) | st.text(min_size=4990, max_size=5010) | ANY_TEXT
COMPLAINTS = st.fixed_dictionaries(
    {},
    optional={
        "text": TEXTS | json_values(max_leaves=3),
        "name": ANY_TEXT | json_values(max_leaves=3),
        "phone": PHONES | json_values(max_leaves=3),
        "email": st.emails() | ANY_TEXT,
        "kecamatan": st.sampled_from([*KECAMATAN, "kec. lasem", "Kecamatan  Sluke", "Jakarta"]) | ANY_TEXT,
        "desa": ANY_TEXT | st.text(min_size=110, max_size=130),
        "anonymous": st.booleans() | json_values(max_leaves=2),
        "confidential": st.booleans() | json_values(max_leaves=2),
        "extra": json_values(max_leaves=3),
    },
)


@FAST
@given(body=COMPLAINTS | json_values())
def test_any_json_to_the_complaint_api_is_accepted_once_or_refused_with_nothing_published(
    social: App, body: Any
) -> None:
    response = social.post(
        "/api/v1/web/complaints", content=body_of(body), headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (202, 422), response.text
    messages, statuses = published(social.publisher.records)
    if response.status_code == 422:
        assert response.json()["error_code"] == "validation_error"
        assert messages == [] and statuses == []
        return
    [message] = messages
    assert message.channel is Channel.WEB and response.json()["id"] == message.platform_message_id
    assert message.text is not None and len(message.text) >= 10
    if body.get("anonymous") is True:
        assert (message.sender.display_name, message.sender.phone, message.sender.email) == (None, None, None)


FORM_TEXT = st.text(st.characters(codec="utf-8"), max_size=30) | st.text(st.characters(codec="utf-8"), min_size=10)
FORMS = st.dictionaries(
    st.sampled_from(["text", "name", "phone", "email", "kecamatan", "desa", "anonymous", "officer", "on_behalf"])
    | FORM_TEXT,
    FORM_TEXT | PHONES.filter(lambda p: p.isascii()),
    max_size=8,
)


@pytest.mark.parametrize("path", ["/lapor", KIOSK])
@FAST
@given(form=FORMS)
def test_any_form_is_filed_once_or_shown_again_with_nothing_published(
    social: App, path: str, form: dict[str, str]
) -> None:
    response = social.post(path, data=form)
    messages, _ = published(social.publisher.records)
    filed = 303 if path == "/lapor" else 200
    assert response.status_code in (filed, 422), response.text
    if response.status_code == 422:
        assert response.headers["content-type"].startswith("text/html")
    assert len(messages) == (1 if response.status_code == filed else 0)


#: What a form's file part may hold: a photo's first bytes or none, then anything; named anything; typed anything.
PHOTO_HEADS = st.sampled_from([b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP", b"<svg "])
FILE_PARTS = st.lists(
    st.tuples(
        st.sampled_from(["", "foto.jpg", "../../etc/passwd", "C:\\Users\\warga\\lubang.jpg", "a\r\nb.png"])
        | st.text(max_size=30),
        st.builds(lambda head, rest: head + rest, PHOTO_HEADS, st.binary(max_size=1200)),
        st.sampled_from(["image/jpeg", "image/png", "text/html", "image/svg+xml", "application/octet-stream"]),
    ),
    max_size=5,
)


def _expected_photos(parts: list[tuple[str, bytes, str]]) -> int | None:
    """How many photos the form keeps, or None when it must come back (422): the oracle the app is held to. A part
    without a file name is a text field, as a browser sends it (httpx leaves an empty name out)."""
    chosen = [content for name, content, _ in parts if name]
    if len(chosen) > photos.MAX_PHOTOS:
        return None
    if any(photos.image_type(content[:64]) is None or len(content) > PHOTO_CAP for content in chosen):
        return None
    return len(chosen)


@pytest.mark.parametrize("path", ["/lapor", KIOSK])
@FAST
@given(parts=FILE_PARTS)
def test_any_files_sent_with_a_form_are_kept_as_the_photos_they_are_or_the_form_comes_back(
    social: App, path: str, parts: list[tuple[str, bytes, str]]
) -> None:
    """Whatever files a script attaches (none, too many, not photos, too large, named to climb out of a folder,
    typed as anything), the answer is never a 5xx: the complaint is filed with exactly its photos, each kept whole
    and typed by its bytes, or the form comes back and nothing is published."""
    text = "Jalan berlubang di depan SD Negeri Tireman, mohon segera diperbaiki."
    response = social.post(path, data={"text": text}, files=[("foto", part) for part in parts])
    messages, _ = published(social.publisher.records)
    expected = _expected_photos(parts)
    filed = 303 if path == "/lapor" else 200
    assert response.status_code == (422 if expected is None else filed), (response.status_code, response.text[:200])
    if expected is None:
        assert messages == []
        return
    (message,) = messages
    assert len(message.attachments) == expected
    for attachment in message.attachments:
        assert attachment.kind.value == "image" and (attachment.mime_type or "").startswith("image/")
        assert "/" not in (attachment.filename or "") and "\\" not in (attachment.filename or "")
        kept = social.runner.run(media.find(social.database, "web", attachment.media_id or ""))
        assert kept is not None and kept["length"] == attachment.size


@pytest.mark.parametrize("path", ["/lapor", KIOSK, "/api/v1/web/complaints"])
@FAST
@given(body=st.binary(max_size=300), content_type=st.sampled_from(
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json", "text/plain"]
))  # fmt: skip
def test_any_bytes_to_the_form_are_refused_without_a_server_error(
    social: App, path: str, body: bytes, content_type: str
) -> None:
    response = social.post(path, content=body, headers={"Content-Type": content_type})
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert social.publisher.records == []


# --- over the size limit: 413 and nothing published, on every endpoint that takes a body ----------------------


def _padded_meta_comment() -> bytes:
    value = {"from": {"id": "7788990011223344"}, "comment_id": "555_1", "post_id": "109876543210987_555",
             "item": "comment", "verb": "add", "message": "Jalan di Desa Tireman berlubang besar sekali"}  # fmt: skip
    payload = {"object": "page", "entry": [{"id": "109876543210987", "changes": [{"field": "feed", "value": value}]}]}
    return body_of({**payload, "pad": "x" * (1024 * 1024)})


def _padded_x_mention() -> bytes:
    tweet = {"id_str": "1797000000000000002", "text": "@pemkab jalan rusak di Lasem",
             "user": {"id_str": "1500000000000000001", "name": "Warga"}, "timestamp_ms": "1717236300000"}  # fmt: skip
    return body_of({"for_user_id": "1700000000000000000", "tweet_create_events": [tweet], "pad": "x" * (1024 * 1024)})


@pytest.mark.parametrize("path", ["/webhooks/facebook", "/webhooks/instagram", "/webhooks/x", KIOSK])
@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_1_mib_is_refused_with_413_and_publishes_nothing(social: App, path: str, chunked: bool) -> None:
    if path == "/webhooks/x":
        body = _padded_x_mention()
        headers = {"x-twitter-webhooks-signature": signature.x_digest(body, X_SECRET)}
    elif path == KIOSK:
        body = ("text=" + "Lampu jalan mati sejak seminggu " * 40_000).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    else:
        body = _padded_meta_comment()
        headers = {"X-Hub-Signature-256": signature.meta_sign(body, META_SECRET)}
    assert len(body) > 1024 * 1024

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = social.post(path, content=stream() if chunked else body, headers=headers)
    assert response.status_code == 413
    assert response.json()["error_code"] == "payload_too_large"
    assert social.publisher.records == []


# --- what the properties found (each answered 500 before: the platform would have retried it for days) ---------


def _dm(sender: str, text: str) -> dict[str, Any]:
    event = {"sender": {"id": sender}, "recipient": {"id": "109876543210987"}, "timestamp": 1717235999876,
             "message": {"mid": "m_hostile1", "text": text}}  # fmt: skip
    return {"object": "page", "entry": [{"id": "109876543210987", "messaging": [event]}]}


def _comment(name: str) -> dict[str, Any]:
    value = {"item": "comment", "verb": "add", "from": {"id": "7788990011223344", "name": name},
             "comment_id": "555_9", "post_id": "109876543210987_555", "message": "Jalan berlubang"}  # fmt: skip
    return {"object": "page", "entry": [{"id": "109876543210987", "changes": [{"field": "feed", "value": value}]}]}


def _tweet(user_id: str = "1500000000000000001", timestamp: str = "1717236300000", text: str = "jalan rusak") -> Any:
    tweet = {"id_str": "1797000000000000009", "text": text, "user": {"id_str": user_id, "name": "Warga"},
             "timestamp_ms": timestamp}  # fmt: skip
    return {"for_user_id": "1700000000000000000", "tweet_create_events": [tweet]}


@pytest.mark.parametrize(
    ("path", "payload", "published_messages"),
    [
        # A sender id over the 256 characters a Sender holds (it was cut to 512).
        ("/webhooks/facebook", _dm("1" * 300, "halo"), 1),
        # A commenter's name over 256 characters.
        ("/webhooks/facebook", _comment("N" * 300), 1),
        # A lone surrogate in a message: the event could not be encoded for the broker.
        ("/webhooks/facebook", _dm("6543210987654321", "lampu \udfff mati"), 1),
        ("/webhooks/x", _tweet(text="jalan \ud800 rusak"), 1),
        # A timestamp of superscript digits (`"1²".isdigit()` is true, `int("1²")` fails).
        ("/webhooks/x", _tweet(timestamp="1²"), 1),
        # A timestamp beyond the year 9999.
        ("/webhooks/x", _tweet(timestamp="99999999999999999999"), 1),
        # An author id of 300 digits: not an X id, so the tweet is set aside.
        ("/webhooks/x", _tweet(user_id="1" * 300), 0),
    ],
    ids=[
        "fb-long-sender",
        "fb-long-name",
        "fb-surrogate",
        "x-surrogate",
        "x-superscript-time",
        "x-far-future",
        "x-long-author",
    ],
)
def test_inputs_that_once_broke_a_webhook_are_answered_200(
    social: App, path: str, payload: Any, published_messages: int
) -> None:
    response = social.x(payload) if path == "/webhooks/x" else social.meta(path, payload)
    assert response.status_code == 200, response.text
    messages, _ = published(social.publisher.records)
    assert len(messages) == published_messages
    assert all(m.sender.display_name is None or len(m.sender.display_name) <= 256 for m in messages)


def test_a_lone_surrogate_in_a_complaint_no_longer_fails_its_publication(social: App) -> None:
    body = body_of({"text": "Lampu jalan \ud800 di depan balai desa mati", "name": "Dewi"})
    response = social.post("/api/v1/web/complaints", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    [message] = published(social.publisher.records)[0]
    assert message.text == "Lampu jalan \ufffd di depan balai desa mati"


@pytest.mark.parametrize("path", ["/webhooks/facebook", "/webhooks/instagram", "/webhooks/x"])
def test_json_nested_absurdly_deep_is_refused_with_400_not_a_server_error(social: App, path: str) -> None:
    # A message carrying 250 levels (its raw payload) could not be encoded as an event (500); at 200 it could,
    # but no consumer could have read it back. 5000 levels are past what the JSON parser itself takes.
    for depth in (200, 250, 5000):
        nested: Any = "x"
        for _ in range(min(depth, 900)):
            nested = [nested]
        payload = _tweet() if path == "/webhooks/x" else _dm("6543210987654321", "halo")
        if path == "/webhooks/x":
            payload["tweet_create_events"][0]["entities"] = nested
        else:
            payload["entry"][0]["messaging"][0]["message"]["attachments"] = nested
        body = body_of(payload) if depth < 900 else b'{"object":"page","entry":' + b"[" * depth
        if path == "/webhooks/x":
            headers = {"x-twitter-webhooks-signature": signature.x_digest(body, X_SECRET)}
        else:
            headers = {"X-Hub-Signature-256": signature.meta_sign(body, META_SECRET)}
        response = social.post(path, content=body, headers=headers)
        assert response.status_code == 400, (depth, response.text)
        assert response.json()["error_code"] == "malformed_json"
        assert social.publisher.records == []
