"""The channel sandbox's app: answers Suara's Graph API and X API calls the way the platforms do, and records them."""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import SecretStr

from suara_shared.http import ApiError, install_error_handlers, ops_router, serve
from suara_shared.settings import ServiceSettings

from . import demo, faults, phone, social_page
from .social import SocialSandbox
from .whatsapp import PHONE_NUMBER_ID, WhatsAppSandbox

log = logging.getLogger(__name__)

#: How many calls are kept; older ones fall off, so a sandbox left running for days stays small.
MAX_CALLS = 5000
#: Bodies are kept up to this size; a larger one is recorded cut, as text.
MAX_RECORDED_BODY = 64 * 1024
#: The sandbox's own paths, never recorded: its page, its API under /_sandbox/, and the ops endpoints.
OWN_PATHS = frozenset({"/", "/phone", "/social", "/healthz", "/readyz", "/metrics"})
OWN_PREFIX = "/_sandbox"
#: The user id the sandbox's X account has (the other side of direct-message conversations).
SANDBOX_X_USER_ID = "1700000000000000000"
#: Calls shown on the page; the JSON API has all of them.
PAGE_CALLS = 200

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_TOKEN_IN_FORM = re.compile(r"(access_token=)[^&]*")


class SandboxSettings(ServiceSettings):
    """The sandbox listens on PORT (8009 by default), on SERVICE_HOST (127.0.0.1)."""

    port: int = 8009
    #: Where the citizens' phones post their signed WhatsApp webhooks (ingest-wa), and with which app secret.
    ingest_wa_url: str | None = None
    meta_app_secret: SecretStr = SecretStr("dev-only-meta-app-secret")
    #: The business number the WhatsApp stand-in plays, named in every webhook's metadata.
    wa_phone_number_id: str = PHONE_NUMBER_ID
    #: Seconds between the sent, delivered and read statuses of a message the sandbox "delivers".
    sandbox_status_delay_seconds: float = 0.5
    #: Where the citizens' Facebook and Instagram webhooks go (ingest-social).
    ingest_social_url: str | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """One request the sandbox received, and what it answered."""

    seq: int
    at: str
    method: str
    path: str
    query: dict[str, str]
    authorization: bool
    auth_scheme: str | None
    content_type: str | None
    body: Any
    status: int
    response: Any


class CallLog:
    """The last `capacity` calls, numbered from 1; numbers keep counting after a clear, so `since` stays valid."""

    def __init__(self, capacity: int = MAX_CALLS) -> None:
        self._calls: deque[Call] = deque(maxlen=capacity)
        self._seq = 0

    def add(self, **fields: Any) -> Call:
        self._seq += 1
        call = Call(seq=self._seq, at=datetime.now(UTC).isoformat(timespec="milliseconds"), **fields)
        self._calls.append(call)
        return call

    def since(self, seq: int) -> list[Call]:
        """Calls numbered above `seq`, oldest first."""
        return [c for c in self._calls if c.seq > seq]

    def newest(self, limit: int) -> list[Call]:
        return list(reversed(self._calls))[:limit]

    def clear(self) -> None:
        self._calls.clear()

    def __len__(self) -> int:
        return len(self._calls)


# ---- answers, shaped like the platforms' (see shared/reference/channels.md and its samples) ----------------

Answer = tuple[int, Any]
Responder = Callable[[Mapping[str, str], Mapping[str, Any]], Answer]


def _digits(n: int) -> str:
    return str(secrets.randbelow(9) + 1) + "".join(str(secrets.randbelow(10)) for _ in range(n - 1))


def _graph_messages(match: Mapping[str, str], fields: Mapping[str, Any]) -> Answer:
    """`POST /{version}/{node}/messages`: WhatsApp Cloud API when the body says so, else Messenger/Instagram."""
    if fields.get("messaging_product") == "whatsapp":
        if fields.get("status") == "read":  # marking an inbound message read
            return 200, {"success": True}
        to = str(fields.get("to") or "")
        wamid = "wamid." + base64.b64encode(secrets.token_bytes(30)).decode()
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
            "messages": [{"id": wamid}],
        }
    recipient = fields.get("recipient")
    recipient_id = recipient.get("id") if isinstance(recipient, dict) else None
    return 200, {"recipient_id": str(recipient_id or _digits(16)), "message_id": "m_" + secrets.token_urlsafe(24)}


