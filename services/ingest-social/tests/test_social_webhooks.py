"""The Facebook, Instagram and X webhooks and the X poller: signatures, handshakes, every sample as the right kind
on the right thread, and the poller's cursors across a restart and a 429."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from suara_devstack.sandbox.app import create_app as sandbox_app
from suara_devstack.sandbox.social import ScriptedError
from suara_devstack.testing import serve_app
from suara_ingest_social import testing as built
from suara_ingest_social.config import Settings
from suara_ingest_social.webhooks import meta, poller, signature, x
from suara_shared import db
from suara_shared.events import Channel, DeliveryState, MessageKind
from suara_shared.kafka import Publisher

SAMPLES = Path(__file__).parent / "samples"
SECRET = "test-app-secret"


def _sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def _signed(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Hub-Signature-256": signature.meta_sign(body, SECRET)}


def test_messenger_receipts_become_delivery_statuses_by_id_and_by_watermark() -> None:
    """channels.md §2.1: `delivery{mids,watermark}` and `read{watermark}`; they open nothing."""
    payload = {
        "object": "page",
        "entry": [
            {
                "id": "109876543210987",
                "time": 1717236000123,
                "messaging": [
                    {
                        "sender": {"id": "6543210987654321"},
                        "recipient": {"id": "109876543210987"},
                        "timestamp": 1717236000000,
                        "delivery": {"mids": ["m_One", "m_Two"], "watermark": 1717235999000},
                    },
                    {
                        "sender": {"id": "6543210987654321"},
                        "recipient": {"id": "109876543210987"},
                        "timestamp": 1717236001000,
                        "read": {"watermark": 1717236000500},
                    },
                ],
            }
        ],
    }
    batch = meta.normalize(payload, channel=Channel.FACEBOOK, own_id="109876543210987")
    assert batch.messages == ()
    found = [(s.platform_message_id, s.conversation_key, s.status, s.watermark) for s in batch.statuses]
    delivered, read = DeliveryState.DELIVERED, DeliveryState.READ
    assert [(pid, key, state) for pid, key, state, _ in found] == [
        ("m_One", None, delivered),
        ("m_Two", None, delivered),
        (None, "dm:6543210987654321", delivered),
        (None, "dm:6543210987654321", read),
    ]
    assert [int(w.timestamp() * 1000) for *_, w in found if w] == [1717235999000, 1717236000500]


def test_x_crc_answers_the_published_test_vector() -> None:
    answer = signature.x_crc_response(
        "9b4507b3-9040-4669-9ca3-6b94edb50553", "z3ZX4v7mAAUGykl3EcmkqbartmuW8VFOOzCloLx9Q45P0hLrFu"
    )
    assert answer == {"response_token": "sha256=Cytd4Sq+NvEcV3MMrXxWJGJx5A+y/lXzzU2Maartkx8="}


@pytest.mark.parametrize(
    ("sample", "channel", "kind", "thread", "echo"),
    [
        ("msgr_webhook_text.json", Channel.FACEBOOK, MessageKind.TEXT, "dm:6543210987654321", False),
        ("msgr_webhook_attachment.json", Channel.FACEBOOK, MessageKind.IMAGE, "dm:6543210987654321", False),
        ("msgr_webhook_postback.json", Channel.FACEBOOK, MessageKind.POSTBACK, "dm:6543210987654321", False),
        ("msgr_webhook_echo.json", Channel.FACEBOOK, MessageKind.TEXT, "dm:6543210987654321", True),
        (
            "page_webhook_feed_comment.json",
            Channel.FACEBOOK,
            MessageKind.COMMENT,
            "post:109876543210987_555666777888999:7788990011223344",
            False,
        ),
        ("ig_webhook_dm.json", Channel.INSTAGRAM, MessageKind.TEXT, "dm:1234567890123456", False),
        ("ig_webhook_dm_echo.json", Channel.INSTAGRAM, MessageKind.TEXT, "dm:1234567890123456", True),
        (
            "ig_webhook_comment.json",
            Channel.INSTAGRAM,
            MessageKind.COMMENT,
            "media:17900000000000001:2345678901234567",
            False,
        ),
        (
            "ig_webhook_mention.json",
            Channel.INSTAGRAM,
            MessageKind.MENTION,
            "mention:17900000000000002:17860000000000002",
            False,
        ),
    ],
)
def test_meta_samples_normalize_to_their_kind_and_thread(
    sample: str, channel: Channel, kind: MessageKind, thread: str, echo: bool
) -> None:
    batch = meta.normalize(_sample(sample), channel=channel, own_id=None)
    assert len(batch.messages) == 1
    message = batch.messages[0]
    assert (message.kind, message.conversation_key, bool(message.metadata.get("echo"))) == (kind, thread, echo)


def test_a_file_on_metas_cdn_is_named_so_that_ticketing_can_keep_it_and_a_shared_link_is_not() -> None:
    """Messenger's photo comes as an expiring CDN link: the message names the file by a digest of its link, the same
    on every delivery, so ticketing can fetch it before the link expires. A shared web page is no file to fetch."""
    sample = _sample("msgr_webhook_attachment.json")
    (photo,) = meta.normalize(sample, channel=Channel.FACEBOOK, own_id=None).messages[0].attachments
    url = sample["entry"][0]["messaging"][0]["message"]["attachments"][0]["payload"]["url"]
    assert (photo.kind, photo.url) == (MessageKind.IMAGE, url)
    assert photo.media_id is not None and len(photo.media_id) == 32
    assert meta.normalize(sample, channel=Channel.FACEBOOK, own_id=None).messages[0].attachments[0] == photo
    message = sample["entry"][0]["messaging"][0]["message"]
    message["attachments"] = [{"type": "fallback", "payload": {"url": "https://example.org/berita"}, "title": "Berita"}]
    (shared,) = meta.normalize(sample, channel=Channel.FACEBOOK, own_id=None).messages[0].attachments
    assert (shared.url, shared.media_id) == ("https://example.org/berita", None)


def test_the_built_webhooks_of_the_bench_and_the_sandbox_are_timed_as_metas_samples() -> None:
    """The bench's and the sandbox's Meta webhooks (`suara_ingest_social.testing`) carry their entry's time in the
    unit Meta uses, as the reference samples show: seconds for `changes`, milliseconds for `messaging`. An
    Instagram comment is received at its entry's time."""
    before = time.time()
    comment = built.instagram_comment(media_id="1", sender="2", username="warga", comment_id="3", text="Jalan rusak")
    changes = built.meta_envelope("instagram", "17841400000000001", {"changes": [comment]})
    event = built.messaging_event(sender="2", recipient="109876543210987", mid="m_1", text="Lampu mati")
    messaging = built.meta_envelope("facebook", "109876543210987", {"messaging": [event]})
    for ours, sample in ((changes, "ig_webhook_comment.json"), (messaging, "msgr_webhook_text.json")):
        assert ours["object"] == _sample(sample)["object"]
        assert len(str(ours["entry"][0]["time"])) == len(str(_sample(sample)["entry"][0]["time"]))
    received = meta.normalize(changes, channel=Channel.INSTAGRAM, own_id=None).messages[0].received_at
    assert before - 1 <= received.timestamp() <= time.time() + 1


