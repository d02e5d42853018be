"""JSON from outside (platform webhooks and APIs, citizens' forms) made fit to travel in an event.

Two things valid JSON may hold that an event cannot: a lone UTF-16 surrogate (`"\\ud800"` decodes to a Python
string that cannot be encoded as UTF-8, so publishing it fails), and nesting deeper than the consumers' JSON
parser accepts (a record they could never read). The first is replaced by U+FFFD, the second refused."""

from __future__ import annotations

import json
import re
from typing import Any

#: Far beyond any platform's payload (WhatsApp's deepest is about 8), far below the consumers' parser limit.
MAX_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")


class TooDeep(ValueError):
    """The JSON is nested deeper than MAX_DEPTH."""


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (json.loads has already joined the valid pairs)."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def clean(value: Any, *, max_depth: int = MAX_DEPTH) -> Any:
    """A copy of a decoded JSON value with lone surrogates replaced in every string, keys included.

    Raises TooDeep past `max_depth` levels of arrays and objects."""
    if max_depth < 0:
        raise TooDeep(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean(v, max_depth=max_depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v, max_depth=max_depth - 1) for v in value]
    return value


def loads(raw: bytes | str) -> Any:
    """`json.loads`, cleaned; raises ValueError (TooDeep included) for anything that is not usable JSON."""
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise TooDeep("JSON nested too deeply to parse") from exc
    return clean(value)
