"""Asking ticketing, without credentials, what became of a complaint."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from .models import PublicStatus

log = logging.getLogger(__name__)

#: A ticket reference (`RMB-2026-000123`) or a submission id; anything else cannot name a complaint.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_SUBMISSION_ID = re.compile(r"[0-9a-f]{32}")


class StatusNotFound(Exception):
    """Ticketing knows no complaint by this key (yet)."""


class TicketingUnavailable(Exception):
    """Ticketing did not give a usable answer; the citizen should try again later."""


@dataclass(frozen=True, slots=True)
class StatusAnswer:
    """Ticketing's answer, both as sent (for the JSON passthrough) and as read (for the page)."""

    raw: dict[str, Any]
    status: PublicStatus


def normalize_key(key: str) -> str:
    """Trim what a citizen typed; references are upper case, submission ids lower case."""
    key = key.strip()
    lowered = key.lower()
    return lowered if _SUBMISSION_ID.fullmatch(lowered) else key.upper()


def is_valid_key(key: str) -> bool:
    return _KEY.fullmatch(key) is not None


def is_submission_id(key: str) -> bool:
    return _SUBMISSION_ID.fullmatch(key) is not None


async def fetch_status(*, client: httpx.AsyncClient, key: str) -> StatusAnswer:
    """Return the public status of `key`; raises StatusNotFound or TicketingUnavailable."""
    if not is_valid_key(key):
        # Never forward something that is not a key: it could only be a typo or a probe.
        raise StatusNotFound(key)
    try:
        response = await client.get(f"/api/v1/public/status/{quote(key, safe='')}")
    except httpx.HTTPError as exc:
        log.warning("ticketing unreachable for a status lookup", extra={"error": type(exc).__name__})
        raise TicketingUnavailable(str(exc)) from exc
    if response.status_code == 404:
        raise StatusNotFound(key)
    if response.status_code != 200:
        log.warning("ticketing answered a status lookup with an error", extra={"status": response.status_code})
        raise TicketingUnavailable(f"ticketing answered {response.status_code}")
    try:
        raw = response.json()
        return StatusAnswer(raw=raw, status=PublicStatus.model_validate(raw))
    except (ValueError, ValidationError) as exc:
        log.error("ticketing's public status does not follow its contract", extra={"error": type(exc).__name__})
        raise TicketingUnavailable("unreadable answer from ticketing") from exc
