"""Webhook signatures: Meta's `X-Hub-Signature-256` (hex) and X's CRC answer and `x-twitter-webhooks-signature`
(base64), both HMAC-SHA256 over the exact bytes received."""

from __future__ import annotations

import base64
import hashlib
import hmac


def meta_sign(raw_body: bytes, app_secret: str) -> str:
    """The header Meta sends with this body: `sha256=<lowercase hex>`."""
    return "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


def meta_verify(raw_body: bytes, header: str | None, app_secret: str) -> bool:
    """True only if `header` is Meta's signature of exactly these bytes (constant-time comparison)."""
    algo, _, given = (header or "").strip().partition("=")
    if algo != "sha256" or not given:
        return False
    expected = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    # Bytes, not str: compare_digest refuses non-ASCII str, and a forged header may hold some.
    return hmac.compare_digest(expected.encode(), given.lower().encode())


def x_digest(message: bytes, consumer_secret: str) -> str:
    """`sha256=` + base64 of HMAC-SHA256(consumer secret, message): X's CRC answer and body signature alike."""
    digest = hmac.new(consumer_secret.encode(), message, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def x_crc_response(crc_token: str, consumer_secret: str) -> dict[str, str]:
    """The JSON X expects back from `GET <webhook>?crc_token=…` (channels.md §4.3)."""
    return {"response_token": x_digest(crc_token.encode(), consumer_secret)}


def x_verify(raw_body: bytes, header: str | None, consumer_secret: str) -> bool:
    """True only if `header` is X's signature of exactly these bytes."""
    given = (header or "").strip()
    if not given.startswith("sha256="):
        return False
    return hmac.compare_digest(x_digest(raw_body, consumer_secret).encode(), given.encode())