def test_comment_edit_and_removal_point_at_the_comment() -> None:
    payload = _sample("page_webhook_feed_comment.json")
    payload["entry"][0]["changes"][0]["value"].update(verb="edited", message="Edited words")
    edited = meta.normalize(payload, channel=Channel.FACEBOOK, own_id=None).messages[0]
    payload["entry"][0]["changes"][0]["value"]["verb"] = "remove"
    removed = meta.normalize(payload, channel=Channel.FACEBOOK, own_id=None).messages[0]
    assert edited.metadata["edit"] == "edited" and removed.metadata["edit"] == "removed"
    assert edited.metadata["original_id"] == removed.metadata["original_id"] == "555666777888999_1122334455667788"
    assert edited.platform_message_id != removed.platform_message_id


def test_the_pages_own_comment_is_not_a_citizens() -> None:
    payload = _sample("page_webhook_feed_comment.json")
    payload["entry"][0]["changes"][0]["value"]["from"]["id"] = "109876543210987"
    batch = meta.normalize(payload, channel=Channel.FACEBOOK, own_id="109876543210987")
    assert batch.messages == () and batch.ignored == ("own_comment",)


@pytest.mark.parametrize("own_id", ["17841400000000001", None])
def test_the_instagram_accounts_own_comment_is_not_a_citizens(own_id: str | None) -> None:
    """Our replies under a citizen's comment come back as `comments` changes: never a ticket (which would answer
    itself), whether the account id is configured or read from the entry."""
    payload = _sample("ig_webhook_comment.json")
    payload["entry"][0]["changes"][0]["value"]["from"] = {"id": "17841400000000001", "username": "pemkabrembang"}
    batch = meta.normalize(payload, channel=Channel.INSTAGRAM, own_id=own_id)
    assert batch.messages == () and batch.ignored == ("own_comment",)


