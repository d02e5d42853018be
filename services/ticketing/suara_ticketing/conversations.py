"""A conversation's messages, as the queries read them: through one index, by exactly its fields."""

from __future__ import annotations

from typing import Any

#: The index on a conversation's messages (created by TicketService.ensure_indexes): the window's last inbound
#: message, the echoes' and watermarks' replies, the comment a reply answers.
INDEX = [("channel", 1), ("conversation_key", 1), ("direction", 1), ("created_at", -1)]


def messages(
    channel: str, conversation_key: str, direction: str, *, created_at: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A conversation's messages one way, within a range of `created_at` if given: exactly the fields of `INDEX`.
    The embedded database serves a filter from a compound index only when it names the index's fields and no
    other; with one more it reads every message of the channel (an echo's lookup by its text did, twice per reply
    on Messenger and Instagram, and every agent's reply looked for the comment it answers so). Callers check
    anything else on what comes back: a conversation's messages are few."""
    query: dict[str, Any] = {"channel": channel, "conversation_key": conversation_key, "direction": direction}
    if created_at is not None:
        query["created_at"] = created_at
    return query
