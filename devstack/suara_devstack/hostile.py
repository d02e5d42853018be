"""Hostile input for property tests: hypothesis strategies for arbitrary JSON and for Meta, WhatsApp and X webhooks
with random insides, and a publisher that keeps what it would send instead of sending it.

The envelopes are built from the field names the parsers read (channels.md), with arbitrary values, so that
generated bodies get past the first shape check and reach the per-message code, where the bugs live."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from hypothesis import strategies as st

from suara_shared import topics
from suara_shared.events import DeliveryStatus, InboundMessage
from suara_shared.kafka import Publisher

#: Any character at all, lone surrogates included (`"\ud800"` is valid JSON; Python decodes it to one).
ANY_CHAR = st.characters(codec=None, exclude_categories=())
ANY_TEXT = st.text(ANY_CHAR, max_size=24)

#: Numbers the platforms never send but a JSON body may hold: huge, negative, fractional, NaN and infinities.
NUMBERS = st.integers(min_value=-(2**80), max_value=2**80) | st.floats() | st.sampled_from([10**400, -(10**400), 2**64])

#: Strings that `str.isdigit()` accepts but `int()` may not (superscripts) or reads differently (Arabic-Indic).
ODD_DIGITS = st.text(st.sampled_from("0123456789²³¹①٣٤۵০"), min_size=1, max_size=12)

#: Identifiers as the platforms send them, and as they should never come: too long, unicode digits, numbers.
IDS = st.one_of(
    st.from_regex(r"\A[0-9]{1,20}\Z"),
    st.from_regex(r"\A(wamid\.|m_)?[A-Za-z0-9_.=-]{1,40}\Z"),
    st.text("0123456789", min_size=240, max_size=600),
    st.text(ANY_CHAR, min_size=240, max_size=600),
    ODD_DIGITS,
    ANY_TEXT,
    NUMBERS,
    st.booleans(),
    st.none(),
)

#: Timestamps in seconds or milliseconds, as numbers or strings, sensible or absurd.
TIMESTAMPS = st.one_of(
    st.integers(min_value=1_500_000_000, max_value=1_900_000_000),
    st.integers(min_value=1_500_000_000_000, max_value=1_900_000_000_000),
    st.integers(min_value=1_500_000_000, max_value=1_900_000_000).map(str),
    st.from_regex(r"\A[0-9]{1,40}\Z"),
    ODD_DIGITS,
    NUMBERS,
    ANY_TEXT,
)


def json_values(*, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value: null, booleans, numbers (NaN and infinities too), strings, arrays and objects."""
    leaves = st.none() | st.booleans() | NUMBERS | ANY_TEXT
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
        max_leaves=max_leaves,
    )


