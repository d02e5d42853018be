"""Facebook, Instagram and X end to end, through the real broker, database and service processes, with the channel
sandbox as Meta and X: every sample lands as its kind on its thread, echoes open no ticket, and each of the six
reply paths sends the request the platform documents and records its delivery status on the ticket."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from suara_devstack.stack import Stack
from suara_devstack.testing import eventually, url

pytestmark = pytest.mark.e2e

SAMPLES = Path(__file__).resolve().parents[1] / "services" / "ingest-social" / "tests" / "samples"
APP_SECRET = "dev-only-meta-app-secret"
TOKEN = {"Authorization": "Bearer dev-only-admin-token"}
PAGE_ID = "109876543210987"
IG_ID = "17841400000000001"
WITHIN = 60.0


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def _signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


def _fresh(sample: str, replace: dict[str, str]) -> bytes:
    """A sample with its ids made unique for this run (the stack's database outlives one test)."""
    text = (SAMPLES / sample).read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    return text.encode()


async def _tickets(http: httpx.AsyncClient, stack: Stack, channel: str, user: str) -> list[dict[str, Any]]:
    items = (
        await http.get(
            url(stack, "ticketing", "/api/v1/tickets"), headers=TOKEN, params={"channel": channel, "limit": 100}
        )
    ).json()["items"]
    found = []
    for item in items:
        if item["citizen"]["channel_user_id"] == user:
            full = await http.get(url(stack, "ticketing", f"/api/v1/tickets/{item['reference']}"), headers=TOKEN)
            found.append(full.json())
    return found


async def _ticket(
    http: httpx.AsyncClient, stack: Stack, channel: str, user: str, test: Any, what: str
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        tickets = await _tickets(http, stack, channel, user)
        return tickets[0] if len(tickets) == 1 and test(tickets[0]) else None

    found: dict[str, Any] = await eventually(probe, within=WITHIN, what=what)
    return found


def _out(ticket: dict[str, Any], purpose: str) -> list[dict[str, Any]]:
    return [m for m in ticket["messages"] if m["direction"] == "outbound" and m["purpose"] == purpose]


def _sent(ticket: dict[str, Any], purpose: str) -> bool:
    return any(m["delivery_status"] == "sent" for m in _out(ticket, purpose))


async def _calls(http: httpx.AsyncClient, stack: Stack, since: int, path: str) -> list[dict[str, Any]]:
    calls = (await http.get(url(stack, "sandbox", "/_sandbox/calls"), params={"since": since})).json()
    return [c for c in calls if c["path"] == path]


async def _last_seq(http: httpx.AsyncClient, stack: Stack) -> int:
    calls = (await http.get(url(stack, "sandbox", "/_sandbox/calls"))).json()
    return max((c["seq"] for c in calls), default=0)


async def _reply(http: httpx.AsyncClient, stack: Stack, reference: str, text: str, **extra: Any) -> httpx.Response:
    return await http.post(
        url(stack, "ticketing", f"/api/v1/tickets/{reference}/replies"), headers=TOKEN, json={"text": text, **extra}
    )


async def _citizen(http: httpx.AsyncClient, stack: Stack, action: str, name: str, text: str) -> dict[str, Any]:
    answer = await http.post(url(stack, "sandbox", f"/_sandbox/social/{action}"), json={"name": name, "text": text})
    assert answer.status_code == 201, answer.text
    posted: dict[str, Any] = answer.json()
    return posted


def _user_of(thread: str) -> str:
    return thread.split(":")[-1]


# --- samples through the pipeline ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "endpoint", "ids", "channel", "user", "kind"),
    [
        ("msgr_webhook_text.json", "facebook", ["6543210987654321", "m_AbCdEf"], "facebook", 0, "text"),
        ("msgr_webhook_attachment.json", "facebook", ["6543210987654321", "m_ZyXw"], "facebook", 0, "image"),
        ("msgr_webhook_postback.json", "facebook", ["6543210987654321", "m_Postback"], "facebook", 0, "postback"),
        (
            "page_webhook_feed_comment.json",
            "facebook",
            ["7788990011223344", "1122334455667788"],
            "facebook",
            0,
            "comment",
        ),
        ("ig_webhook_dm.json", "instagram", ["1234567890123456", "aWdfZAG1faXRlbToxOklHTWVz"], "instagram", 0, "text"),
        ("ig_webhook_comment.json", "instagram", ["2345678901234567", "17860000000000001"], "instagram", 0, "comment"),
    ],
)
async def test_meta_samples_open_tickets_of_their_kind(
    stack: Stack,
    http: httpx.AsyncClient,
    sample: str,
    endpoint: str,
    ids: list[str],
    channel: str,
    user: int,
    kind: str,
) -> None:
    suffix = secrets.token_hex(3)
    fresh = {i: i[:-6] + "".join(str(int(c, 16) % 10) for c in suffix) if i.isdigit() else i + suffix for i in ids}
    body = _fresh(sample, fresh)
    answer = await http.post(url(stack, "ingest-social", f"/webhooks/{endpoint}"), content=body, headers=_signed(body))
    assert answer.status_code == 200 and answer.json()["messages"] == 1
    citizen = fresh[ids[user]]
    ticket = await _ticket(http, stack, channel, citizen, lambda t: bool(t["messages"]), f"a ticket from {sample}")
    assert [m["kind"] for m in ticket["messages"] if m["direction"] == "inbound"] == [kind]


async def test_instagram_mention_sample_opens_a_mention_ticket(stack: Stack, http: httpx.AsyncClient) -> None:
    comment = str(17860000000000002 + secrets.randbelow(10**9))
    body = _fresh("ig_webhook_mention.json", {"17860000000000002": comment})
    assert (
        await http.post(url(stack, "ingest-social", "/webhooks/instagram"), content=body, headers=_signed(body))
    ).status_code == 200
    user = f"mention:17900000000000002:{comment}"
    ticket = await _ticket(
        http, stack, "instagram", user, lambda t: _sent(t, "acknowledgement"), "the mention's ticket"
    )
    assert ticket["messages"][0]["kind"] == "mention"


async def test_a_mention_in_a_caption_is_answered_on_its_media_and_never_by_direct_message(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    """A caption mention names no comment (channels.md §3.1): its acknowledgement goes to the mentions edge with the
    media alone. It once went as a direct message to `mention:<media>:caption`, which no one could receive."""
    media = str(17900000000000002 + secrets.randbelow(10**9))
    seq = await _last_seq(http, stack)
    body = json.dumps(
        {
            "object": "instagram",
            "entry": [
                {
                    "id": IG_ID,
                    "time": int(time.time()),
                    "changes": [{"field": "mentions", "value": {"media_id": media}}],
                }
            ],
        }
    ).encode()
    answer = await http.post(url(stack, "ingest-social", "/webhooks/instagram"), content=body, headers=_signed(body))
    assert answer.status_code == 200
    ticket = await _ticket(
        http, stack, "instagram", f"mention:{media}:caption", lambda t: _sent(t, "acknowledgement"), "its ticket"
    )
    replies = await _calls(http, stack, seq, f"/v23.0/{IG_ID}/mentions")
    assert [c["body"] for c in replies if c["body"].get("media_id") == media] == [
        {"media_id": media, "message": _out(ticket, "acknowledgement")[0]["text"]}
    ]
    direct = await _calls(http, stack, seq, f"/v23.0/{IG_ID}/messages")
    assert not [c for c in direct if media in json.dumps(c["body"])]


async def test_x_samples_polled_land_as_mentions_and_dms(stack: Stack, http: httpx.AsyncClient) -> None:
    name = f"Priya {secrets.token_hex(3)}"
    mention = await _citizen(http, stack, "x_mention", name, "my order #8841 never arrived")
    dm = await _citizen(http, stack, "x_message", name, "Hi, my order #8841 never arrived")
    user = _user_of(mention["thread"])
    tickets = await eventually(
        lambda: _both(http, stack, user), within=WITHIN, what="a mention ticket and a DM ticket on X"
    )
    kinds = sorted(t["messages"][0]["kind"] for t in tickets)
    assert kinds == ["mention", "text"]
    assert dm["thread"] == f"dm:{user}"


async def _both(http: httpx.AsyncClient, stack: Stack, user: str) -> list[dict[str, Any]] | None:
    tickets = await _tickets(http, stack, "x", user)
    # A ticket is stored a moment before the messages of its batch: wait until each shows its message.
    return tickets if len(tickets) == 2 and all(t["messages"] for t in tickets) else None


async def test_echoes_open_no_ticket_and_an_inbox_reply_is_recorded(stack: Stack, http: httpx.AsyncClient) -> None:
    psid = str(6543210987654321 + secrets.randbelow(10**9))
    first = _fresh("msgr_webhook_text.json", {"6543210987654321": psid, "m_AbCdEf": f"m_{psid}"})
    await http.post(url(stack, "ingest-social", "/webhooks/facebook"), content=first, headers=_signed(first))
    ticket = await _ticket(http, stack, "facebook", psid, lambda t: bool(t["messages"]), "the citizen's ticket")
    echo = _fresh("msgr_webhook_echo.json", {"6543210987654321": psid, "EchoEcho": f"Echo{psid}"})
    assert (
        await http.post(url(stack, "ingest-social", "/webhooks/facebook"), content=echo, headers=_signed(echo))
    ).status_code == 200
    recorded = await _ticket(
        http,
        stack,
        "facebook",
        psid,
        lambda t: any(m.get("author") == "platform_inbox" for m in t["messages"]),
        "the inbox reply recorded on the ticket",
    )
    assert recorded["reference"] == ticket["reference"]
    # An echo of an Instagram account with no conversation yet: nothing to open.
    igsid = str(1234567890123456 + secrets.randbelow(10**9))
    ig_echo = _fresh("ig_webhook_dm_echo.json", {"1234567890123456": igsid})
    await http.post(url(stack, "ingest-social", "/webhooks/instagram"), content=ig_echo, headers=_signed(ig_echo))
    probe_text = _fresh("ig_webhook_dm.json", {"1234567890123456": igsid, "aWdfZAG1faXRlbToxOklHTWVz": f"x{igsid}"})
    await http.post(url(stack, "ingest-social", "/webhooks/instagram"), content=probe_text, headers=_signed(probe_text))
    ig = await _ticket(http, stack, "instagram", igsid, lambda t: bool(t["messages"]), "the one Instagram ticket")
    assert [m["kind"] for m in ig["messages"] if m["direction"] == "inbound"] == ["text"]


# --- the six reply paths ---------------------------------------------------------------------------------------


async def test_facebook_comment_gets_a_public_masked_reply_and_a_private_one(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    name = f"Dewi {secrets.token_hex(3)}"
    seq = await _last_seq(http, stack)
    posted = await _citizen(http, stack, "facebook_comment", name, "Jalan di Desa Tireman berlubang besar.")
    user = _user_of(posted["thread"])
    ticket = await _ticket(http, stack, "facebook", user, lambda t: _sent(t, "acknowledgement"), "the acknowledgement")
    acks = await _calls(http, stack, seq, f"/v23.0/{posted['id']}/comments")
    assert len(acks) == 1 and ticket["reference"] in acks[0]["body"]["message"]
    assert set(acks[0]["body"]) == {"message"}
    reply = await _reply(http, stack, ticket["reference"], "Bu Dewi, kami hubungi di 0812-3456-7890 besok.")
    assert reply.status_code == 202
    await _ticket(http, stack, "facebook", user, lambda t: _sent(t, "agent_reply"), "the agent's reply sent")
    public = (await _calls(http, stack, seq, f"/v23.0/{posted['id']}/comments"))[-1]["body"]["message"]
    assert "0812" not in public and "[disamarkan]" in public
    private = await _reply(http, stack, ticket["reference"], "Kami kirim detailnya lewat pesan.", private=True)
    assert private.status_code == 202
    await _ticket(
        http,
        stack,
        "facebook",
        user,
        lambda t: [m["delivery_status"] for m in _out(t, "agent_reply")] == ["sent", "sent"],
        "the private reply sent",
    )
    sends = await _calls(http, stack, seq, f"/v23.0/{PAGE_ID}/messages")
    assert {"recipient": {"comment_id": posted["id"]}, "message": {"text": "Kami kirim detailnya lewat pesan."}} in [
        c["body"] for c in sends
    ]
    again = await _reply(http, stack, ticket["reference"], "Sekali lagi", private=True)
    assert again.status_code == 409 and again.json()["error_code"] == "private_reply_refused"


async def test_a_comment_edited_then_removed_is_kept_on_its_ticket_and_a_reply_fails_without_reaching_meta(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    """The citizen edits their comment, then removes it (Meta's `feed` verbs `edited`, `remove`): the desk reads the
    new words with the old ones kept, then the comment marked removed, all on the one ticket. A reply then has no
    comment to go under: it fails `comment_removed` and the ticket shows it, and Meta is not called."""
    name = f"Rini {secrets.token_hex(3)}"
    original = "Jalan di Desa Sumberjo berlubang, sudah dua bulan."
    posted = await _citizen(http, stack, "facebook_comment", name, original)
    user = _user_of(posted["thread"])
    await _ticket(http, stack, "facebook", user, lambda t: _sent(t, "acknowledgement"), "the acknowledgement")
    comment = f"/_sandbox/social/comments/{posted['id']}"
    tag = secrets.token_hex(4)
    edited = f"Jalan di Desa Sumberjo berlubang besar, sudah dua bulan, dekat SD {tag}."
    for _ in range(2):  # the same edit twice, as a webhook Meta delivers again
        assert (await http.put(url(stack, "sandbox", comment), json={"text": edited})).status_code == 200

    def inbound(t: dict[str, Any]) -> dict[str, Any]:
        return next(m for m in t["messages"] if m["direction"] == "inbound")

    ticket = await _ticket(http, stack, "facebook", user, lambda t: inbound(t)["text"] == edited, "the edit")
    assert [(e["before"], e["text"]) for e in inbound(ticket)["edits"]] == [(original, edited)]
    assert not inbound(ticket).get("removed")

    async def found_by_new_words() -> bool:  # written on the ticket just after the comment
        found = await http.get(url(stack, "ticketing", "/api/v1/tickets"), headers=TOKEN, params={"q": tag})
        return [t["reference"] for t in found.json()["items"]] == [ticket["reference"]]

    await eventually(found_by_new_words, within=WITHIN, what="the ticket found by the edit's new words")
    seq = await _last_seq(http, stack)
    assert (await http.delete(url(stack, "sandbox", comment))).status_code == 200
    ticket = await _ticket(http, stack, "facebook", user, lambda t: bool(inbound(t).get("removed")), "the removal")
    message = inbound(ticket)
    assert message["text"] == edited and len(message["edits"]) == 2 and message["edits"][1]["removed"] is True

    assert (await _reply(http, stack, ticket["reference"], "Kami cek besok pagi.")).status_code == 202
    failed = await _ticket(
        http,
        stack,
        "facebook",
        user,
        # The status is written, then the ticket's flag: wait for both, as the desk sees them a moment later.
        lambda t: [m["delivery_status"] for m in _out(t, "agent_reply")] == ["failed"] and bool(t["undelivered"]),
        "the reply failed, and the ticket saying so",
    )
    assert _out(failed, "agent_reply")[0]["delivery_error"]["code"] == "comment_removed"
    assert failed["undelivered"]["code"] == "comment_removed"
    calls = (await http.get(url(stack, "sandbox", "/_sandbox/calls"), params={"since": seq})).json()
    assert not [c for c in calls if c["method"] == "POST" and user in json.dumps(c)]
    assert not await _calls(http, stack, seq, f"/v23.0/{posted['id']}/comments")


async def test_an_instagram_message_the_citizen_unsent_stays_on_its_ticket_marked_removed(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    igsid = str(1234567890123456 + secrets.randbelow(10**9))
    mid = f"aWdf{igsid}"
    sample_mid = json.loads((SAMPLES / "ig_webhook_dm.json").read_text())["entry"][0]["messaging"][0]["message"]["mid"]
    sent = _fresh("ig_webhook_dm.json", {sample_mid: mid, "1234567890123456": igsid})
    await http.post(url(stack, "ingest-social", "/webhooks/instagram"), content=sent, headers=_signed(sent))
    ticket = await _ticket(http, stack, "instagram", igsid, lambda t: bool(t["messages"]), "the ticket")
    words = ticket["messages"][0]["text"]
    unsent = {
        "object": "instagram",
        "entry": [
            {
                "id": IG_ID,
                "time": int(time.time()),
                "messaging": [
                    {
                        "sender": {"id": igsid},
                        "recipient": {"id": IG_ID},
                        "timestamp": int(time.time() * 1000),
                        "message": {"mid": mid, "is_deleted": True},
                    }
                ],
            }
        ],
    }
    body = json.dumps(unsent).encode()
    for _ in range(2):  # delivered twice
        assert (
            await http.post(url(stack, "ingest-social", "/webhooks/instagram"), content=body, headers=_signed(body))
        ).status_code == 200
    removed = await _ticket(
        http, stack, "instagram", igsid, lambda t: bool(t["messages"][0].get("removed")), "the message marked removed"
    )
    inbound = [m for m in removed["messages"] if m["direction"] == "inbound"]
    assert len(inbound) == 1 and inbound[0]["text"] == words and len(inbound[0]["edits"]) == 1


@pytest.mark.parametrize(
    ("action", "channel", "path", "expected"),
    [
        ("facebook_message", "facebook", f"/v23.0/{PAGE_ID}/messages", {"messaging_type": "RESPONSE"}),
        ("instagram_message", "instagram", f"/v23.0/{IG_ID}/messages", {}),
    ],
)
async def test_direct_messages_are_answered_by_the_send_api(
    stack: Stack, http: httpx.AsyncClient, action: str, channel: str, path: str, expected: dict[str, Any]
) -> None:
    name = f"warga{secrets.token_hex(3)}"
    seq = await _last_seq(http, stack)
    posted = await _citizen(http, stack, action, name, "Air PDAM tidak mengalir sejak kemarin.")
    user = _user_of(posted["thread"])
    ticket = await _ticket(http, stack, channel, user, lambda t: _sent(t, "acknowledgement"), "the acknowledgement")
    await _reply(http, stack, ticket["reference"], "Petugas PDAM menuju lokasi.")
    await _ticket(http, stack, channel, user, lambda t: _sent(t, "agent_reply"), "the agent's reply sent")
    bodies = [c["body"] for c in await _calls(http, stack, seq, path)]
    assert {"recipient": {"id": user}, **expected, "message": {"text": "Petugas PDAM menuju lokasi."}} in bodies
    # The Page's echo of our own message came back and opened nothing.
    assert len(await _tickets(http, stack, channel, user)) == 1


async def test_a_photo_sent_on_messenger_is_kept_and_shown_after_its_cdn_link_expired(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    """Messenger gives a citizen's photo as a CDN link that expires within days. Ticketing fetches it as the message
    arrives, with no agent asking; an agent who opens the ticket after the link expired still sees the photo."""
    photo = b"\xff\xd8\xff\xe0" + secrets.token_bytes(4096)
    uploaded = await http.post(
        url(stack, "sandbox", "/_sandbox/social/media"), content=photo, headers={"Content-Type": "image/jpeg"}
    )
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    name = f"warga{secrets.token_hex(3)}"
    answer = await http.post(
        url(stack, "sandbox", "/_sandbox/social/facebook_message"),
        json={"name": name, "text": "Lampu jalan di depan rumah saya mati", "file_id": file_id},
    )
    assert answer.status_code == 201, answer.text
    user = _user_of(answer.json()["thread"])
    ticket = await _ticket(http, stack, "facebook", user, lambda t: bool(t["messages"]), "the photo's ticket")
    (attachment,) = ticket["messages"][0]["attachments"]
    assert attachment["kind"] == "image" and attachment["media_id"]

    async def fetched() -> bool:
        state = (await http.get(url(stack, "sandbox", f"/_sandbox/social/media/{file_id}"))).json()
        return bool(state["downloads"] == 1)

    await eventually(fetched, within=WITHIN, what="the photo fetched from its link with no agent asking")
    expired = await http.delete(url(stack, "sandbox", f"/_sandbox/social/media/{file_id}"))
    assert expired.status_code == 200

    async def shown_now() -> httpx.Response | None:
        # The keeper writes the file to the database just after fetching it: wait for that write too.
        path = f"/api/v1/tickets/{ticket['reference']}/media/{attachment['media_id']}"
        answer = await http.get(url(stack, "ticketing", path), headers=TOKEN)
        return answer if answer.status_code == 200 else None

    shown = await eventually(shown_now, within=WITHIN, what="the kept photo served after its link expired")
    assert shown.content == photo
    assert shown.headers["content-type"] == "image/jpeg"
    assert (await http.get(url(stack, "sandbox", f"/_sandbox/social/media/{file_id}"))).json()["downloads"] == 1


async def test_instagram_comment_gets_a_reply_under_it(stack: Stack, http: httpx.AsyncClient) -> None:
    name = f"sara{secrets.token_hex(3)}"
    seq = await _last_seq(http, stack)
    posted = await _citizen(http, stack, "instagram_comment", name, "Sampah menumpuk di pasar.")
    user = _user_of(posted["thread"])
    ticket = await _ticket(http, stack, "instagram", user, lambda t: _sent(t, "acknowledgement"), "the acknowledgement")
    await _reply(http, stack, ticket["reference"], "DLH akan mengangkut hari ini.")
    await _ticket(http, stack, "instagram", user, lambda t: _sent(t, "agent_reply"), "the agent's reply sent")
    bodies = [c["body"] for c in await _calls(http, stack, seq, f"/v23.0/{posted['id']}/replies")]
    assert {"message": "DLH akan mengangkut hari ini."} in bodies


async def test_x_mention_gets_a_reply_post_and_a_dm_a_dm(stack: Stack, http: httpx.AsyncClient) -> None:
    name = f"Tom {secrets.token_hex(3)}"
    seq = await _last_seq(http, stack)
    mention = await _citizen(http, stack, "x_mention", name, "lampu jalan mati di alun-alun")
    user = _user_of(mention["thread"])

    async def mention_ticket() -> dict[str, Any] | None:
        for t in await _tickets(http, stack, "x", user):
            if t["messages"] and t["messages"][0]["kind"] == "mention" and _sent(t, "acknowledgement"):
                return t
        return None

    ticket = await eventually(mention_ticket, within=WITHIN, what="the mention's acknowledged ticket")
    long_text = "Petugas akan memperbaiki lampu. " * 12
    await _reply(http, stack, ticket["reference"], long_text)
    await eventually(
        lambda: _with_sent_reply(http, stack, ticket["reference"]), within=WITHIN, what="the reply post sent"
    )
    posts = [c["body"] for c in await _calls(http, stack, seq, "/2/tweets")]
    replies = [p for p in posts if p["reply"] == {"in_reply_to_tweet_id": mention["id"]}]
    assert len(replies) == 2  # the acknowledgement and the agent's answer
    assert all(len(p["text"]) <= 280 for p in replies)
    assert replies[-1]["text"].endswith(f"/status/{ticket['reference']}")
    dm = await _citizen(http, stack, "x_message", name, "Tolong cek juga lampu di pasar")

    async def dm_ticket() -> dict[str, Any] | None:
        for t in await _tickets(http, stack, "x", user):
            if t["messages"] and t["messages"][0]["kind"] == "text" and _sent(t, "acknowledgement"):
                return t
        return None

    dm_t = await eventually(dm_ticket, within=WITHIN, what="the DM's acknowledged ticket")
    await _reply(http, stack, dm_t["reference"], "Sudah kami catat.")
    await eventually(lambda: _with_sent_reply(http, stack, dm_t["reference"]), within=WITHIN, what="the DM reply sent")
    dms = [c["body"] for c in await _calls(http, stack, seq, f"/2/dm_conversations/with/{user}/messages")]
    assert {"text": "Sudah kami catat."} in dms
    assert dm["thread"] == f"dm:{user}"
    # Our own DMs come back in the polled event list as echoes: still two tickets, no third.
    await _wait_polls(http, stack)
    assert len(await _tickets(http, stack, "x", user)) == 2


async def _with_sent_reply(http: httpx.AsyncClient, stack: Stack, reference: str) -> bool:
    ticket = (await http.get(url(stack, "ticketing", f"/api/v1/tickets/{reference}"), headers=TOKEN)).json()
    return _sent(ticket, "agent_reply")


async def _wait_polls(http: httpx.AsyncClient, stack: Stack) -> None:
    """Two more polls of the DM events: whatever our own DMs would cause has reached ticketing by then."""
    seq = await _last_seq(http, stack)

    async def polled_twice() -> bool:
        return len(await _calls(http, stack, seq, "/2/dm_events")) >= 2

    await eventually(polled_twice, within=WITHIN, what="two more polls of the DM events")


# --- X samples by webhook and by poll, and one tweet arriving both ways ------------------------------------

X_SECRET = "dev-only-sandbox-x-secret"


def _snowflakes(n: int) -> list[str]:
    """Fresh X ids, oldest first, newer than anything the sandbox made so far (its cursors stay sane)."""
    base = (int(time.time() * 1000) - 1288834974657) << 22 | secrets.randbelow(1 << 20) << 1
    return [str(base + i) for i in range(n)]


def _x_signed(body: bytes) -> dict[str, str]:
    digest = base64.b64encode(hmac.new(X_SECRET.encode(), body, hashlib.sha256).digest()).decode()
    return {"Content-Type": "application/json", "x-twitter-webhooks-signature": f"sha256={digest}"}


def _sample(name: str) -> dict[str, Any]:
    sample: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return sample


def _aaa_tweet(tweet: str, user: str, *, in_reply_to: str | None = None) -> bytes:
    payload = _sample("x_aaa_tweet_create_events.json")
    event = payload["tweet_create_events"][0]
    event.update(id=int(tweet), id_str=tweet, in_reply_to_status_id_str=in_reply_to)
    event["user"].update(id=int(user), id_str=user)
    return json.dumps(payload).encode()


def _aaa_dm(event_id: str, user: str) -> bytes:
    return _fresh("x_aaa_direct_message_events.json", {"1797000000000000100": event_id, "1500000000000000001": user})


async def _post_x(http: httpx.AsyncClient, stack: Stack, body: bytes) -> None:
    answer = await http.post(url(stack, "ingest-social", "/webhooks/x"), content=body, headers=_x_signed(body))
    assert answer.status_code == 200 and answer.json()["messages"] == 1, answer.text


async def _queue_poll(http: httpx.AsyncClient, stack: Stack, api: str, page: bytes) -> None:
    answer = await http.post(url(stack, "sandbox", f"/_sandbox/x/{api}/pages"), json=json.loads(page))
    assert answer.status_code == 201, answer.text


def _mentions_page(*, priya: str, tom: str, tweet: str, tom_tweet: str, tom_thread: str) -> bytes:
    """x_mentions_response.json with its ids made fresh: Priya's new mention and Tom's reply under a thread."""
    return _fresh(
        "x_mentions_response.json",
        {
            "1797000000000000002": tweet,
            "1797000000000000001": tom_tweet,
            "1796999999999999000": tom_thread,
            "1500000000000000001": priya,
            "1500000000000000002": tom,
        },
    )


def _inbound(ticket: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in ticket["messages"] if m["direction"] == "inbound"]


async def _x_tickets(http: httpx.AsyncClient, stack: Stack, user: str, count: int) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        tickets = await _tickets(http, stack, "x", user)
        # A ticket is stored a moment before the messages of its batch: wait until each shows its message.
        if len(tickets) != count or not all(_inbound(t) for t in tickets):
            return None
        return sorted(tickets, key=lambda t: _inbound(t)[0]["kind"])

    found: list[dict[str, Any]] = await eventually(probe, within=WITHIN, what=f"{count} X tickets of {user}")
    return found


async def test_x_account_activity_samples_land_as_a_mention_and_a_dm(stack: Stack, http: httpx.AsyncClient) -> None:
    user, tweet, event = _snowflakes(3)
    await _post_x(http, stack, _aaa_tweet(tweet, user))
    await _post_x(http, stack, _aaa_dm(event, user))
    mention, dm = await _x_tickets(http, stack, user, 2)
    [said] = _inbound(mention)
    assert (said["kind"], said["channel_message_id"]) == ("mention", tweet)
    assert said["reply_context"]["comment_id"] == tweet and said["reply_context"]["post_id"] == tweet
    [wrote] = _inbound(dm)
    assert (wrote["kind"], wrote["channel_message_id"], wrote["text"]) == (
        "text",
        f"dm:{event}",
        "Hi, my order #8841 never arrived",
    )


async def test_x_poll_samples_land_as_mentions_and_a_dm_on_their_threads(stack: Stack, http: httpx.AsyncClient) -> None:
    priya, tom, tom_thread, tom_tweet, tweet, event = _snowflakes(6)
    page = _mentions_page(priya=priya, tom=tom, tweet=tweet, tom_tweet=tom_tweet, tom_thread=tom_thread)
    await _queue_poll(http, stack, "mentions", page)
    dms = _fresh("x_dm_events_response.json", {"1797000000000000100": event, "1500000000000000001": priya})
    await _queue_poll(http, stack, "dm_events", dms)
    mention, dm = await _x_tickets(http, stack, priya, 2)
    assert [(m["kind"], m["channel_message_id"]) for m in _inbound(mention)] == [("mention", tweet)]
    assert [(m["kind"], m["channel_message_id"]) for m in _inbound(dm)] == [("text", f"dm:{event}")]
    [reply] = await _x_tickets(http, stack, tom, 1)
    [said] = _inbound(reply)
    assert said["kind"] == "mention"
    assert said["reply_context"]["in_reply_to"] == tom_thread and said["reply_context"]["post_id"] == tom_thread


async def test_a_tweet_and_a_dm_arriving_by_webhook_and_by_poll_are_one_message_each(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    priya, tom, tom_thread, tom_tweet, tweet, event, later_tweet, later_event = _snowflakes(8)
    await _post_x(http, stack, _aaa_tweet(tweet, priya))
    await _post_x(http, stack, _aaa_dm(event, priya))
    await _x_tickets(http, stack, priya, 2)
    # The poller then reads the same tweet and the same DM event.
    page = _mentions_page(priya=priya, tom=tom, tweet=tweet, tom_tweet=tom_tweet, tom_thread=tom_thread)
    await _queue_poll(http, stack, "mentions", page)
    dms = _fresh("x_dm_events_response.json", {"1797000000000000100": event, "1500000000000000001": priya})
    await _queue_poll(http, stack, "dm_events", dms)
    await _x_tickets(http, stack, tom, 1)  # the polled page reached the broker, Priya's copy with it

    async def dm_polled() -> bool:
        calls = (await http.get(url(stack, "sandbox", "/_sandbox/calls"))).json()
        return any(c["path"] == "/2/dm_events" and event in json.dumps(c["response"]) for c in calls)

    await eventually(dm_polled, within=WITHIN, what="the DM sample served to the poller")
    # Later messages on the same threads come after the copies in their partitions: once they are on the
    # tickets, the copies were processed too.
    await _post_x(http, stack, _aaa_tweet(later_tweet, priya, in_reply_to=tweet))
    await _post_x(http, stack, _aaa_dm(later_event, priya))

    async def both_later() -> list[dict[str, Any]] | None:
        tickets = await _tickets(http, stack, "x", priya)
        return tickets if len(tickets) == 2 and all(len(_inbound(t)) >= 2 for t in tickets) else None

    tickets = await eventually(both_later, within=WITHIN, what="the later tweet and DM on Priya's threads")
    ids = sorted([m["channel_message_id"] for m in _inbound(t)] for t in tickets)
    assert ids == sorted([[tweet, later_tweet], [f"dm:{event}", f"dm:{later_event}"]])


# --- refused tokens --------------------------------------------------------------------------------------------


async def _ready(http: httpx.AsyncClient, stack: Stack) -> bool:
    return (await http.get(url(stack, "notifier", "/readyz"))).status_code == 200


async def _gauge(http: httpx.AsyncClient, stack: Stack, channel: str) -> str:
    for line in (await http.get(url(stack, "notifier", "/metrics"))).text.splitlines():
        if line.startswith(f'suara_channel_token_valid{{channel="{channel}"}}'):
            return line.split()[-1]
    return "absent"


async def _acknowledged(http: httpx.AsyncClient, stack: Stack, channel: str, action: str, state: str) -> dict[str, Any]:
    posted = await _citizen(http, stack, action, f"warga{secrets.token_hex(3)}", "Jalan berlubang di Desa Pandean.")
    user = _user_of(posted["thread"])

    def ack_is(ticket: dict[str, Any]) -> bool:
        return any(m["delivery_status"] == state for m in _out(ticket, "acknowledgement"))

    return await _ticket(http, stack, channel, user, ack_is, f"the acknowledgement {state}")


async def _refused_then_recovered(
    http: httpx.AsyncClient, stack: Stack, *, channel: str, action: str, switch: dict[str, Any], code: str
) -> None:
    token = url(stack, "sandbox", "/_sandbox/social/token")
    assert (await http.put(token, json={**switch, "valid": False})).status_code == 200
    try:
        ticket = await _acknowledged(http, stack, channel, action, "failed")
        [ack] = _out(ticket, "acknowledgement")
        assert ack["delivery_error"]["code"].startswith(code)
        ready = await http.get(url(stack, "notifier", "/readyz"))
        assert ready.status_code == 503 and ready.json()["checks"]["channels"] is False
        assert await _gauge(http, stack, channel) == "0.0"
    finally:
        await http.put(token, json={**switch, "valid": True})  # someone fixed the token
    await _acknowledged(http, stack, channel, action, "sent")
    await eventually(lambda: _ready(http, stack), within=WITHIN, what="the notifier ready again")
    assert await _gauge(http, stack, channel) == "1.0"


@pytest.mark.parametrize(
    ("action", "channel"),
    [
        ("facebook_message", "facebook"),
        ("facebook_comment", "facebook"),
        ("instagram_message", "instagram"),
        ("instagram_comment", "instagram"),
    ],
)
async def test_a_refused_meta_token_fails_the_reply_with_190_and_turns_the_notifier_red_until_a_send_works(
    stack: Stack, http: httpx.AsyncClient, action: str, channel: str
) -> None:
    await _refused_then_recovered(http, stack, channel=channel, action=action, switch={"platform": channel}, code="190")


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_x_token_fails_the_reply_with_xs_status_and_turns_the_notifier_red_until_a_send_works(
    stack: Stack, http: httpx.AsyncClient, status: int
) -> None:
    await _refused_then_recovered(
        http,
        stack,
        channel="x",
        action="x_mention",
        switch={"platform": "x", "status": status},
        code=f"http_{status}",
    )


# --- the Messenger window and receipts ------------------------------------------------------------------------


async def _old_message(http: httpx.AsyncClient, stack: Stack, *, age: timedelta) -> str:
    """msgr_webhook_text.json from a new citizen, timestamped `age` ago (as a webhook Meta retried for days)."""
    psid = str(6543210987654321 + secrets.randbelow(10**9))
    payload = json.loads(_fresh("msgr_webhook_text.json", {"6543210987654321": psid, "m_AbCdEf": f"m_{psid}"}))
    payload["entry"][0]["messaging"][0]["timestamp"] = int((time.time() - age.total_seconds()) * 1000)
    body = json.dumps(payload).encode()
    assert (
        await http.post(url(stack, "ingest-social", "/webhooks/facebook"), content=body, headers=_signed(body))
    ).status_code == 200
    return psid


async def test_two_days_after_the_citizens_message_the_reply_carries_the_human_agent_tag(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    seq = await _last_seq(http, stack)
    psid = await _old_message(http, stack, age=timedelta(days=2))
    await _ticket(http, stack, "facebook", psid, lambda t: _sent(t, "acknowledgement"), "the acknowledgement sent")
    [send] = [c["body"] for c in await _calls(http, stack, seq, f"/v23.0/{PAGE_ID}/messages")]
    assert send["recipient"] == {"id": psid}
    assert (send["messaging_type"], send["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


async def test_eight_days_after_the_citizens_message_the_reply_fails_window_closed(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    seq = await _last_seq(http, stack)
    psid = await _old_message(http, stack, age=timedelta(days=8))

    def failed(ticket: dict[str, Any]) -> bool:
        return any(m["delivery_status"] == "failed" for m in _out(ticket, "acknowledgement"))

    ticket = await _ticket(http, stack, "facebook", psid, failed, "the acknowledgement failed")
    [ack] = _out(ticket, "acknowledgement")
    assert ack["delivery_error"]["code"] == "window_closed"
    assert "over 7 days old" in ack["delivery_error"]["detail"]
    assert [
        c
        for c in await _calls(http, stack, seq, f"/v23.0/{PAGE_ID}/messages")
        if c["body"]["recipient"] == {"id": psid}
    ] == []


async def _receipt(http: httpx.AsyncClient, stack: Stack, psid: str, receipt: dict[str, Any]) -> None:
    now = int(time.time() * 1000)
    event = {"sender": {"id": psid}, "recipient": {"id": PAGE_ID}, "timestamp": now, **receipt}
    body = json.dumps({"object": "page", "entry": [{"id": PAGE_ID, "time": now, "messaging": [event]}]}).encode()
    answer = await http.post(url(stack, "ingest-social", "/webhooks/facebook"), content=body, headers=_signed(body))
    assert answer.status_code == 200, answer.text


async def test_messenger_receipts_mark_the_replies_delivered_then_read(stack: Stack, http: httpx.AsyncClient) -> None:
    posted = await _citizen(http, stack, "facebook_message", f"warga{secrets.token_hex(3)}", "Sampah belum diangkut.")
    psid = _user_of(posted["thread"])
    ticket = await _ticket(http, stack, "facebook", psid, lambda t: _sent(t, "acknowledgement"), "the acknowledgement")
    await _reply(http, stack, ticket["reference"], "DLH akan mengangkut hari ini.")
    ticket = await _ticket(http, stack, "facebook", psid, lambda t: _sent(t, "agent_reply"), "the agent's reply sent")
    [answer] = _out(ticket, "agent_reply")

    def statuses(t: dict[str, Any]) -> list[str]:
        return [m["delivery_status"] for m in (*_out(t, "acknowledgement"), *_out(t, "agent_reply"))]

    # `mids` names the reply; the watermark covers the acknowledgement sent before it.
    now = int(time.time() * 1000)
    await _receipt(http, stack, psid, {"delivery": {"mids": [answer["channel_message_id"]], "watermark": now}})
    await _ticket(http, stack, "facebook", psid, lambda t: statuses(t) == ["delivered"] * 2, "both delivered")
    await _receipt(http, stack, psid, {"read": {"watermark": int(time.time() * 1000)}})
    await _ticket(http, stack, "facebook", psid, lambda t: statuses(t) == ["read"] * 2, "both read")
