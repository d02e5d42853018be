"""What may be shown to anyone: a reply's text without the personal data a complaint carries."""

from __future__ import annotations

import re
from typing import Any

from lokal import mask_pii

#: Personal data lokal-id's Samaran finds and nothing public may repeat from a complaint.
PERSONAL: tuple[Any, ...] = ("NIK", "KK", "PHONE", "EMAIL", "ADDRESS", "NPWP")
MASKED = "[disamarkan]"
_PLACEHOLDER = re.compile(r"\[(?:" + "|".join(PERSONAL) + r")_\d+\]")


def public_text(text: str, *, names: tuple[str, ...] = ()) -> str:
    """`text` with every phone number, NIK, e-mail and address replaced by `[disamarkan]` ("masked"), and each of
    `names` (a citizen's, where the reader is not that citizen) too, whatever its case."""
    masked = _PLACEHOLDER.sub(MASKED, mask_pii(text, mode="placeholder", types=PERSONAL).text)
    for name in (n.strip() for n in names):
        if len(name) > 1:
            masked = re.sub(re.escape(name), MASKED, masked, flags=re.IGNORECASE)
    return masked
