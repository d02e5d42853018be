"""WhatsApp webhooks built as Meta sends them (compact, `\\uXXXX`-escaped, signed), for tests and stand-ins."""

from __future__ import annotations

import json
import uuid
from typing import Any

from .signature import sign

#: The business number the built webhooks are addressed to (channels.md's sample values).
PHONE_NUMBER_ID = "106540352242922"
WABA_ID = "102290129340398"


def wamid() -> str:
    """A fresh message id, shaped like WhatsApp's."""
    return f"wamid.test-{uuid.uuid4().hex}"


def citizen(wa_id: str, name: str) -> list[dict[str, Any]]:
    """The `contacts` of a value sent by one citizen."""
    return [{"profile": {"name": name}, "wa_id": wa_id}]


def text_message(wa_id: str, message_id: str, body: str, *, timestamp: str = "1717236000") -> dict[str, Any]:
    """One entry of `messages[]`: a text from `wa_id`."""
    return {"from": wa_id, "id": message_id, "timestamp": timestamp, "type": "text", "text": {"body": body}}


def envelope(*values: dict[str, Any]) -> dict[str, Any]:
    """A WhatsApp webhook with one entry and one `messages` change per given value (contacts, messages…)."""
    changes = [
        {
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "622959690001", "phone_number_id": PHONE_NUMBER_ID},
                **value,
            },
            "field": "messages",
        }
        for value in values
    ]
    return {"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": changes}]}


def meta_body(payload: Any) -> bytes:
    """The bytes Meta would send: compact JSON with non-ASCII escaped as `\\uXXXX`."""
    return json.dumps(payload, separators=(",", ":")).encode()


def signed_headers(body: bytes, app_secret: str) -> dict[str, str]:
    """The headers of a webhook POST carrying `body`, signed with `app_secret`."""
    return {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, app_secret)}
