"""What may be shown to anyone: a reply's text without the personal data a complaint carries."""

from __future__ import annotations

import re
from typing import Any

from lokal import mask_pii

#: Personal data lokal-id's Samaran finds and nothing public may repeat from a complaint.
PERSONAL: tuple[Any, ...] = ("NIK", "KK", "PHONE", "EMAIL", "ADDRESS", "NPWP")
MASKED = "[disamarkan]"
_PLACEHOLDER = re.compile(r"\[(?:" + "|".join(PERSONAL) + r")_\d+\]")


#: A part of a name shorter than this is a title or an initial ("Bu", "M."), not what identifies the citizen.
NAME_PART_MIN = 3


def public_text(text: str, *, names: tuple[str, ...] = ()) -> str:
    """`text` with every phone number, NIK, e-mail and address replaced by `[disamarkan]` ("masked"), and each of
    `names` (a citizen's, where the reader is not that citizen) too: whole, and each of its words of three letters
    or more on its own ("Pak Budi" for Budi Santoso), as whole words only ("Ani" is not in "Pertanian")."""
    masked = _PLACEHOLDER.sub(MASKED, mask_pii(text, mode="placeholder", types=PERSONAL).text)
    parts = {name.strip() for name in names} | {p for name in names for p in name.split() if len(p) >= NAME_PART_MIN}
    for part in sorted((p for p in parts if len(p) >= NAME_PART_MIN), key=len, reverse=True):
        masked = re.sub(rf"(?<!\w){re.escape(part)}(?!\w)", MASKED, masked, flags=re.IGNORECASE)
    return masked
