"""The citizen's WhatsApp phone page (`/phone`) and the sandbox's WhatsApp control API under `/_sandbox/whatsapp/`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from suara_shared.http import ApiError

from .whatsapp import Script, WhatsAppSandbox, wa_id_of

router = APIRouter(include_in_schema=False)

#: Uploads from the phone page or tests: WhatsApp's own limit for documents is 100 MB; the sandbox keeps less.
MAX_MEDIA_BYTES = 32 * 1024 * 1024


def _wa(request: Request) -> WhatsAppSandbox:
    sandbox: WhatsAppSandbox = request.app.state.whatsapp
    return sandbox


def _number(number: str) -> str:
    wa_id = wa_id_of(number)
    if not 8 <= len(wa_id) <= 15:
        raise ApiError(422, "validation_error", "number: not a phone number")
    return wa_id


class ScriptUpdate(BaseModel):
    """What to do with the next sends to a recipient (each list is consumed one entry per send, in order)."""

    model_config = ConfigDict(extra="forbid")

    errors: list[int] = Field(default_factory=list, description="Graph error codes answered synchronously")
    failures: list[int] = Field(default_factory=list, description="codes of `failed` status webhooks")
    message_ids: list[str] = Field(default_factory=list, description="wamids given to the next accepted sends")
    statuses: bool | None = Field(default=None, description="false: post no status webhooks for this recipient")


class Place(BaseModel):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=500)


class CitizenMessage(BaseModel):
    """A message typed on the phone: text, a photo or document uploaded before (its media id), or a place."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=100)
    text: str | None = Field(default=None, max_length=4096)
    media_id: str | None = Field(default=None, max_length=40)
    location: Place | None = None
    #: Unix seconds the message claims to be from (a test of the 24-hour window); now when absent.
    timestamp: float | None = Field(default=None, gt=0)
    #: The wamid the message gets (a fault-injection run names its messages to find them); a new one when absent.
    id: str | None = Field(default=None, min_length=8, max_length=200, pattern=r"^wamid\.[A-Za-z0-9._=+/-]+$")


@router.post("/_sandbox/whatsapp/recipients/{number}/script")
async def set_script(request: Request, number: str, update: ScriptUpdate) -> dict[str, Any]:
    """Script the next sends to `number`: errors, failed statuses, wamids; lists add to what is scripted."""
    wa = _wa(request)
    wa_id = _number(number)
    script = wa.scripts.setdefault(wa_id, Script())
    script.errors += update.errors
    script.failures += update.failures
    script.message_ids += update.message_ids
    if update.statuses is not None:
        script.statuses = update.statuses
    return {"recipient": wa_id, **vars(script)}


@router.delete("/_sandbox/whatsapp/recipients/{number}/script", status_code=204)
async def clear_script(request: Request, number: str) -> None:
    _wa(request).scripts.pop(_number(number), None)


class TokenState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    valid: bool


@router.put("/_sandbox/whatsapp/token")
async def set_token(request: Request, state: TokenState) -> dict[str, bool]:
    """`{"valid": false}`: every WhatsApp call with a token is refused with error 190 until set valid again."""
    _wa(request).token_valid = state.valid
    return {"valid": state.valid}


async def read_upload(request: Request) -> tuple[bytes, str]:
    """A citizen's file uploaded to the sandbox: the body, up to MAX_MEDIA_BYTES, and its Content-Type."""
    content = bytearray()
    async for chunk in request.stream():
        content += chunk
        if len(content) > MAX_MEDIA_BYTES:
            raise ApiError(413, "payload_too_large", f"media over {MAX_MEDIA_BYTES} bytes")
    if not content:
        raise ApiError(422, "validation_error", "body: the file is empty")
    return bytes(content), (request.headers.get("content-type") or "application/octet-stream").split(";")[0].strip()