def _new_comment(match: Mapping[str, str], fields: Mapping[str, Any]) -> Answer:
    """`POST /{version}/{comment-id}/comments` (Facebook) or `/replies` (Instagram): the new comment's id."""
    node = match["node"]
    # Facebook comment ids are "<post>_<comment>"; Instagram's are plain numbers.
    new_id = f"{node.split('_', 1)[0]}_{_digits(16)}" if "_" in node else _digits(17)
    return 200, {"id": new_id}


def _create_tweet(match: Mapping[str, str], fields: Mapping[str, Any]) -> Answer:
    tweet_id = _digits(19)
    return 201, {"data": {"id": tweet_id, "text": str(fields.get("text") or ""), "edit_history_tweet_ids": [tweet_id]}}


def _create_dm(match: Mapping[str, str], fields: Mapping[str, Any]) -> Answer:
    conversation = match.get("conversation") or f"{match.get('participant')}-{SANDBOX_X_USER_ID}"
    return 201, {"data": {"dm_conversation_id": conversation, "dm_event_id": _digits(19)}}


@dataclass(frozen=True, slots=True)
class Rule:
    """Calls with this method whose path matches `pattern` are answered by `respond`."""

    method: str
    pattern: re.Pattern[str]
    respond: Responder


_GRAPH = r"^/(?:v\d+(?:\.\d+)?/)?"  # Graph paths start with a version, e.g. /v23.0/; tolerate none
#: The first matching rule answers; later issues add per-channel behaviour (errors, webhooks) here.
RULES: tuple[Rule, ...] = (
    Rule("POST", re.compile(r"^/2/tweets$"), _create_tweet),
    Rule(
        "POST",
        re.compile(
            r"^/2/dm_conversations/(?:with/(?P<participant>[^/]+)|(?P<conversation>[^/]+))"
            r"/messages$"
        ),
        _create_dm,
    ),
    Rule("POST", re.compile(_GRAPH + r"(?P<node>[^/]+)/messages$"), _graph_messages),
    Rule("POST", re.compile(_GRAPH + r"(?P<node>[^/]+)/(?:comments|replies)$"), _new_comment),
)


def answer(method: str, path: str, fields: Mapping[str, Any]) -> Answer:
    """What the platform would answer this call; anything not modelled gets `{"success": true}`."""
    for rule in RULES:
        if rule.method == method and (match := rule.pattern.match(path)):
            return rule.respond({k: v for k, v in match.groupdict().items() if v is not None}, fields)
    return 200, {"success": True}


# ---- recording --------------------------------------------------------------------------------------------


