"""`X-Hub-Signature-256` verification, against the test vectors of channels.md §1.5."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from suara_ingest_wa.signature import sign, verify

SECRET = "test_app_secret"
#: channels.md §1.5: `samples/wa_webhook_text.json` serialised with `separators=(",", ":")`.
VECTOR_SIGNATURE = "sha256=8cfc13bb23a463911292a332ebd74f9209f5fe4d443effa7f7b9baf4e94761bf"
#: channels.md §1.5: how Meta sends non-ASCII, as `\uXXXX` escapes.
ESCAPED_BODY = rb'{"object":"page","entry":[{"id":"1","messaging":[{"message":{"text":"caf\u00e9 \ud83d\udc4d"}}]}]}'


def _vector_body() -> bytes:
    sample = json.loads((Path(__file__).parent / "samples" / "wa_webhook_text.json").read_text())
    return json.dumps(sample, separators=(",", ":")).encode()


def test_documented_vector_signs_and_verifies() -> None:
    body = _vector_body()
    assert len(body) == 521
    assert sign(body, SECRET) == VECTOR_SIGNATURE
    assert verify(body, VECTOR_SIGNATURE, SECRET)


def test_escaped_raw_body_verifies_but_reserialised_json_does_not() -> None:
    header = sign(ESCAPED_BODY, SECRET)
    assert verify(ESCAPED_BODY, header, SECRET)
    reserialised = json.dumps(json.loads(ESCAPED_BODY), ensure_ascii=False, separators=(",", ":")).encode()
    assert json.loads(reserialised) == json.loads(ESCAPED_BODY)
    assert not verify(reserialised, header, SECRET)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha256",
        VECTOR_SIGNATURE.replace("sha256=", ""),
        VECTOR_SIGNATURE[:-1] + "0",
        "sha1=" + hmac.new(SECRET.encode(), b"x", hashlib.sha1).hexdigest(),
        "sha256=é" + VECTOR_SIGNATURE[8:],
    ],
)
def test_missing_or_wrong_headers_are_refused(header: str | None) -> None:
    assert not verify(_vector_body(), header, SECRET)


def test_other_secret_or_tampered_body_is_refused() -> None:
    body = _vector_body()
    assert not verify(body, VECTOR_SIGNATURE, "another_secret")
    assert not verify(body.replace(b"refund", b"refunD"), VECTOR_SIGNATURE, SECRET)
    assert not verify(body + b" ", VECTOR_SIGNATURE, SECRET)