def test_x_samples_normalize_to_mentions_and_dms() -> None:
    body = _sample("x_mentions_response.json")
    users = x.users_by_id(body["includes"])
    mentions = [x.mention(t, users, own_id="2244994945") for t in body["data"]]
    assert [m.conversation_key for m in mentions if m] == [
        "tweet:1797000000000000002:1500000000000000001",
        "tweet:1796999999999999000:1500000000000000002",
    ]
    dms = _sample("x_dm_events_response.json")
    dm = x.dm_event(dms["data"][0], x.users_by_id(dms["includes"]), own_id="2244994945")
    assert dm is not None and dm.conversation_key == "dm:1500000000000000001" and dm.kind is MessageKind.TEXT
    aaa, _ = x.account_activity(_sample("x_aaa_tweet_create_events.json"))
    assert [(m.kind, m.platform_message_id) for m in aaa] == [(MessageKind.MENTION, "1797000000000000002")]
    aaa_dm, _ = x.account_activity(_sample("x_aaa_direct_message_events.json"))
    assert [(m.conversation_key, m.platform_message_id) for m in aaa_dm] == [
        ("dm:1500000000000000001", "dm:1797000000000000100")
    ]


# --- the HTTP side -------------------------------------------------------------------------------------------


@pytest.fixture
async def social(serve: Any, app_settings: Settings) -> Any:
    """The app with known Meta and X secrets, and no X poller."""
    settings = app_settings.model_copy(
        update={"meta_app_secret": SecretStr(SECRET), "x_consumer_secret": SecretStr("x-secret"), "x_user_id": None}
    )
    async with serve(settings) as client:
        yield client


def _secret(value: str) -> SecretStr:
    return SecretStr(value)


async def test_meta_handshake_echoes_the_challenge_only_with_the_right_token(social: httpx.AsyncClient) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "dev-only-verify-token", "hub.challenge": "1158201444"}
    ok = await social.get("/webhooks/facebook", params=params)
    assert (ok.status_code, ok.text) == (200, "1158201444")
    bad = await social.get("/webhooks/instagram", params={**params, "hub.verify_token": "wrong"})
    assert bad.status_code == 403