@router.post("/_sandbox/whatsapp/media", status_code=201)
async def upload_media(
    request: Request,
    filename: Annotated[str | None, Query(max_length=200)] = None,
    sha256: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    """Hold a file as WhatsApp holds a citizen's upload (the body, with its Content-Type); answers its media id.
    `sha256` overrides the digest Meta would report, to play a corrupted download."""
    content, mime = await read_upload(request)
    media = _wa(request).add_media(content, mime, filename=filename, sha256=sha256)
    return {"id": media.id, "mime_type": media.mime_type, "sha256": media.sha256, "file_size": len(media.content)}


@router.get("/_sandbox/whatsapp/media/{media_id}")
async def show_media(request: Request, media_id: str) -> Response:
    """The file itself, for the phone page (no token: this is the citizen's own copy)."""
    media = _wa(request).media.get(media_id)
    if media is None:
        raise ApiError(404, "not_found", "no such media")
    return Response(media.content, media_type=media.mime_type)


@router.get("/_sandbox/whatsapp/phones")
async def list_phones(
    request: Request,
    prefix: Annotated[str, Query(max_length=15, pattern=r"^\d*$")] = "",
    detail: bool = False,
) -> list[dict[str, Any]]:
    """The phones (newest chat first); `prefix` keeps the numbers starting so, `detail` adds each chat as
    `GET /_sandbox/whatsapp/phones/{number}` shows it (a fault-injection run counts what each citizen received)."""
    wa = _wa(request)
    phones = [p for p in wa.phones.values() if p.wa_id.startswith(prefix)]
    phones.sort(key=lambda p: p.messages[-1].at if p.messages else 0, reverse=True)
    if detail:
        return [wa.conversation(p.wa_id) for p in phones]
    return [{"wa_id": p.wa_id, "name": p.name, "messages": len(p.messages)} for p in phones]


@router.get("/_sandbox/whatsapp/phones/{number}")
async def show_phone(request: Request, number: str) -> dict[str, Any]:
    """One phone's chat with the business: every bubble with its ticks."""
    return _wa(request).conversation(_number(number))


@router.post("/_sandbox/whatsapp/phones/{number}/messages", status_code=202)
async def citizen_writes(request: Request, number: str, message: CitizenMessage) -> dict[str, Any]:
    """The citizen sends a message: it reaches ingest-wa as a signed webhook, retried until taken."""
    wa = _wa(request)
    if message.media_id is not None and message.media_id not in wa.media:
        raise ApiError(422, "validation_error", "media_id: upload the file first (POST /_sandbox/whatsapp/media)")
    if not (message.text and message.text.strip()) and message.media_id is None and message.location is None:
        raise ApiError(422, "validation_error", "text: type a message, or send a photo or a place")
    sent = wa.citizen_writes(
        _number(number),
        name=message.name,
        text=message.text,
        media_id=message.media_id,
        location=message.location.model_dump(exclude_none=True) if message.location else None,
        timestamp=message.timestamp,
        message_id=message.id,
    )
    return {"id": sent.id, "status": sent.status}


@router.get("/_sandbox/whatsapp/webhooks")
async def list_webhooks(request: Request) -> list[dict[str, Any]]:
    """Every webhook the sandbox posted to ingest-wa, oldest first, with ingest-wa's last answer."""
    return list(_wa(request).webhooks)


@router.get("/_sandbox/whatsapp/webhooks/stats")
async def webhook_stats(request: Request) -> dict[str, Any]:
    """ingest-wa's answers over every attempt (`{"200": n, "503": m, "TimeoutError": k}`), the webhooks posted
    twice, those abandoned, and `in_hand`: webhooks and statuses still to be posted (0 once the sandbox is quiet)."""
    return _wa(request).webhook_stats()


@router.get("/phone", response_class=HTMLResponse)
async def phone_page() -> HTMLResponse:
    return HTMLResponse(PHONE_PAGE)


PHONE_PAGE = """<!doctype html>
<html lang="id"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ponsel warga — Sandbox WhatsApp Suara</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#e5ddd5;color:#111}
header{background:#075e54;color:#fff;padding:.6rem 1rem;display:flex;gap:1rem;align-items:center;flex-wrap:wrap}
header h1{font-size:1.1rem;margin:0}header a{color:#dcf8c6}
.who{display:flex;gap:.4rem;flex-wrap:wrap;align-items:center}
.who input{padding:.3rem;border-radius:4px;border:0;width:11rem}
main{max-width:46rem;margin:0 auto;padding:1rem 1rem 7rem}
.b{max-width:80%;margin:.35rem 0;padding:.4rem .6rem;border-radius:8px;box-shadow:0 1px 1px rgba(0,0,0,.15);
   white-space:pre-wrap;word-wrap:break-word;position:relative}
.in{background:#dcf8c6;margin-left:auto}.out{background:#fff;margin-right:auto}
.meta{font-size:.72rem;color:#667;text-align:right;margin-top:.2rem}
.tick{font-weight:bold;letter-spacing:-.2em;margin-left:.3rem}.blue{color:#34b7f1}.red{color:#c53030}
.q{font-size:.78rem;color:#555;border-left:3px solid #25d366;padding-left:.4rem;margin-bottom:.2rem}
.tpl{font-size:.72rem;color:#075e54;font-weight:bold}
img.m{max-width:14rem;border-radius:6px;display:block}
form.send{position:fixed;bottom:0;left:0;right:0;background:#f0f0f0;padding:.5rem;display:flex;gap:.4rem;
   flex-wrap:wrap;justify-content:center}
form.send textarea{flex:1 1 20rem;max-width:32rem;height:2.6rem;padding:.4rem;border-radius:6px;border:1px solid #ccc}
button{background:#25d366;border:0;color:#fff;padding:.5rem .9rem;border-radius:6px;cursor:pointer}
.hint{font-size:.8rem;color:#444;background:#fff8;padding:.4rem .6rem;border-radius:6px}
.err{color:#c53030;font-size:.85rem}
</style></head><body>
<header><h1>📱 Ponsel warga</h1>
<div class="who"><label>Nomor <input id="number" value="0812-3456-7890"></label>
<label>Nama <input id="name" value="Siti Aminah"></label></div>
<a href="/">← catatan panggilan sandbox</a></header>
<main>
<p class="hint">Anda berperan sebagai warga di WhatsApp. Pesan Anda dikirim ke Suara (ingest-wa) sebagai webhook
bertanda tangan, persis seperti dari Meta. Centang pesan Anda: 🕓 menunggu, ✓✓ diterima Suara, ✓✓ biru dibaca petugas.
Balasan Suara muncul di kiri dengan status yang dilaporkan sandbox (✓ terkirim, ✓✓ sampai, ✓✓ biru dibaca).
<br><span style="color:#666">You play a citizen on WhatsApp; your messages reach Suara as signed webhooks.</span></p>
<div id="chat"></div><div id="error" class="err"></div>
</main>
<form class="send" id="form">
<textarea id="text" placeholder="Ketik pesan, mis. Jalan di Desa Tireman berlubang besar"></textarea>
<input type="file" id="file" accept="image/*,application/pdf" title="Foto atau dokumen">
<button type="button" id="place" title="Kirim lokasi Alun-alun Rembang">📍</button>
<button type="submit">Kirim</button>
</form>
<script>
const $ = (id) => document.getElementById(id);
const saved = JSON.parse(localStorage.getItem("suara-phone") || "{}");
if (saved.number) $("number").value = saved.number;
if (saved.name) $("name").value = saved.name;
function remember() {
  localStorage.setItem("suara-phone", JSON.stringify({number: $("number").value, name: $("name").value}));
}
function ticks(m) {
  const s = m.status;
  if (m.direction === "in") {
    if (s === "pending") return '<span class="tick">🕓</span>';
    if (s === "refused") return '<span class="tick red">!</span>';
    return '<span class="tick' + (s === "read" ? " blue" : "") + '">✓✓</span>';
  }
  if (s === "failed") return '<span class="tick red">✗ gagal ' + (m.error || "") + "</span>";
  if (s === "accepted") return '<span class="tick">🕓</span>';
  if (s === "sent") return '<span class="tick">✓</span>';
  return '<span class="tick' + (s === "read" ? " blue" : "") + '">✓✓</span>';
}
function bubble(m, byId) {
  const div = document.createElement("div");
  div.className = "b " + m.direction;
  if (m.quoted && byId[m.quoted]) {
    const q = document.createElement("div"); q.className = "q";
    q.textContent = (byId[m.quoted].text || "[" + byId[m.quoted].kind + "]").slice(0, 120);
    div.appendChild(q);
  }
  if (m.kind === "template") {
    const t = document.createElement("div"); t.className = "tpl";
    t.textContent = "Template (di luar jendela 24 jam)"; div.appendChild(t);
  }
  if (m.media_id && m.kind === "image") {
    const img = document.createElement("img"); img.className = "m";
    img.src = "/_sandbox/whatsapp/media/" + m.media_id; div.appendChild(img);
  }
  const body = document.createElement("div");
  body.textContent = m.text || (m.kind === "image" ? "" : "[" + m.kind + "]");
  div.appendChild(body);
  const meta = document.createElement("div"); meta.className = "meta";
  meta.innerHTML = new Date(m.at * 1000).toLocaleTimeString("id-ID") + " " + ticks(m);
  div.appendChild(meta);
  return div;
}
async function refresh() {
  const number = encodeURIComponent($("number").value);
  try {
    const r = await fetch("/_sandbox/whatsapp/phones/" + number);
    if (!r.ok) return;
    const data = await r.json();
    const byId = {};
    data.messages.forEach((m) => (byId[m.id] = m));
    const chat = $("chat");
    const atBottom = window.innerHeight + window.scrollY >= document.body.offsetHeight - 40;
    chat.replaceChildren(...data.messages.map((m) => bubble(m, byId)));
    if (atBottom) window.scrollTo(0, document.body.scrollHeight);
  } catch (e) { /* the sandbox restarts with make run; try again next tick */ }
}
async function send(message) {
  remember();
  $("error").textContent = "";
  const r = await fetch("/_sandbox/whatsapp/phones/" + encodeURIComponent($("number").value) + "/messages", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({name: $("name").value, ...message}),
  });
  if (!r.ok) $("error").textContent = (await r.json()).message || "gagal mengirim";
  refresh();
}
$("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  const file = $("file").files[0];
  if (file) {
    const up = await fetch("/_sandbox/whatsapp/media?filename=" + encodeURIComponent(file.name), {
      method: "POST", headers: {"Content-Type": file.type || "application/octet-stream"}, body: file,
    });
    if (!up.ok) { $("error").textContent = "unggah gagal"; return; }
    await send({media_id: (await up.json()).id, text: text || null});
    $("file").value = "";
  } else if (text) {
    await send({text});
  }
  $("text").value = "";
});
$("text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("form").requestSubmit(); }
});
$("place").addEventListener("click", () =>
  send({location: {latitude: -6.7079, longitude: 111.3416, name: "Alun-alun Rembang"}}));
$("number").addEventListener("change", () => { remember(); refresh(); });
refresh();
setInterval(refresh, 1000);
</script></body></html>
"""
