"""How long a public reply (a reply post) may be; what it may say is `suara_shared.public`'s."""

from __future__ import annotations


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
