"""Every secret Suara is handed (webhook signatures, handshake tokens, the admin token, Open311 keys) is compared in
constant time: a comparison whose time depends on how many leading characters match lets an attacker guess a
signature or a key one character at a time.

Two complementary checks: each verifier's verdict is shown to be `hmac.compare_digest`'s (a spy that says "no"
makes a right signature fail, one that says "yes" makes a wrong one pass, so no `==` decides behind it), and a
scan of the product code finds no `==`, `!=` or `in` applied to anything named like a secret."""

from __future__ import annotations

import ast
import asyncio
import hmac
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.security import HTTPAuthorizationCredentials
from starlette.requests import Request

from suara_ingest_social.webhooks import signature as social_signature
from suara_ingest_wa import signature as wa_signature
from suara_shared.http import ApiError
from suara_ticketing import auth
from suara_ticketing.config import Settings as TicketingSettings
from suara_ticketing.open311 import router as open311

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cret-app-secret"
BODY = b'{"object":"whatsapp_business_account","entry":[]}'


class Spy:
    """Stands in for `hmac.compare_digest`: records each call and answers what it is told (default: the truth)."""

    def __init__(self, answer: bool | None = None) -> None:
        self.answer = answer
        self.calls: list[tuple[Any, Any]] = []

    def __call__(self, a: Any, b: Any) -> bool:
        self.calls.append((a, b))
        real: bool = _REAL_COMPARE(a, b)
        return real if self.answer is None else self.answer


_REAL_COMPARE = hmac.compare_digest


def _spy(monkeypatch: pytest.MonkeyPatch, answer: bool | None = None) -> Spy:
    spy = Spy(answer)
    monkeypatch.setattr(hmac, "compare_digest", spy)
    return spy


# name, verify(body, header) -> bool, a correct header for BODY
VERIFIERS: list[tuple[str, Callable[[bytes, str], bool], str]] = [
    ("whatsapp", lambda b, h: wa_signature.verify(b, h, SECRET), wa_signature.sign(BODY, SECRET)),
    ("meta", lambda b, h: social_signature.meta_verify(b, h, SECRET), social_signature.meta_sign(BODY, SECRET)),
    ("x", lambda b, h: social_signature.x_verify(b, h, SECRET), social_signature.x_digest(BODY, SECRET)),
]


@pytest.mark.parametrize(("name", "verify", "header"), VERIFIERS, ids=[v[0] for v in VERIFIERS])
def test_webhook_signatures_are_decided_by_compare_digest(
    monkeypatch: pytest.MonkeyPatch, name: str, verify: Callable[[bytes, str], bool], header: str
) -> None:
    spy = _spy(monkeypatch)
    assert verify(BODY, header) is True
    assert verify(BODY, header[:-2] + "00") is False
    assert len(spy.calls) == 2
    spy.answer = False
    assert verify(BODY, header) is False, f"{name}: a right signature passed although compare_digest said no"
    spy.answer = True
    assert verify(BODY, header[:-2] + "00") is True, f"{name}: something besides compare_digest refused it"


def _request(app_state: dict[str, Any], body: bytes = b"", query: bytes = b"") -> Request:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http", "method": "POST", "path": "/", "query_string": query, "scheme": "http",
        "server": ("suara.test", 80), "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
        "app": SimpleNamespace(state=SimpleNamespace(**app_state)), "state": {},
    }  # fmt: skip
    return Request(scope, receive)


def test_the_admin_token_is_decided_by_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_token(_: str) -> None:
        return None

    state = {
        "settings": TicketingSettings(admin_api_token="admin-token-123"),
        "access": SimpleNamespace(resolve=no_token),
    }

    def principal(token: str) -> Any:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
        return asyncio.run(auth.current_principal(_request(state), credentials))

    spy = _spy(monkeypatch)
    assert principal("admin-token-123") is auth.ADMIN
    assert spy.calls == [(b"admin-token-123", b"admin-token-123")]
    spy.answer = False
    with pytest.raises(ApiError) as refused:
        principal("admin-token-123")
    assert refused.value.status == 401