def _decode_body(raw: bytes) -> Any:
    """JSON if it parses, else text (form bodies stay as sent, with any access token masked)."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        text = raw.decode(errors="replace")
        return _TOKEN_IN_FORM.sub(r"\1***", text)


def _fields(body: Any, raw: bytes, content_type: str | None, query: Mapping[str, str]) -> dict[str, Any]:
    """The call's parameters as the Graph API reads them: query, then a JSON or form body, where form values
    that hold JSON (as facebook-sdk sends `recipient={"id": …}`) are decoded."""
    fields: dict[str, Any] = dict(query)
    if isinstance(body, dict):
        fields.update(body)
    elif content_type and content_type.startswith("application/x-www-form-urlencoded"):
        for key, value in parse_qsl(raw.decode(errors="replace"), keep_blank_values=True):
            try:
                fields[key] = json.loads(value) if value[:1] in "{[" else value
            except ValueError:
                fields[key] = value
    return fields


def _is_own(path: str) -> bool:
    return path in OWN_PATHS or path == OWN_PREFIX or path.startswith(OWN_PREFIX + "/")


def create_app(*, capacity: int = MAX_CALLS, settings: SandboxSettings | None = None) -> FastAPI:
    """The sandbox: its page at `/`, the citizen's phone at `/phone`, its API under `/_sandbox/`, and every other
    path answered and recorded."""
    settings = settings or SandboxSettings()
    calls = CallLog(capacity)
    whatsapp = WhatsAppSandbox(
        ingest_url=settings.ingest_wa_url,
        app_secret=settings.meta_app_secret.get_secret_value(),
        phone_number_id=settings.wa_phone_number_id,
        status_delay=settings.sandbox_status_delay_seconds,
    )

    social = SocialSandbox(
        ingest_url=settings.ingest_social_url, app_secret=settings.meta_app_secret.get_secret_value()
    )
    played = faults.Faults()
    whatsapp.duplicate_webhook = lambda: played.duplicate()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await whatsapp.aclose()
            await social.aclose()

    app = FastAPI(title="Suara channel sandbox", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.calls = calls
    app.state.whatsapp = whatsapp
    app.state.social = social
    app.state.faults = played
    install_error_handlers(app)
    app.include_router(ops_router({}))
    app.include_router(phone.router)
    app.include_router(faults.router)
    app.include_router(demo.router)
    app.include_router(social_page.router)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(render_page(calls.newest(PAGE_CALLS), total=len(calls)))

    @app.get("/_sandbox/healthz")
    async def sandbox_health() -> dict[str, Any]:
        return {"status": "ok", "calls": len(calls)}

    @app.get("/_sandbox/calls")
    async def list_calls(since: int = 0) -> list[dict[str, Any]]:
        return [asdict(c) for c in calls.since(since)]

    @app.delete("/_sandbox/calls", status_code=204)
    async def clear_calls() -> None:
        calls.clear()

    @app.post("/_sandbox/clear", include_in_schema=False)
    async def clear_from_page() -> RedirectResponse:
        calls.clear()
        return RedirectResponse("/", status_code=303)

    @app.api_route("/{path:path}", methods=ALL_METHODS, include_in_schema=False)
    async def platform(request: Request) -> Response:
        path = request.url.path
        if _is_own(path):
            # A sandbox path with the wrong method or a typo: say so rather than pretend to be a platform.
            status, code = (404, "not_found") if path.startswith(OWN_PREFIX) else (405, "method_not_allowed")
            raise ApiError(status, code, f"no such sandbox call: {request.method} {path}")
        raw = await request.body()
        content_type = request.headers.get("content-type")
        query = {k: ("***" if k == "access_token" else v) for k, v in request.query_params.items()}
        body = _decode_body(raw)
        if isinstance(body, str) and len(body) > MAX_RECORDED_BODY:
            body = body[:MAX_RECORDED_BODY] + "…"
        elif not isinstance(body, str | None) and len(raw) > MAX_RECORDED_BODY:
            body = raw[:MAX_RECORDED_BODY].decode(errors="replace") + "…"
        fields = _fields(body, raw, content_type, request.query_params)
        authorization = request.headers.get("authorization")
        headers: dict[str, str] = {}
        # A Graph outage switched on under /_sandbox/faults answers before any platform does.
        social_answer = played.graph_answer(request.method, path, fields) or social.answer(
            request.method, path, fields, authorization=authorization
        )
        base_url = str(request.base_url)
        wa = (
            None
            if social_answer is not None
            else whatsapp.answer(request.method, path, fields, authorization=authorization, base_url=base_url)
        )
        if social_answer is not None:
            status, response, headers = social_answer
            media_type = "application/json"
        elif wa is None:
            status, response = answer(request.method, path, fields)
            media_type = "application/json"
        else:
            status, response, media_type = wa
        if isinstance(response, bytes):
            # A media download: the bytes go to the caller; the log keeps only what they were.
            recorded: Any = f"<{len(response)} bytes of {media_type}>"
            reply: Response = Response(response, status_code=status, media_type=media_type)
        else:
            recorded = response
            reply = JSONResponse(response, status_code=status, headers=headers)
        call = calls.add(
            method=request.method,
            path=path,
            query=query,
            authorization=bool(authorization),
            auth_scheme=authorization.split(" ", 1)[0] if authorization else None,
            content_type=content_type,
            body=body,
            status=status,
            response=recorded,
        )
        log.info(
            "platform call recorded", extra={"seq": call.seq, "method": call.method, "path": path, "status": status}
        )
        return reply

    return app


# ---- the page -----------------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:70rem;padding:1rem 1.5rem;color:#1b1b1b}
h1{margin-bottom:.2rem}.sub{color:#555;margin-top:0}
.about{background:#f3f6f9;border-left:4px solid #2b6cb0;padding:.6rem 1rem;margin:1rem 0}
code{background:#eef;padding:0 .2rem}
.call{border:1px solid #ddd;border-radius:6px;margin:.7rem 0;padding:.5rem .8rem}
.head{display:flex;gap:.8rem;flex-wrap:wrap;align-items:baseline}
.m{font-weight:bold}.p{font-family:monospace}.t{color:#666;font-size:.9em}
.ok{color:#276749}.err{color:#c53030}
pre{background:#fafafa;border:1px solid #eee;padding:.4rem;overflow:auto;max-height:20rem;margin:.3rem 0}
details summary{cursor:pointer;color:#444}
"""


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def _render_call(call: Call) -> str:
    e = html.escape
    query = "?" + "&".join(f"{k}={v}" for k, v in call.query.items()) if call.query else ""
    auth = f"auth: {call.auth_scheme}" if call.authorization else "tanpa Authorization (no auth header)"
    body = f"<pre>{e(_pretty(call.body))}</pre>" if call.body is not None else "<p class=t>(tanpa body / no body)</p>"
    status_class = "ok" if call.status < 400 else "err"
    return (
        f'<div class="call"><div class="head"><span class="t">#{call.seq}</span>'
        f'<span class="m">{e(call.method)}</span><span class="p">{e(call.path + query)}</span>'
        f'<span class="{status_class}">→ {call.status}</span><span class="t">{e(call.at)}</span>'
        f'<span class="t">{e(auth)}</span><span class="t">{e(call.content_type or "")}</span></div>'
        f"{body}<details><summary>Jawaban sandbox (response)</summary>"
        f"<pre>{e(_pretty(call.response))}</pre></details></div>"
    )


