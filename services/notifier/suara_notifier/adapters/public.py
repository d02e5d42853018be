"""What a public reply (under a comment, a reply post) may say: never a phone number, NIK, e-mail or address."""

from __future__ import annotations

import re
from typing import Any

from lokal import mask_pii

#: Personal data lokal-id's Samaran finds and a public reply must not repeat from the complaint.
PERSONAL: tuple[Any, ...] = ("NIK", "KK", "PHONE", "EMAIL", "ADDRESS", "NPWP")
MASKED = "[disamarkan]"
_PLACEHOLDER = re.compile(r"\[(?:" + "|".join(PERSONAL) + r")_\d+\]")


def public_text(text: str) -> str:
    """The reply with every phone number, NIK, e-mail and address replaced by `[disamarkan]` ("masked")."""
    masked = mask_pii(text, mode="placeholder", types=PERSONAL).text
    return _PLACEHOLDER.sub(MASKED, masked)


def fit(text: str, limit: int, *, link: str | None) -> str:
    """The text within `limit` characters: cut at a word with an ellipsis, and the link (the ticket's status
    page) kept whole at the end, so the citizen can read the rest."""
    if len(text) <= limit:
        return text
    tail = f"… {link}" if link and len(link) + 2 < limit // 2 else "…"
    room = limit - len(tail)
    cut = text.rfind(" ", 0, room + 1)
    if cut < room // 2:
        cut = room
    return text[:cut].rstrip() + tail