def test_open311_keys_are_decided_by_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    tickets = SimpleNamespace(routing=SimpleNamespace(rules=SimpleNamespace(categories={})))
    state = {"settings": TicketingSettings(open311_api_keys="key-one,key-two"), "tickets": tickets}
    form = b"api_key=key-two&service_code=none&description=Lampu+jalan+mati+sejak+kemarin"

    def file() -> str:
        with pytest.raises(open311.Open311Error) as refused:
            asyncio.run(open311.create_request(_request(state, form)))
        return refused.value.description

    spy = _spy(monkeypatch, answer=False)
    assert file().startswith("api_key: not a valid key")  # the right key refused: compare_digest said no
    assert sorted(spy.calls) == [(b"key-two", b"key-one"), (b"key-two", b"key-two")]
    spy.answer = True
    assert file().startswith("service_code: unknown")  # past the key: compare_digest said yes


# --- no secret compared with ==, != or in anywhere in the product code ---------------------------------------

SECRET_NAME = re.compile(r"secret|token|signature|digest|api_?key|password|credential|hmac", re.IGNORECASE)

#: Comparisons that touch a secret-sounding name but no secret, each with the reason it is harmless.
NOT_SECRETS = {
    # a checksum Meta publishes next to the media, compared with the file's own: nothing to guess
    ("services/ticketing/suara_ticketing/media.py", "value != digest"),
    # whether a channel's token works (a bool), compared with the last known state
    ("services/notifier/suara_notifier/adapters/base.py", "valid == self._token_valid"),
    # words of a complaint (tokens of text) against a routing keyword
    ("services/ticketing/suara_ticketing/routing/__init__.py", "tokens[i : i + n - 1] != list(self.words[:-1])"),
    # Graph error codes that mean "token refused"
    ("shared/suara_shared/graph.py", "code in TOKEN_INVALID_CODES"),
    # at start-up, a configured secret against the known placeholders: no attacker times that
    ("shared/suara_shared/settings.py", 'secret in {"", "changeme", "change-me"}'),
}


def _names(node: ast.AST) -> set[str]:
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            found.add(child.id)
        elif isinstance(child, ast.Attribute):
            found.add(child.attr)
    return found


def secret_comparisons(path: Path, source: str) -> list[tuple[int, str]]:
    """`==`, `!=`, `in` and `not in` comparisons in `source` that involve a name like a secret's."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops):
            continue
        operands = [node.left, *node.comparators]
        if any(isinstance(o, ast.Constant) and o.value is None for o in operands):
            continue  # `x is None`-like checks written with ==: no secret in a None
        if any(SECRET_NAME.search(name) for operand in operands for name in _names(operand)):
            found.append((node.lineno, ast.get_source_segment(source, node) or ""))
    return found


def test_the_scan_catches_a_signature_compared_with_equals() -> None:
    planted = "def verify(given, expected_signature):\n    return given == expected_signature\n"
    assert secret_comparisons(Path("x.py"), planted) == [(2, "given == expected_signature")]
    fixed = (
        "import hmac\ndef verify(given, expected_signature):\n"
        "    return hmac.compare_digest(given, expected_signature)\n"
    )
    assert secret_comparisons(Path("x.py"), fixed) == []


def test_no_secret_is_compared_with_equals_in_the_product_code() -> None:
    packages = [*ROOT.glob("services/*/suara_*"), ROOT / "shared" / "suara_shared"]
    assert len(packages) == 5
    offending = []
    for package in packages:
        for path in sorted(package.rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for line, text in secret_comparisons(path, path.read_text()):
                if (relative, text) not in NOT_SECRETS:
                    offending.append(f"{relative}:{line}: {text}")
    assert offending == [], "compare secrets with hmac.compare_digest:\n" + "\n".join(offending)
