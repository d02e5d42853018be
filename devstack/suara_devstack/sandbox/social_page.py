"""The citizen's social page (`/social`: comment on the Page's post, message the Page or the Instagram account,
mention or message the X account, and see Suara's replies under each) and its API under `/_sandbox/social/`."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from suara_shared.http import ApiError

from .phone import MAX_MEDIA_BYTES, read_upload
from .social import CDN_PATH, CdnFile, Post, ScriptedError, SocialSandbox

router = APIRouter(include_in_schema=False)

Action = Literal[
    "facebook_comment", "facebook_message", "instagram_comment", "instagram_message", "x_mention", "x_message"
]


def _social(request: Request) -> SocialSandbox:
    sandbox: SocialSandbox = request.app.state.social
    return sandbox


class CitizenPost(BaseModel):
    """What a citizen writes: their name (Instagram and X: their username) and the text; in a Messenger or Instagram
    message, a file uploaded before (`file_id`, from `POST /_sandbox/social/media`) with or without text."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    text: str = Field(default="", max_length=4000)
    #: X only: the post this one replies under (a mention thread).
    in_reply_to: str | None = Field(default=None, max_length=30)
    file_id: str | None = Field(default=None, max_length=30)

    @model_validator(mode="after")
    def _something(self) -> CitizenPost:
        if not self.text.strip() and self.file_id is None:
            raise ValueError("text: write something, or send a file")
        return self


def _act(sandbox: SocialSandbox, action: Action, body: CitizenPost, *, base_url: str) -> Post:
    file: tuple[str, str] | None = None
    if body.file_id is not None:
        found = sandbox.files.get(body.file_id)
        if found is None or action not in ("facebook_message", "instagram_message"):
            raise ApiError(422, "validation_error", "file_id: upload the file first; only direct messages carry one")
        file = sandbox.file_link(found, base_url)
    actions: dict[str, Callable[[], Post]] = {
        "facebook_comment": lambda: sandbox.facebook_comment(name=body.name, text=body.text),
        "facebook_message": lambda: sandbox.facebook_message(name=body.name, text=body.text, file=file),
        "instagram_comment": lambda: sandbox.instagram_comment(username=body.name, text=body.text),
        "instagram_message": lambda: sandbox.instagram_message(username=body.name, text=body.text, file=file),
        "x_mention": lambda: sandbox.x_mention(name=body.name, text=body.text, in_reply_to=body.in_reply_to),
        "x_message": lambda: sandbox.x_message(name=body.name, text=body.text),
    }
    return actions[action]()


class CommentEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4000)


def _file(file: CdnFile) -> dict[str, Any]:
    return {"id": file.id, "mime_type": file.mime_type, "size": len(file.content), "downloads": file.downloads}


@router.post("/_sandbox/social/media", status_code=201)
async def upload_file(request: Request) -> dict[str, Any]:
    """Hold a file a citizen is about to send on Messenger or Instagram (the body, with its Content-Type); answers its
    id, to name as `file_id` in the message, and the attachment type and link its webhook will carry."""
    content, mime = await read_upload(request)
    sandbox = _social(request)
    file = sandbox.add_file(content, mime)
    kind, link = sandbox.file_link(file, str(request.base_url))
    return {**_file(file), "type": kind, "link": link}


@router.get("/_sandbox/social/media/{file_id}")
async def file_state(request: Request, file_id: str) -> dict[str, Any]:
    """The file and how many times its link was downloaded."""
    file = _social(request).files.get(file_id)
    if file is None:
        raise ApiError(404, "not_found", f"no file {file_id} in the sandbox")
    return _file(file)


@router.delete("/_sandbox/social/media/{file_id}")
async def expire_file(request: Request, file_id: str) -> dict[str, Any]:
    """The file's CDN link expires now: Meta's CDN answers 403 to it from then on."""
    file = _social(request).expire_file(file_id)
    if file is None:
        raise ApiError(404, "not_found", f"no file {file_id} in the sandbox")
    return _file(file)


@router.get(CDN_PATH + "{name}")
async def cdn(request: Request, name: str, oh: str = "", oe: str = "") -> Response:
    """A citizen's file by its signed link, as scontent.xx.fbcdn.net serves it (no token)."""
    status, content, mime = _social(request).download(name, oh=oh, oe=oe)
    return Response(content, status_code=status, media_type=mime)