def render_page(calls: list[Call], *, total: int) -> str:
    """The sandbox's page: what it is, then the recorded calls, newest first; reloads itself every 2 s."""
    listed = "".join(_render_call(c) for c in calls) or (
        "<p>Belum ada panggilan tercatat. <span class=t>(No calls recorded yet.)</span></p>"
    )
    more = (
        (
            f"<p class=t>Menampilkan {len(calls)} terbaru dari {total} (showing the newest {len(calls)} of "
            f"{total}; all are in <code>/_sandbox/calls</code>).</p>"
        )
        if total > len(calls)
        else ""
    )
    return f"""<!doctype html>
<html lang="id"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sandbox Kanal Suara</title><style>{_STYLE}</style></head>
<body>
<h1>Sandbox Kanal Suara</h1>
<p class="sub">Channel sandbox — Kabupaten Rembang</p>
<div class="about">
<h2>Apa ini? <span class="t">(What is this?)</span></h2>
<p>Sandbox ini menggantikan Graph API Meta (WhatsApp, Messenger, Instagram) dan X API di komputer ini, selama
kredensial asli belum diatur. Balasan yang dikirim Suara kepada warga sampai di sini, dijawab seperti platform
aslinya menjawab, dan dicatat di bawah ini — terbaru di atas. Halaman ini memuat ulang setiap 2 detik.</p>
<p class="t">This stands in for Meta's Graph API and the X API when no real credentials are set. Every call Suara
makes to a platform lands here, gets the answer the platform would give, and is listed below, newest first.
For tests: <code>GET /_sandbox/calls?since=&lt;n&gt;</code> lists the calls as JSON,
<code>DELETE /_sandbox/calls</code> clears them.</p>
<p><a href="/phone">📱 Ponsel warga (WhatsApp)</a> — main peran sebagai warga: ketik pesan, kirim foto atau lokasi,
lihat balasan dan centangnya. <span class="t">(Play the citizen on WhatsApp.)</span></p>
<p><a href="/social">💬 Media sosial warga (Facebook, Instagram, X)</a> — berkomentar, kirim pesan, sebut akun
Pemkab, dan lihat balasan Suara di bawahnya. <span class="t">(Play the citizen on Facebook, Instagram and X.)</span></p>
</div>
<h2>Panggilan tercatat <span class="t">(Recorded calls: {total})</span></h2>
<form method="post" action="/_sandbox/clear"><button type="submit">Hapus semua (clear)</button></form>
{more}{listed}
</body></html>
"""


def run() -> None:
    """Entry point of `python -m suara_devstack.sandbox`."""
    settings = SandboxSettings()
    serve(create_app(settings=settings), settings, service="sandbox", port=settings.port)
