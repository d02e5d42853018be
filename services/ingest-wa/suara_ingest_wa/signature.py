"""Meta's `X-Hub-Signature-256`: HMAC-SHA256 of the raw request body with the app secret."""

from __future__ import annotations

import hashlib
import hmac


def sign(raw_body: bytes, app_secret: str) -> str:
    """Return the header value Meta would send for this body: `sha256=<lowercase hex>`."""
    return "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


def verify(raw_body: bytes, header: str | None, app_secret: str) -> bool:
    """Return True only if `header` is a SHA-256 signature of exactly these bytes (checked in constant time).

    The body must be the bytes as received: Meta escapes non-ASCII as `\\uXXXX`; re-serialised JSON differs.
    """
    algo, _, given = (header or "").strip().partition("=")
    if algo != "sha256" or not given:
        return False
    expected = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    # Bytes, not str: compare_digest refuses non-ASCII str, and a forged header may well contain some.
    return hmac.compare_digest(expected.encode(), given.lower().encode())