@router.put("/_sandbox/social/comments/{comment_id}")
async def edit_comment(request: Request, comment_id: str, body: CommentEdit) -> dict[str, Any]:
    """The citizen edits their Facebook comment: Meta posts the `feed` change with the verb `edited`."""
    return _changed(_social(request).change_comment(comment_id, text=body.text), comment_id)


@router.delete("/_sandbox/social/comments/{comment_id}")
async def remove_comment(request: Request, comment_id: str) -> dict[str, Any]:
    """The citizen removes their Facebook comment: Meta posts the `feed` change with the verb `remove`."""
    return _changed(_social(request).change_comment(comment_id, text=None), comment_id)


def _changed(post: Post | None, comment_id: str) -> dict[str, Any]:
    if post is None:
        raise ApiError(404, "not_found", f"no Facebook comment {comment_id} in the sandbox")
    return {"id": post.id, "thread": post.thread, "text": post.text}


class ErrorScript(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api: Literal["graph", "x_mentions", "x_dm_events", "x_tweets", "x_dms"]
    errors: list[ScriptedErrorIn]


class ScriptedErrorIn(BaseModel):
    status: int = Field(ge=400, le=599)
    code: int | None = None
    reset_in: float | None = None


ErrorScript.model_rebuild()


@router.post("/_sandbox/social/script")
async def script_errors(request: Request, script: ErrorScript) -> dict[str, Any]:
    """The next calls to one API are answered with these errors, in order (e.g. X 429 with a reset time)."""
    queue = _social(request).errors.setdefault(script.api, [])
    queue += [ScriptedError(status=e.status, code=e.code, reset_in=e.reset_in) for e in script.errors]
    return {"api": script.api, "pending": len(queue)}


class TokenSwitch(BaseModel):
    """`{"platform": "facebook", "valid": false}`: the platform refuses the token until set valid again (Graph
    error 190; X answers `status`, 401 or 403, to user-context calls)."""

    model_config = ConfigDict(extra="forbid")

    platform: Literal["facebook", "instagram", "x"]
    valid: bool
    status: Literal[401, 403] = 401


@router.put("/_sandbox/social/token")
async def set_token(request: Request, switch: TokenSwitch) -> dict[str, Any]:
    sandbox = _social(request)
    sandbox.tokens_valid[switch.platform] = switch.valid
    if switch.platform == "x":
        sandbox.x_refusal_status = switch.status
    return {"platform": switch.platform, "valid": switch.valid}


@router.post("/_sandbox/x/{api}/pages", status_code=201)
async def queue_page(request: Request, api: Literal["mentions", "dm_events"], page: dict[str, Any]) -> dict[str, Any]:
    """Answer the next poll of X's mentions or DM events with this body as it is (e.g. a sample response)."""
    queue = _social(request).pages.setdefault(f"x_{api}", [])
    queue.append(page)
    return {"api": api, "pending": len(queue)}


@router.get("/_sandbox/social/timeline")
async def timeline(request: Request) -> list[dict[str, Any]]:
    """Everything citizens wrote and Suara answered, oldest first."""
    return _social(request).timeline()


@router.post("/_sandbox/social/form")
async def from_form(request: Request) -> RedirectResponse:
    """The page's forms (plain HTML, no script): act, then show the page again."""
    sandbox = _social(request)
    async with request.form() as form:
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        photo = form.get("photo")
        file_id = None
        if photo is not None and not isinstance(photo, str) and photo.filename:
            content = await photo.read(MAX_MEDIA_BYTES + 1)
            if len(content) > MAX_MEDIA_BYTES:
                raise ApiError(413, "payload_too_large", f"photo over {MAX_MEDIA_BYTES} bytes")
            file_id = sandbox.add_file(content, photo.content_type or "image/jpeg").id
    action = fields.get("action", "")
    if action not in Action.__args__:  # type: ignore[attr-defined]
        raise ApiError(422, "validation_error", "action: unknown")
    try:
        body = CitizenPost(name=fields.get("name", ""), text=fields.get("text", ""), file_id=file_id)
    except ValueError:
        raise ApiError(422, "validation_error", "name and text (or a photo) are required") from None
    _act(sandbox, action, body, base_url=str(request.base_url))  # type: ignore[arg-type]
    return RedirectResponse("/social", status_code=303)


#: The citizen's posts that may carry a photo (Messenger and Instagram direct messages).
_WITH_FILES = frozenset({"facebook_message", "instagram_message"})
_FORMS = (
    ("facebook_comment", "Facebook: komentar di kiriman Pemkab (comment on the Page's post)", "Nama"),
    ("facebook_message", "Facebook Messenger: pesan ke Page (DM)", "Nama"),
    ("instagram_comment", "Instagram: komentar di kiriman (comment)", "Username"),
    ("instagram_message", "Instagram: pesan langsung (DM)", "Username"),
    ("x_mention", f"X: sebut @{'rembangkab'} (mention)", "Nama"),
    ("x_message", "X: pesan langsung (DM)", "Nama"),
)

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem 1.5rem;color:#1b1b1b}
form{border:1px solid #ddd;border-radius:6px;padding:.5rem .8rem;margin:.5rem 0;display:flex;gap:.5rem;flex-wrap:wrap}
form b{width:100%}input[name=text]{flex:1;min-width:16rem}
.post{border-left:4px solid #2b6cb0;margin:.6rem 0;padding:.3rem .8rem;background:#f7fafc}
.reply{margin:.3rem 0 .3rem 2rem;border-left:4px solid #38a169;padding:.3rem .8rem;background:#f0fff4}
.t{color:#666;font-size:.85em}
"""


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S UTC")


def render(sandbox: SocialSandbox) -> str:
    """Forms to play the citizen, then each citizen's post with Suara's replies under it, newest first."""
    e = html.escape
    forms = "".join(
        f'<form method="post" action="/_sandbox/social/form" data-action="{a}"'
        + (' enctype="multipart/form-data"' if a in _WITH_FILES else "")
        + f'><b>{e(label)}</b><input type="hidden" name="action" value="{a}">'
        f'<input name="name" placeholder="{who}" required maxlength="100">'
        + (
            '<input name="text" placeholder="Tulis di sini… (atau kirim foto saja)" maxlength="4000">'
            '<input type="file" name="photo" accept="image/*" aria-label="Foto">'
            if a in _WITH_FILES
            else '<input name="text" placeholder="Tulis di sini…" required maxlength="4000">'
        )
        + '<button type="submit">Kirim</button></form>'
        for a, label, who in _FORMS
    )
    replies: dict[str, list[Post]] = {}
    for post in sandbox.posts:
        if post.direction == "out" and post.target:
            replies.setdefault(post.target, []).append(post)
    items = []
    for post in reversed([p for p in sandbox.posts if p.direction == "in"]):
        under = "".join(
            f'<div class="reply" data-path="{e(r.path)}"><span class="t">Suara · {e(r.path)} · {_when(r.at)}</span>'
            f"<div>{e(r.text)}</div></div>"
            for r in replies.get(post.id, []) + (replies.get(post.id[3:], []) if post.id.startswith("dm:") else [])
        )
        items.append(
            f'<div class="post" data-id="{e(post.id)}"><span class="t">{e(post.channel)} · {e(post.path)} · '
            f"{e(post.author)} · {_when(post.at)}</span><div>{e(post.text)}</div>{under}</div>"
        )
    listed = "".join(items) or "<p>Belum ada kiriman. <span class=t>(Nothing posted yet.)</span></p>"
    return f"""<!doctype html>
<html lang="id"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Media sosial warga — Sandbox Suara</title><style>{_STYLE}</style></head>
<body><h1>Media sosial warga</h1>
<p class="t">Main peran sebagai warga di Facebook, Instagram dan X. Kiriman menjadi webhook bertanda tangan ke
ingest-social (X: dibaca oleh poller); balasan Suara muncul di bawah kiriman yang dibalas. Muat ulang untuk melihat
balasan baru. (Play the citizen on Facebook, Instagram and X; reload to see Suara's replies.)</p>
<p><a href="/social">↻ Muat ulang</a> · <a href="/">Panggilan API (API calls)</a></p>
{forms}<h2>Kiriman dan balasan</h2>{listed}</body></html>"""


@router.get("/social", response_class=HTMLResponse)
async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(render(_social(request)))


# Last: the literal paths above (script, timeline, form) must win over this one.
@router.post("/_sandbox/social/{action}", status_code=201)
async def citizen_posts(request: Request, action: Action, body: CitizenPost) -> dict[str, Any]:
    """A citizen comments, writes or mentions; answers the platform's id of it and its thread."""
    post = _act(_social(request), action, body, base_url=str(request.base_url))
    return {"id": post.id, "thread": post.thread, "channel": post.channel, "path": post.path}
