"""Pure functions that turn X's mentions, direct-message events (API v2, polled) and Account Activity webhooks
(v1.1 shapes) into Suara's InboundMessages (no I/O, no state).

Threads: a mention and the replies under it are `tweet:<conversation id>:<author id>`; a direct-message
conversation is `dm:<citizen id>`. Our own direct messages come back in the event list: marked `echo`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from suara_shared import untrusted
from suara_shared.events import Channel, InboundMessage, MessageKind, ReplyContext, Sender, utcnow

Json = Mapping[str, Any]


def _mapping(value: object) -> Json:
    return value if isinstance(value, Mapping) else {}


def _mappings(value: object) -> list[Json]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


#: X's ids are unsigned 64-bit numbers: at most 20 digits. Anything else is not an id (and `str.isdigit` alone
#: would let through superscripts and other scripts' digits, which `int()` refuses or reads differently).
_ID = re.compile(r"[0-9]{1,20}")
_NAME_MAX = 256


def _id(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def _iso(value: object) -> datetime:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return utcnow()
        # Every other moment in Suara is aware; a naive one would fail the first comparison with them.
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return utcnow()


def _millis(value: object) -> datetime:
    text = _id(value)
    if text is not None:
        try:
            return datetime.fromtimestamp(int(text) / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return utcnow()


def id_order(tweet_id: str) -> int:
    """X's ids are time-ordered snowflakes: comparing them as numbers compares their age."""
    return int(tweet_id) if _ID.fullmatch(tweet_id) else 0


def users_by_id(includes: Json) -> dict[str, Json]:
    return {str(u.get("id")): u for u in _mappings(includes.get("users"))}


def mention(tweet: Json, users: Mapping[str, Json], *, own_id: str | None) -> InboundMessage | None:
    """A v2 tweet from `GET /2/users/:id/mentions`; None for our own tweets or one without ids."""
    cleaned = _cleaned(tweet)
    if cleaned is None:
        return None
    tweet = cleaned
    tweet_id = _id(tweet.get("id"))
    author_id = _id(tweet.get("author_id"))
    if tweet_id is None or author_id is None or author_id == own_id:
        return None
    conversation = _id(tweet.get("conversation_id")) or tweet_id
    replied_to = next(
        (_id(r.get("id")) for r in _mappings(tweet.get("referenced_tweets")) if r.get("type") == "replied_to"), None
    )
    author = users.get(author_id, {})
    return InboundMessage(
        channel=Channel.X,
        platform_message_id=tweet_id,
        conversation_key=f"tweet:{conversation}:{author_id}",
        sender=Sender(channel_user_id=author_id, display_name=_name(author.get("name"))),
        kind=MessageKind.MENTION,
        text=_text(tweet.get("text")),
        # `comment_id` is the tweet a reply answers: the citizen's own latest one.
        reply_context=ReplyContext(in_reply_to=replied_to, comment_id=tweet_id, post_id=conversation),
        received_at=_iso(tweet.get("created_at")),
        metadata={"username": _name(author.get("username"))},
        raw=dict(tweet),
    )


def dm_event(event: Json, users: Mapping[str, Json], *, own_id: str | None) -> InboundMessage | None:
    """A v2 `MessageCreate` event from `GET /2/dm_events`; ours are kept as echoes."""
    cleaned = _cleaned(event)
    if cleaned is None:
        return None
    event = cleaned
    if event.get("event_type", "MessageCreate") != "MessageCreate":
        return None
    event_id = _id(event.get("id"))
    sender_id = _id(event.get("sender_id"))
    if event_id is None or sender_id is None:
        return None
    echo = own_id is not None and sender_id == own_id
    citizen = sender_id
    if echo:
        participants = str(event.get("dm_conversation_id") or "").split("-")
        citizen = next((p for p in participants if _id(p) and p != own_id), "")
        if not citizen:
            return None
    sender = users.get(citizen, {})
    return InboundMessage(
        channel=Channel.X,
        platform_message_id=f"dm:{event_id}",
        conversation_key=f"dm:{citizen}",
        sender=Sender(channel_user_id=citizen, display_name=_name(sender.get("name"))),
        kind=MessageKind.TEXT if _text(event.get("text")) else MessageKind.UNSUPPORTED,
        text=_text(event.get("text")),
        received_at=_iso(event.get("created_at")),
        metadata={"echo": True, "event_id": event_id} if echo else {"event_id": event_id},
        raw=dict(event),
    )


def account_activity(payload: Json) -> tuple[list[InboundMessage], list[str]]:
    """An Account Activity webhook (v1.1 shapes, channels.md §4.3): mentions and direct messages."""
    own_id = _id(payload.get("for_user_id"))
    messages: list[InboundMessage] = []
    ignored: list[str] = []
    for tweet in _mappings(payload.get("tweet_create_events")):
        user = _mapping(tweet.get("user"))
        v2 = {
            "id": tweet.get("id_str") or tweet.get("id"),
            "text": tweet.get("text"),
            "author_id": user.get("id_str") or user.get("id"),
            # v1.1 has no conversation id: a reply joins the thread of the tweet it answers.
            "conversation_id": tweet.get("in_reply_to_status_id_str") or tweet.get("id_str"),
            "created_at": _millis(tweet.get("timestamp_ms")).isoformat(),
        }
        users = {str(v2["author_id"]): {"name": user.get("name"), "username": user.get("screen_name")}}
        one = mention(v2, users, own_id=own_id)
        (messages.append(one) if one else ignored.append("own_or_invalid_tweet"))
    users_map = _mapping(payload.get("users"))
    for event in _mappings(payload.get("direct_message_events")):
        if event.get("type") != "message_create":
            ignored.append(f"dm:{str(event.get('type'))[:32]}")
            continue
        create = _mapping(event.get("message_create"))
        sender_id = create.get("sender_id")
        recipient_id = _mapping(create.get("target")).get("recipient_id")
        v2 = {
            "id": event.get("id"),
            "event_type": "MessageCreate",
            "sender_id": sender_id,
            "text": _mapping(create.get("message_data")).get("text"),
            "dm_conversation_id": f"{sender_id}-{recipient_id}",
            "created_at": _millis(event.get("created_timestamp")).isoformat(),
        }
        users = {
            str(k): {"name": _mapping(v).get("name"), "username": _mapping(v).get("screen_name")}
            for k, v in users_map.items()
        }
        one = dm_event(v2, users, own_id=own_id)
        (messages.append(one) if one else ignored.append("invalid_dm"))
    for key in payload:
        if key.endswith("_events") and key not in ("tweet_create_events", "direct_message_events"):
            ignored.append(key)
    return messages, ignored


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _name(value: object) -> str | None:
    """A display name from the users a page names (not cleaned with the tweet), cut to what a Sender holds."""
    name = _text(value)
    return untrusted.clean_text(name[:_NAME_MAX]) if name else None


def _cleaned(item: Json) -> Json | None:
    """The tweet or event fit to travel in an event (lone surrogates replaced); None when nested absurdly deep."""
    try:
        cleaned: Json = untrusted.clean(dict(item))
    except untrusted.TooDeep:
        return None
    return cleaned