def _sometimes_anything(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly `strategy`, now and then any JSON value in its place."""
    return st.one_of(strategy, strategy, strategy, json_values(max_leaves=4))


#: A schema for `loose`: a strategy for a leaf, a dict for an object, a one-item list for an array of such.
Schema = st.SearchStrategy[Any] | dict[str, Any] | list[Any]


def loose(schema: Schema) -> st.SearchStrategy[Any]:
    """Values shaped like `schema` (every key optional, every value now and then any JSON at all)."""
    inner: st.SearchStrategy[Any]
    if isinstance(schema, dict):
        inner = st.fixed_dictionaries({}, optional={key: loose(value) for key, value in schema.items()})
    elif isinstance(schema, list):
        inner = st.lists(loose(schema[0]), max_size=3)
    else:
        inner = schema
    return _sometimes_anything(inner)


def _words(*words: str) -> st.SearchStrategy[str]:
    return st.sampled_from(words) | ANY_TEXT


FLAG = st.booleans() | json_values(max_leaves=1)
TEXT = st.text(max_size=40) | ANY_TEXT | st.text(min_size=250, max_size=320)
NUMBER = NUMBERS | st.floats(min_value=-180, max_value=180) | st.from_regex(r"\A-?[0-9]{1,3}\.[0-9]{1,8}\Z")


# --- WhatsApp (channels.md §1) -----------------------------------------------------------------------------

WA_TYPES = (
    "text", "image", "audio", "video", "document", "sticker", "location", "contacts", "interactive", "button",
    "reaction", "order", "system", "unknown", "unsupported", "request_welcome",
)  # fmt: skip
_WA_ERROR = {"code": IDS, "title": TEXT, "message": TEXT, "error_data": {"details": TEXT}}
_WA_MEDIA = {"id": IDS, "url": TEXT, "mime_type": TEXT, "sha256": TEXT, "caption": TEXT, "filename": TEXT,
             "voice": FLAG, "animated": FLAG}  # fmt: skip
_WA_REPLY = {"id": IDS, "title": TEXT, "description": TEXT, "body": TEXT, "name": TEXT, "response_json": TEXT}
WA_MESSAGE: dict[str, Any] = {
    "from": IDS, "from_user_id": IDS, "id": IDS, "timestamp": TIMESTAMPS, "type": _words(*WA_TYPES),
    "context": {"id": IDS, "from": IDS, "forwarded": FLAG, "frequently_forwarded": FLAG},
    "errors": [_WA_ERROR],
    "text": {"body": TEXT},
    **{kind: _WA_MEDIA for kind in ("image", "audio", "video", "document", "sticker")},
    "location": {"latitude": NUMBER, "longitude": NUMBER, "name": TEXT, "address": TEXT, "url": TEXT},
    "contacts": [{"name": {"formatted_name": TEXT, "first_name": TEXT, "last_name": TEXT},
                  "phones": [{"phone": TEXT, "wa_id": IDS}]}],
    "interactive": {"type": _words("button_reply", "list_reply", "nfm_reply"), "button_reply": _WA_REPLY,
                    "list_reply": _WA_REPLY, "nfm_reply": _WA_REPLY},
    "button": {"text": TEXT, "payload": TEXT},
    "reaction": {"message_id": IDS, "emoji": TEXT},
}  # fmt: skip
WA_VALUE: dict[str, Any] = {
    "messaging_product": st.just("whatsapp"),
    "metadata": {"display_phone_number": IDS, "phone_number_id": IDS},
    "contacts": [{"profile": {"name": TEXT}, "wa_id": IDS, "user_id": IDS}],
    "messages": [WA_MESSAGE],
    "statuses": [{"id": IDS, "status": _words("sent", "delivered", "read", "played", "failed", "deleted"),
                  "timestamp": TIMESTAMPS, "recipient_id": IDS, "errors": [_WA_ERROR]}],
    "errors": [_WA_ERROR],
}  # fmt: skip


@cache
def whatsapp_webhooks() -> st.SearchStrategy[dict[str, Any]]:
    """WhatsApp Business Account webhooks: the right `object` (mostly), entries, changes, and anything inside."""
    change = {"field": _words("messages", "messages", "account_update"), "value": WA_VALUE}
    return st.fixed_dictionaries(
        {
            "object": st.sampled_from(["whatsapp_business_account"] * 4 + ["page"]) | ANY_TEXT,
            "entry": loose([{"id": IDS, "changes": [change]}]),
        }
    )


# --- Facebook Page and Instagram (channels.md §2, §3) ------------------------------------------------------

_WHO = {"id": IDS, "name": TEXT, "username": TEXT}
_VERB = _words("add", "created", "edited", "edit", "remove", "removed", "delete", "hide")
META_EVENT: dict[str, Any] = {
    "sender": _WHO,
    "recipient": _WHO,
    "timestamp": TIMESTAMPS,
    "message": {
        "mid": IDS, "text": TEXT, "is_echo": FLAG, "app_id": IDS, "metadata": TEXT, "is_deleted": FLAG,
        "is_unsupported": FLAG, "reply_to": {"mid": IDS, "story": {"id": IDS, "url": TEXT}},
        "attachments": [{"type": _words("image", "audio", "video", "file", "sticker", "location", "fallback"),
                         "payload": {"url": TEXT}, "title": TEXT}],
        "quick_reply": {"payload": TEXT},
    },
    "postback": {"mid": IDS, "title": TEXT, "payload": TEXT},
    "reaction": {"mid": IDS, "emoji": TEXT, "reaction": TEXT, "action": _words("react", "unreact")},
    "delivery": {"mids": [IDS], "watermark": TIMESTAMPS, "mid": IDS},
    "read": {"watermark": TIMESTAMPS, "mid": IDS},
}  # fmt: skip
META_CHANGE_VALUE: dict[str, Any] = {
    "item": _words("comment", "post", "reaction"), "verb": _VERB, "from": _WHO, "comment_id": IDS, "post_id": IDS,
    "post": {"id": IDS, "permalink_url": TEXT}, "message": TEXT, "parent_id": IDS, "created_time": TIMESTAMPS,
    "id": IDS, "text": TEXT, "media": {"id": IDS}, "media_id": IDS,
}  # fmt: skip


@cache
def meta_webhooks(obj: str) -> st.SearchStrategy[dict[str, Any]]:
    """Page (`obj="page"`) or Instagram (`"instagram"`) webhooks: `messaging`/`standby` events and `changes`."""
    change = {"field": _words("feed", "comments", "live_comments", "mentions"), "value": META_CHANGE_VALUE}
    entry = {"id": IDS, "time": TIMESTAMPS, "messaging": [META_EVENT], "standby": [META_EVENT], "changes": [change]}
    return st.fixed_dictionaries(
        {
            "object": st.sampled_from([obj] * 4 + ["page", "instagram", "whatsapp_business_account"]) | ANY_TEXT,
            "entry": loose([entry]),
        }
    )


# --- X (channels.md §4) ------------------------------------------------------------------------------------

X_USER = {"id": IDS, "id_str": IDS, "name": TEXT, "screen_name": TEXT}
X_TWEET: dict[str, Any] = {
    "id": IDS, "id_str": IDS, "text": TEXT, "user": X_USER, "in_reply_to_status_id_str": IDS,
    "timestamp_ms": TIMESTAMPS,
}  # fmt: skip
X_DM: dict[str, Any] = {
    "type": _words("message_create", "message_create", "typing"), "id": IDS, "created_timestamp": TIMESTAMPS,
    "message_create": {"sender_id": IDS, "target": {"recipient_id": IDS}, "message_data": {"text": TEXT}},
}  # fmt: skip
#: API v2 shapes, as the poller reads them (`GET /2/users/:id/mentions`, `GET /2/dm_events`).
X_V2: dict[str, Any] = {
    "id": IDS, "author_id": IDS, "conversation_id": IDS, "text": TEXT,
    "created_at": TEXT | st.just("2026-01-01T00:00:00Z") | st.just("2026-01-01T00:00:00"),
    "referenced_tweets": [{"type": _words("replied_to", "quoted"), "id": IDS}],
    "event_type": _words("MessageCreate", "ParticipantsJoin"), "sender_id": IDS, "dm_conversation_id": TEXT,
}  # fmt: skip


@cache
def x_webhooks() -> st.SearchStrategy[dict[str, Any]]:
    """Account Activity bodies: mentions, direct messages, the users they name, and other `*_events`."""
    return st.fixed_dictionaries(
        {},
        optional={
            "for_user_id": IDS,
            "tweet_create_events": loose([X_TWEET]),
            "direct_message_events": loose([X_DM]),
            "users": _sometimes_anything(st.dictionaries(IDS.map(str), loose(X_USER), max_size=3)),
            "favorite_events": json_values(max_leaves=4),
        },
    )


# --- sending and checking --------------------------------------------------------------------------------


def body_of(payload: Any) -> bytes:
    """The bytes a platform would send: compact JSON, non-ASCII escaped as `\\uXXXX` (lone surrogates too)."""
    return json.dumps(payload, separators=(",", ":")).encode()


class RecordingPublisher(Publisher):
    """A broker that acknowledges at once: every record is encoded exactly as it would be sent, then kept."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.records: list[tuple[str, bytes | None, bytes]] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def ready(self) -> bool:
        return True

    async def send_raw(self, items: Sequence[tuple[str, bytes | None, bytes, Iterable[tuple[str, bytes]]]]) -> None:
        self.records.extend((topic, key, value) for topic, key, value, _ in items)


def published(records: Iterable[tuple[str, bytes | None, bytes]]) -> tuple[list[InboundMessage], list[DeliveryStatus]]:
    """The events of what was published, each read back as the consumers read it; fails on anything else."""
    messages: list[InboundMessage] = []
    statuses: list[DeliveryStatus] = []
    for topic, key, value in records:
        if topic == topics.INBOUND:
            message = InboundMessage.model_validate_json(value)
            assert key == message.partition_key, "an inbound message is keyed by its conversation"
            messages.append(message)
        elif topic == topics.DELIVERY:
            statuses.append(DeliveryStatus.model_validate_json(value))
        else:
            raise AssertionError(f"published to an unexpected topic {topic}")
    return messages, statuses
