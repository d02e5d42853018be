"""Structured JSON logs that never carry a phone number, a NIK or a citizen's message text in clear."""

from __future__ import annotations

import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

import orjson
from lokal import mask_pii
from pydantic import ValidationError

#: Fields whose values are the citizen's words or identity: never logged, only their length.
REDACTED_FIELDS = frozenset(
    {
        "text",
        "body",
        "message_text",
        "caption",
        "raw",
        "phone",
        "email",
        "display_name",
        "name",
        "address",
    }
)

#: Fields that hold only what Suara itself made (references, ids, names of things): logged as they are. Masking
#: them would find nothing and costs, on every line, more than the rest of the formatting.
OWN_FIELDS = frozenset(
    {
        "reference",
        "ticket_reference",
        "outbound_id",
        "resend",
        "channel",
        "purpose",
        "action",
        "group",
        "topic",
        "error_code",
        "status",
    }
)

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def mask(text: str) -> str:
    """Mask phone numbers, NIKs and other personal data inside free text (lokal-id's Samaran, partial mode)."""
    if not any(ch.isdigit() for ch in text) and "@" not in text:
        return text  # nothing Samaran's number and e-mail detectors could find; names never reach logs
    return mask_pii(text, mode="partial", types=("NIK", "PHONE", "EMAIL", "NPWP", "KK")).text


def describe_exception(exc: BaseException | None) -> str:
    """A traceback with each exception's message, except the input a validation error quotes (a citizen's text,
    say): its errors are described by place and kind only."""
    if exc is None:
        return ""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ValidationError):
            message = repr(current.errors(include_input=False, include_url=False, include_context=False))
        else:
            message = str(current)
        frames = "".join(traceback.format_tb(current.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{frames}{type(current).__name__}: {message}\n")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\nwhich was raised while handling:\n".join(parts)


def _clean(key: str, value: Any) -> Any:
    if key in REDACTED_FIELDS and value is not None:
        return f"[redacted {len(str(value))} chars]"
    if isinstance(value, str):
        return value if key in OWN_FIELDS else mask(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return mask(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message and any `extra=` fields, masked."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": mask(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key != "color_message" and not key.startswith("_"):
                entry[key] = _clean(key, value)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["exc"] = mask(describe_exception(record.exc_info[1])[-4000:])
        return orjson.dumps(entry, default=str).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every logger, uvicorn's and the libraries' included, through one masked JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # httpx logs every request URL at INFO: noise, and a URL may carry ids or tokens the platforms put there.
    for noisy in ("aiokafka", "kafka", "pymongo", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
