"""Who a citizen is across channels: Indonesian phone numbers in one form (lokal-id)."""

from __future__ import annotations

from lokal import parse_phone


def normalize_phone(value: str | None) -> str | None:
    """Return the number in E.164 (`+62…`) whether written `08…`, `+62…`, `62…` or as a WhatsApp id; else None."""
    if not value:
        return None
    info = parse_phone(value)
    return info.e164 if info.valid else None
