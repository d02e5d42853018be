"""Pure functions that turn Facebook Page and Instagram webhooks into Suara's InboundMessages (no I/O, no state).

Threads (`conversation_key`): a direct-message conversation is `dm:<sender id>`; one citizen's comments under one
post are `post:<post id>:<author id>` (Instagram: `media:<media id>:<author id>`); an Instagram mention is
`mention:<media id>:<comment id>`. Echoes of what the Page or account sent carry `metadata.echo`; comment edits
and removals carry `metadata.edit` (`edited`, `removed`) and `metadata.original_id`, so ticketing records them
on the message they change instead of opening a ticket."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from suara_shared.events import (
    Attachment,
    Channel,
    DeliveryState,
    DeliveryStatus,
    InboundMessage,
    MessageKind,
    ReplyContext,
    Sender,
    link_media_id,
    utcnow,
)

PAGE_OBJECT = "page"
INSTAGRAM_OBJECT = "instagram"

Json = Mapping[str, Any]

#: Messenger and Instagram attachment types as Suara's kinds; anything else is kept as `unsupported`.
ATTACHMENT_KINDS: dict[str, MessageKind] = {
    "image": MessageKind.IMAGE,
    "audio": MessageKind.AUDIO,
    "video": MessageKind.VIDEO,
    "file": MessageKind.DOCUMENT,
    "sticker": MessageKind.STICKER,
    "location": MessageKind.LOCATION,
}
#: Attachments that are files on Meta's CDN (the others' links are pages or places).
FILE_KINDS = frozenset(
    {MessageKind.IMAGE, MessageKind.AUDIO, MessageKind.VIDEO, MessageKind.DOCUMENT, MessageKind.STICKER}
)
#: Meta's ids are far shorter (an Instagram message id is about 180 characters); a longer one is replaced by its
#: digest, so that the keys made of two ids stay within the event's 512 characters and a sender id within 256.
_ID_MAX = 200
_NAME_MAX = 256


@dataclass(frozen=True, slots=True)
class WebhookBatch:
    """What one webhook POST carried: the messages to publish, and what was set aside on purpose (for logs)."""

    messages: tuple[InboundMessage, ...] = ()
    ignored: tuple[str, ...] = ()
    #: Delivery and read receipts of what the Page or account sent (Messenger `delivery`, `read`).
    statuses: tuple[DeliveryStatus, ...] = ()


def _mapping(value: object) -> Json:
    return value if isinstance(value, Mapping) else {}


def _mappings(value: object) -> list[Json]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _name(value: object) -> str | None:
    """A display name, cut to what a Sender holds."""
    name = _text(value)
    return name[:_NAME_MAX] if name else None


def _id(value: object) -> str | None:
    """Ids come as strings, sometimes as numbers (`app_id`); never as anything else we could trust."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not value:
        return None
    # Distinct ids stay distinct (a cut could merge two) and the same id is always the same digest.
    return (
        value
        if len(value) <= _ID_MAX
        else "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    )


def _moment(value: object, *, millis: bool) -> datetime:
    """A platform timestamp (ms or s since the epoch) as UTC; now when absent or absurd."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        try:
            return datetime.fromtimestamp(value / 1000 if millis else value, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return utcnow()


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def envelope_object(payload: object) -> str | None:
    """The `object` of a Graph webhook (`page`, `instagram`), or None when it is not one."""
    if isinstance(payload, Mapping) and isinstance(payload.get("entry"), list):
        obj = payload.get("object")
        return obj if isinstance(obj, str) else None
    return None


# --- direct messages (Messenger and Instagram share the shape) ------------------------------------------------


def _attachments(message: Json) -> tuple[Attachment, ...]:
    found = []
    for item in _mappings(message.get("attachments")):
        kind = ATTACHMENT_KINDS.get(str(item.get("type")), MessageKind.UNSUPPORTED)
        payload = _mapping(item.get("payload"))
        url = _text(payload.get("url"))
        # A file's link expires within days: naming the file lets ticketing keep it. Other links (a shared page,
        # a place) are not files.
        media_id = link_media_id(url) if url and kind in FILE_KINDS else None
        found.append(Attachment(kind=kind, url=url, media_id=media_id, caption=_text(item.get("title"))))
    return tuple(found)


def _messaging(channel: Channel, own_id: str | None, event: Json, raw: Json) -> InboundMessage | str:
    """One `messaging[]` event as a message, or the reason it is set aside."""
    sender_id = _id(_mapping(event.get("sender")).get("id"))
    recipient_id = _id(_mapping(event.get("recipient")).get("id"))
    received_at = _moment(event.get("timestamp"), millis=True)
    message = _mapping(event.get("message"))
    postback = _mapping(event.get("postback"))
    reaction = _mapping(event.get("reaction"))
    if message:
        echo = message.get("is_echo") is True
        citizen = recipient_id if echo else sender_id
        mid = _id(message.get("mid"))
        if citizen is None or mid is None:
            return "message_without_ids"
        if not echo and own_id is not None and citizen == own_id:
            return "own_message"
        metadata: dict[str, Any] = {}
        if echo:
            metadata.update(echo=True, app_id=_id(message.get("app_id")), echo_metadata=_text(message.get("metadata")))
        reply_to = _mapping(message.get("reply_to"))
        context = ReplyContext(in_reply_to=_id(reply_to.get("mid")) or _id(_mapping(reply_to.get("story")).get("id")))
        common: dict[str, Any] = {
            "channel": channel,
            "conversation_key": f"dm:{citizen}",
            "sender": Sender(channel_user_id=citizen),
            "received_at": received_at,
            "reply_context": context if context.in_reply_to else None,
            "raw": dict(raw),
        }
        if message.get("is_deleted") is True:
            # The citizen unsent it (Instagram): recorded on the message it was.
            metadata.update(edit="removed", original_id=mid)
            return InboundMessage(
                platform_message_id=f"{mid}:removed", kind=MessageKind.TEXT, metadata=metadata, **common
            )
        attachments = _attachments(message)
        text = _text(message.get("text"))
        quick_reply = _mapping(message.get("quick_reply"))
        if message.get("is_unsupported") is True:
            kind = MessageKind.UNSUPPORTED
        elif quick_reply:
            kind = MessageKind.BUTTON
            metadata["payload"] = _text(quick_reply.get("payload"))
        elif text is None and attachments:
            kind = attachments[0].kind
        elif text is None:
            kind = MessageKind.UNSUPPORTED
        else:
            kind = MessageKind.TEXT
        return InboundMessage(
            platform_message_id=mid, kind=kind, text=text, attachments=attachments, metadata=metadata, **common
        )
    if postback:
        if sender_id is None:
            return "postback_without_sender"
        pid = _id(postback.get("mid")) or f"postback:{sender_id}:{_digest(event.get('timestamp'), postback)}"
        return InboundMessage(
            channel=channel,
            platform_message_id=pid,
            conversation_key=f"dm:{sender_id}",
            sender=Sender(channel_user_id=sender_id),
            kind=MessageKind.POSTBACK,
            text=_text(postback.get("title")),
            metadata={"payload": _text(postback.get("payload"))},
            received_at=received_at,
            raw=dict(raw),
        )
    if reaction:
        target = _id(reaction.get("mid"))
        if sender_id is None or target is None:
            return "reaction_without_ids"
        return InboundMessage(
            channel=channel,
            platform_message_id=f"reaction:{target}:{sender_id}:{_digest(event.get('timestamp'), reaction)}",
            conversation_key=f"dm:{sender_id}",
            sender=Sender(channel_user_id=sender_id),
            kind=MessageKind.REACTION,
            text=_text(reaction.get("emoji")) or _text(reaction.get("reaction")),
            reply_context=ReplyContext(in_reply_to=target),
            metadata={"action": _text(reaction.get("action"))},
            received_at=received_at,
            raw=dict(raw),
        )
    return "unknown_messaging_event"


def receipts(channel: Channel, event: Json) -> list[DeliveryStatus]:
    """A `delivery{mids,watermark}` or `read{watermark}` event (channels.md §2.1) as delivery statuses: one per
    message id it names, and one for its watermark, which covers every message of the conversation sent until
    then (Meta may name no ids at all)."""
    citizen = _id(_mapping(event.get("sender")).get("id"))
    statuses: list[DeliveryStatus] = []
    for field, state in (("delivery", DeliveryState.DELIVERED), ("read", DeliveryState.READ)):
        receipt = _mapping(event.get(field))
        if not receipt:
            continue
        occurred = _moment(event.get("timestamp"), millis=True)
        mids = (
            [m for m in (_id(v) for v in receipt.get("mids") or []) if m]
            if isinstance(receipt.get("mids"), list)
            else []
        )
        if mid := _id(receipt.get("mid")):  # Instagram's read receipt names the one message
            mids.append(mid)
        for mid in mids:
            statuses.append(
                DeliveryStatus(channel=channel, platform_message_id=mid, status=state, occurred_at=occurred)
            )
        watermark = receipt.get("watermark")
        if citizen is not None and isinstance(watermark, int) and not isinstance(watermark, bool) and watermark > 0:
            statuses.append(
                DeliveryStatus(
                    channel=channel,
                    status=state,
                    occurred_at=occurred,
                    watermark=_moment(watermark, millis=True),
                    conversation_key=f"dm:{citizen}",
                )
            )
    return statuses


# --- comments --------------------------------------------------------------------------------------------


def _edit_fields(verb: str, comment_id: str, text: str | None) -> tuple[str, dict[str, Any]] | None:
    """The id and metadata of an edit or removal of a comment; None for a verb that is not one."""
    if verb in ("edited", "edit"):
        return f"{comment_id}:edited:{_digest(text)}", {"edit": "edited", "original_id": comment_id}
    if verb in ("remove", "removed", "delete"):
        return f"{comment_id}:removed", {"edit": "removed", "original_id": comment_id}
    return None


def _page_change(own_id: str | None, change: Json, raw: Json) -> InboundMessage | str:
    """A Page `feed` change: citizens' comments (added, edited, removed); everything else set aside."""
    if change.get("field") != "feed":
        return f"field:{str(change.get('field'))[:32]}"
    value = _mapping(change.get("value"))
    if value.get("item") != "comment":
        return f"feed:{str(value.get('item'))[:32]}"
    author = _mapping(value.get("from"))
    author_id = _id(author.get("id"))
    comment_id = _id(value.get("comment_id"))
    post_id = _id(value.get("post_id")) or _id(_mapping(value.get("post")).get("id"))
    if author_id is None or comment_id is None or post_id is None:
        return "comment_without_ids"
    if own_id is not None and author_id == own_id:
        return "own_comment"  # our own replies come back as feed events too (channels.md §2.2)
    text = _text(value.get("message"))
    version = _comment_version(value.get("verb") or "add", comment_id, text, added=("add",))
    if isinstance(version, str):
        return version
    platform_id, metadata = version
    return InboundMessage(
        channel=Channel.FACEBOOK,
        platform_message_id=platform_id,
        conversation_key=f"post:{post_id}:{author_id}",
        sender=Sender(channel_user_id=author_id, display_name=_name(author.get("name"))),
        kind=MessageKind.COMMENT,
        text=text,
        reply_context=ReplyContext(comment_id=comment_id, post_id=post_id, parent_id=_id(value.get("parent_id"))),
        received_at=_moment(value.get("created_time"), millis=False),
        metadata={**metadata, "permalink": _text(_mapping(value.get("post")).get("permalink_url"))},
        raw=dict(raw),
    )


def _comment_version(
    verb: object, comment_id: str, text: str | None, *, added: tuple[str, ...]
) -> tuple[str, dict[str, Any]] | str:
    """The platform id and metadata of a comment event: the comment itself when it is new (or names no verb),
    an edit or removal record otherwise; a verb we do not know is returned as the reason it was set aside."""
    if not isinstance(verb, str) or verb in added:
        return comment_id, {}
    edit = _edit_fields(verb, comment_id, text)
    return edit if edit is not None else f"comment:{verb[:32]}"


def _instagram_change(own_id: str | None, change: Json, raw: Json, entry_time: object) -> InboundMessage | str:
    """Instagram `comments`/`live_comments` and `mentions` changes."""
    field = change.get("field")
    value = _mapping(change.get("value"))
    if field in ("comments", "live_comments"):
        author = _mapping(value.get("from"))
        author_id = _id(author.get("id"))
        comment_id = _id(value.get("id"))
        media_id = _id(_mapping(value.get("media")).get("id"))
        if author_id is None or comment_id is None or media_id is None:
            return "comment_without_ids"
        if own_id is not None and author_id == own_id:
            return "own_comment"
        text = _text(value.get("text"))
        version = _comment_version(value.get("verb"), comment_id, text, added=("add", "created"))
        if isinstance(version, str):
            return version
        platform_id, metadata = version
        return InboundMessage(
            channel=Channel.INSTAGRAM,
            platform_message_id=platform_id,
            conversation_key=f"media:{media_id}:{author_id}",
            sender=Sender(channel_user_id=author_id, display_name=_name(author.get("username"))),
            kind=MessageKind.COMMENT,
            text=text,
            reply_context=ReplyContext(comment_id=comment_id, post_id=media_id, parent_id=_id(value.get("parent_id"))),
            received_at=_moment(entry_time, millis=False),
            metadata={**metadata, "live": field == "live_comments"},
            raw=dict(raw),
        )
    if field == "mentions":
        media_id = _id(value.get("media_id"))
        comment_id = _id(value.get("comment_id"))
        if media_id is None:
            return "mention_without_media"
        where = comment_id or "caption"
        # Who mentioned us is not in the webhook (it needs a Graph lookup); the thread is the mention itself.
        return InboundMessage(
            channel=Channel.INSTAGRAM,
            platform_message_id=f"mention:{media_id}:{where}",
            conversation_key=f"mention:{media_id}:{where}",
            sender=Sender(channel_user_id=f"mention:{media_id}:{where}"),
            kind=MessageKind.MENTION,
            reply_context=ReplyContext(comment_id=comment_id, post_id=media_id),
            received_at=_moment(entry_time, millis=False),
            metadata={"media_id": media_id, "comment_id": comment_id},
            raw=dict(raw),
        )
    return f"field:{str(field)[:32]}"


def _entries(payload: Json) -> Iterator[Json]:
    yield from _mappings(payload.get("entry"))


def normalize(payload: Json, *, channel: Channel, own_id: str | None) -> WebhookBatch:
    """Every message of a Page (`channel=facebook`) or Instagram webhook, in the order it came.

    `own_id` is our Page or account id (from the settings, else each entry's `id`): what it wrote is not a
    citizen's message (echoes excepted, which are marked)."""
    messages: list[InboundMessage] = []
    ignored: list[str] = []
    statuses: list[DeliveryStatus] = []
    for entry in _entries(payload):
        ours = own_id or _id(entry.get("id"))
        for key in ("messaging", "standby"):
            for event in _mappings(entry.get(key)):
                if "delivery" in event or "read" in event:
                    found = receipts(channel, event)
                    statuses += found
                    if not found:
                        ignored.append("receipt_without_ids")
                    continue
                one = _messaging(channel, ours, event, event)
                (messages.append if isinstance(one, InboundMessage) else ignored.append)(one)  # type: ignore[arg-type]
        for change in _mappings(entry.get("changes")):
            if channel is Channel.FACEBOOK:
                result = _page_change(ours, change, change)
            else:
                result = _instagram_change(ours, change, change, entry.get("time"))
            if isinstance(result, InboundMessage):
                messages.append(result)
            else:
                ignored.append(result)
    return WebhookBatch(messages=tuple(messages), ignored=tuple(ignored), statuses=tuple(statuses))