async def test_signed_comment_is_published_and_bad_ones_are_refused(social: httpx.AsyncClient, inbound: Any) -> None:
    payload = _sample("page_webhook_feed_comment.json")
    comment_id = f"555666777888999_{int(time.time() * 1000)}"
    payload["entry"][0]["changes"][0]["value"]["comment_id"] = comment_id
    body = json.dumps(payload).encode()
    unsigned = await social.post("/webhooks/facebook", content=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401 and unsigned.json()["error_code"] == "unauthorized"
    malformed = await social.post("/webhooks/facebook", content=b"{oops", headers=_signed(b"{oops"))
    assert malformed.status_code == 400
    huge = b'{"object":"page","entry":[],"pad":"' + b"x" * (1024 * 1024) + b'"}'
    assert (await social.post("/webhooks/facebook", content=huge, headers=_signed(huge))).status_code == 413
    accepted = await social.post("/webhooks/facebook", content=body, headers=_signed(body))
    assert accepted.json() == {"status": "accepted", "messages": 1}
    found = await inbound(lambda m: m.platform_message_id == comment_id)
    assert len(found) == 1 and found[0][2].kind is MessageKind.COMMENT


async def test_x_webhook_crc_and_signature(social: httpx.AsyncClient, inbound: Any) -> None:
    crc = await social.get("/webhooks/x", params={"crc_token": "abc"})
    assert crc.json() == signature.x_crc_response("abc", "x-secret")
    payload = _sample("x_aaa_tweet_create_events.json")
    tweet_id = str(1797000000000000002 + int(time.time()))
    payload["tweet_create_events"][0]["id_str"] = tweet_id
    body = json.dumps(payload).encode()
    refused = await social.post("/webhooks/x", content=body, headers={"x-twitter-webhooks-signature": "sha256=AAAA"})
    assert refused.status_code == 401
    headers = {"x-twitter-webhooks-signature": signature.x_digest(body, "x-secret")}
    assert (await social.post("/webhooks/x", content=body, headers=headers)).status_code == 200
    found = await inbound(lambda m: m.platform_message_id == tweet_id)
    assert [r[2].kind for r in found] == [MessageKind.MENTION]


# --- the X poller ---------------------------------------------------------------------------------------------


async def _poller(app_settings: Settings, base: str, database: db.Database, publisher: Publisher, **kw: Any) -> Any:
    settings = app_settings.model_copy(
        update={"x_api_url": base, "x_bearer_token": _secret("b"), "x_user_id": "1700000000000000000"}
    )
    client, session = poller.make_client(settings)
    return poller.XPoller(
        client=client,
        session=session,
        cursors=database[poller.COLLECTION],
        publisher=publisher,
        user_id="1700000000000000000",
        interval=1,
        poll_dms=False,
        page_size=5,
        **kw,
    ), session


class RecordingPublisher(Publisher):
    """The real publisher (the broker acknowledges every page), remembering what it was handed."""

    published: list[str]

    async def publish_many(self, items: Any) -> None:
        await super().publish_many(items)
        self.published = [*getattr(self, "published", []), *(event.platform_message_id for _, event, _ in items)]


async def test_mention_poll_restarted_midway_repeats_nothing_and_misses_nothing(
    app_settings: Settings, database: db.Database
) -> None:
    app = sandbox_app()
    sandbox = app.state.social
    posted = [sandbox.x_mention(name=f"Warga {n}", text=f"jalan rusak {n}").id for n in range(7)]
    publisher = RecordingPublisher(app_settings)
    await publisher.start()
    try:
        async with serve_app(app) as base:
            first, session = await _poller(app_settings, base, database, publisher)
            # The second page fails: the first is published and its place saved, as if the process died there.
            original = sandbox._page
            calls = {"n": 0}

            def failing(items: Any, fields: Any, *, since: bool) -> Any:
                calls["n"] += 1
                if calls["n"] == 1:  # the call after this one fails
                    sandbox.errors["x_mentions"] = [ScriptedError(status=503)]
                return original(items, fields, since=since)

            sandbox._page = failing
            await first.poll_once()
            await session.close()
            sandbox._page = original
            assert len(publisher.published) == 5
            restarted, session2 = await _poller(app_settings, base, database, publisher)
            await restarted.poll_once()
            await restarted.poll_once()  # nothing new: nothing again
            later = sandbox.x_mention(name="Warga 8", text="lampu mati").id
            await restarted.poll_once()
            await session2.close()
    finally:
        await publisher.stop()
    assert sorted(publisher.published) == sorted([*posted, later])


async def test_a_429_pauses_polling_until_its_reset_time(app_settings: Settings, database: db.Database) -> None:
    app = sandbox_app()
    sandbox = app.state.social
    sandbox.errors["x_mentions"] = [ScriptedError(status=429, reset_in=600)]
    now = [time.time()]
    publisher = Publisher(app_settings)
    await publisher.start()
    try:
        async with serve_app(app) as base:
            calls = app.state.calls
            polled, session = await _poller(app_settings, base, database, publisher, clock=lambda: now[0])
            await polled.poll_once()
            reset = polled.paused_until["mentions"]
            assert reset >= now[0] + 590
            seen = len(calls)
            now[0] = reset - 1
            await polled.poll_once()
            assert len(calls) == seen  # still paused: X was not asked
            now[0] = reset + 1
            await polled.poll_once()
            assert len(calls) == seen + 1
            await session.close()
    finally:
        await publisher.stop()
