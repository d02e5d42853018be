"""Facebook, Instagram and X webhooks built as the platforms send them (compact JSON, signed), for tests and
stand-ins such as the bench's load. WhatsApp's are in `suara_ingest_wa.testing`."""

from __future__ import annotations

import json
import time
from typing import Any

from .webhooks.meta import INSTAGRAM_OBJECT, PAGE_OBJECT
from .webhooks.signature import meta_sign, x_digest

#: The `object` of a Graph webhook, by the channel whose endpoint takes it.
META_OBJECTS = {"facebook": PAGE_OBJECT, "instagram": INSTAGRAM_OBJECT}


def compact(payload: Any) -> bytes:
    """The bytes a platform sends: compact JSON, non-ASCII escaped as `\\uXXXX`."""
    return json.dumps(payload, separators=(",", ":")).encode()


def messaging_event(
    *, sender: str, recipient: str, mid: str, text: str | None, file: tuple[str, str] | None = None
) -> dict[str, Any]:
    """One `messaging[]` event of Messenger or Instagram (the same shape): a citizen's text to our Page or account,
    and/or a file as its type and CDN link (`("image", "https://scontent…")`)."""
    message: dict[str, Any] = {"mid": mid}
    if text:
        message["text"] = text
    if file is not None:
        message["attachments"] = [{"type": file[0], "payload": {"url": file[1]}}]
    return {
        "sender": {"id": sender},
        "recipient": {"id": recipient},
        "timestamp": int(time.time() * 1000),
        "message": message,
    }


def page_comment(
    *, post_id: str, sender: str, name: str, comment_id: str, text: str | None, verb: str = "add"
) -> dict[str, Any]:
    """One `changes[]` item of a Page's `feed`: a citizen's comment under our post, new (`add`), `edited` or
    `remove`d (which carries no message)."""
    value = {
        "from": {"id": sender, "name": name},
        "post": {"id": post_id, "status_type": "added_photos", "is_published": True},
        "post_id": post_id,
        "comment_id": comment_id,
        "created_time": int(time.time()),
        "item": "comment",
        "parent_id": post_id,
        "verb": verb,
    }
    if text is not None:
        value["message"] = text
    return {"field": "feed", "value": value}


def instagram_comment(*, media_id: str, sender: str, username: str, comment_id: str, text: str) -> dict[str, Any]:
    """One `changes[]` item of an Instagram account's `comments`: a citizen's comment under our media."""
    value = {
        "from": {"id": sender, "username": username},
        "media": {"id": media_id, "media_product_type": "FEED"},
        "id": comment_id,
        "text": text,
    }
    return {"field": "comments", "value": value}


def meta_envelope(channel: str, own_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A Graph webhook for `channel` (`facebook`, `instagram`) with one entry of our Page or account (`messaging`
    events or `changes`), timed as Meta times it: in milliseconds for `messaging`, in seconds for `changes` (see
    the reference samples)."""
    at = int(time.time() * 1000) if "messaging" in entry else int(time.time())
    return {"object": META_OBJECTS[channel], "entry": [{"id": own_id, "time": at, **entry}]}


def meta_headers(body: bytes, app_secret: str) -> dict[str, str]:
    """The headers of a Graph webhook POST carrying `body`, signed with the app secret (`X-Hub-Signature-256`)."""
    return {"Content-Type": "application/json", "X-Hub-Signature-256": meta_sign(body, app_secret)}


def x_direct_message(*, for_user_id: str, sender: str, name: str, event_id: str, text: str) -> dict[str, Any]:
    """An Account Activity webhook (v1.1 shapes) with one direct message from `sender` to us (`for_user_id`)."""
    return {
        "for_user_id": for_user_id,
        "direct_message_events": [
            {
                "type": "message_create",
                "id": event_id,
                "created_timestamp": str(int(time.time() * 1000)),
                "message_create": {
                    "target": {"recipient_id": for_user_id},
                    "sender_id": sender,
                    "message_data": {"text": text},
                },
            }
        ],
        "users": {sender: {"id": sender, "name": name, "screen_name": f"warga{sender[-6:]}"}},
    }


def x_mention(*, for_user_id: str, sender: str, name: str, tweet_id: str, text: str) -> dict[str, Any]:
    """An Account Activity webhook (v1.1 shapes) with one post of `sender` mentioning us (`for_user_id`)."""
    return {
        "for_user_id": for_user_id,
        "tweet_create_events": [
            {
                "id": int(tweet_id),
                "id_str": tweet_id,
                "text": text,
                "timestamp_ms": str(int(time.time() * 1000)),
                "in_reply_to_status_id_str": None,
                "user": {"id": int(sender), "id_str": sender, "name": name, "screen_name": f"warga{sender[-6:]}"},
            }
        ],
    }


def x_headers(body: bytes, consumer_secret: str) -> dict[str, str]:
    """The headers of an Account Activity POST carrying `body`, signed with the consumer secret."""
    return {"Content-Type": "application/json", "x-twitter-webhooks-signature": x_digest(body, consumer_secret)}
