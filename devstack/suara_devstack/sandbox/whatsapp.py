"""The sandbox's WhatsApp Cloud API: sends, read receipts, media (metadata and download), the citizens' phones
that post signed webhooks to ingest-wa, the statuses of what it "delivers", and errors scripted per recipient."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from suara_shared.identity import normalize_phone

from .webhooks import WebhookPoster

log = logging.getLogger(__name__)

#: The business number the sandbox plays (channels.md's sample id; a Rembang-looking display number).
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_PHONE_NUMBER = "622959690001"
WABA_ID = "102290129340398"
#: Media URLs live 5 minutes, as Meta's do (channels.md §1.8).
MEDIA_URL_SECONDS = 300
MEDIA_PATH = "/whatsapp_business/attachments/"
#: A webhook ingest-wa does not take is retried this many times, backing off up to 30 s between tries.
WEBHOOK_ATTEMPTS = 20
#: Webhooks the sandbox posts to ingest-wa at once.
WEBHOOKS_IN_FLIGHT = 32
#: The window in which WhatsApp lets a business answer freely (channels.md §1.7).
WINDOW_SECONDS = 24 * 3600

#: Meta's errors as the Cloud API answers them (samples/wa_error_*.json): HTTP status, message, details, subcode.
ERRORS: dict[int, tuple[int, str, str | None, int | None]] = {
    130429: (429, "(#130429) Rate limit hit", "Cloud API message throughput has been reached.", None),
    131056: (
        429,
        "(#131056) (Business Account, Consumer Account) pair rate limit hit",
        "Message failed to send because there were too many messages sent from this phone number to the same "
        "phone number in a short period of time.",
        None,
    ),
    131026: (400, "(#131026) Message Undeliverable", "Message Undeliverable.", None),
    131047: (
        400,
        "(#131047) Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        None,
    ),
    131000: (500, "(#131000) Something went wrong", "Unknown error. Please retry the request.", None),
    132001: (400, "(#132001) Template name does not exist in the translation", "template name does not exist", None),
    190: (
        401,
        "Error validating access token: Session has expired on Monday, 03-Jun-24 10:00:00 PDT.",
        None,
        463,
    ),
}

Answer = tuple[int, Any, str]  # status, body (JSON-able or bytes), content type
NO_TOKEN = "An access token is required to request this resource."  # noqa: S105 - a message


def graph_error(code: int, *, message: str | None = None) -> tuple[int, dict[str, Any]]:
    """A Graph error answer shaped like Meta's, for a known code (others get a generic 400)."""
    status, default_message, details, subcode = ERRORS.get(code, (400, f"(#{code}) Error", None, None))
    error: dict[str, Any] = {"message": message or default_message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = "Sb" + secrets.token_urlsafe(12)
    return status, {"error": error}


def _error(code: int, message: str | None = None) -> Answer:
    status, body = graph_error(code, message=message)
    return status, body, "application/json"


def status_error(code: int) -> dict[str, Any]:
    """One entry of a failed status's `errors[]` (samples/wa_webhook_status_failed_131047.json)."""
    _, message, details, _ = ERRORS.get(code, (400, f"(#{code}) Error", None, None))
    title = message.split(") ", 1)[-1]
    entry: dict[str, Any] = {"code": code, "title": title, "message": title}
    if details:
        entry["error_data"] = {"details": details}
    entry["href"] = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
    return entry


def new_wamid() -> str:
    return "wamid." + base64.b64encode(secrets.token_bytes(30)).decode()


def wa_id_of(number: str) -> str:
    """`0812-3456-7890`, `+62 812…` or `62812…` as the WhatsApp id `62812…` (digits, country code first)."""
    e164 = normalize_phone(number)
    digits = (e164 or number).lstrip("+")
    return "".join(ch for ch in digits if ch.isdigit())


@dataclass
class Script:
    """What the sandbox does with the next sends to one recipient, set by tests through `/_sandbox/whatsapp/…`."""

    #: Each send takes the next code and is refused with that Graph error (synchronous, as an HTTP error).
    errors: list[int] = field(default_factory=list)
    #: Each accepted send takes the next code and gets a `failed` status webhook with it (asynchronous).
    failures: list[int] = field(default_factory=list)
    #: Each accepted send takes the next id as its wamid (so a sample's statuses can name it).
    message_ids: list[str] = field(default_factory=list)
    #: False: no status webhooks at all for this recipient (a test posts its own).
    statuses: bool = True


@dataclass
class Media:
    id: str
    content: bytes
    mime_type: str
    sha256: str
    filename: str | None = None


@dataclass
class ChatMessage:
    """One bubble on a phone: the citizen's (`in`) or the business's (`out`)."""

    id: str
    direction: str
    kind: str
    text: str | None
    at: float
    #: in: pending → delivered (ingest-wa took it) → read (the business marked it read); or refused.
    #: out: accepted → sent → delivered → read, or failed.
    status: str
    error: str | None = None
    media_id: str | None = None
    quoted: str | None = None


@dataclass
class Phone:
    wa_id: str
    name: str
    messages: list[ChatMessage] = field(default_factory=list)
    last_inbound: float | None = None

    def find(self, message_id: str) -> ChatMessage | None:
        return next((m for m in self.messages if m.id == message_id), None)


_STATUS_RANK = {"accepted": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}


class WhatsAppSandbox:
    """The state behind the stand-in. Background work (webhook posts) runs as tasks owned by this object."""

    def __init__(
        self,
        *,
        ingest_url: str | None,
        app_secret: str,
        phone_number_id: str = PHONE_NUMBER_ID,
        status_delay: float = 0.5,
    ) -> None:
        self.ingest_url = ingest_url.rstrip("/") + "/webhooks/whatsapp" if ingest_url else None
        self.app_secret = app_secret
        self.phone_number_id = phone_number_id
        self.status_delay = status_delay
        self.phones: dict[str, Phone] = {}
        self.media: dict[str, Media] = {}
        self.scripts: dict[str, Script] = {}
        #: False: every call with a token is refused with error 190, as after the token expired or was revoked.
        self.token_valid = True
        #: Every webhook posted (or being posted), newest last: what, to whom, and how ingest-wa answered.
        self.webhooks: list[dict[str, Any]] = []
        #: Webhooks posted a second time after ingest-wa took them (the fault `duplicate_webhook` chooses which),
        #: by what they carried ("message", "status"); and webhooks abandoned after every attempt.
        self.duplicates: Counter[str] = Counter()
        self.abandoned = 0
        #: Asked after each webhook ingest-wa took: True posts it once more, as Meta sometimes delivers twice.
        self.duplicate_webhook: Callable[[], bool] = lambda: False
        self._tasks: set[asyncio.Task[None]] = set()
        #: Webhooks in flight at once, as Meta delivers them: a bounded number of connections (thousands of posts
        #: queued inside an HTTP client's pool cost it time quadratic in their number: a bench's statuses, say).
        self._poster = WebhookPoster(app_secret=app_secret, attempts=WEBHOOK_ATTEMPTS, in_flight=WEBHOOKS_IN_FLIGHT)
        self._url_key = secrets.token_bytes(16)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self._poster.aclose()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def phone(self, wa_id: str, name: str | None = None) -> Phone:
        phone = self.phones.get(wa_id)
        if phone is None:
            phone = self.phones[wa_id] = Phone(wa_id=wa_id, name=name or f"Warga {wa_id[-4:]}")
        elif name:
            phone.name = name
        return phone

    # --- the Cloud API ---------------------------------------------------------------------------------------

    def answer(
        self, method: str, path: str, fields: Mapping[str, Any], *, authorization: str | None, base_url: str
    ) -> Answer | None:
        """Answer a call if it is the Cloud API's; None for anything else (other channels' calls)."""
        parts = [p for p in path.split("/") if p]
        if parts and parts[0].startswith("v") and parts[0][1:2].isdigit():
            parts = parts[1:]
        if path == MEDIA_PATH and method == "GET":
            return self._download(fields, authorization)
        if (
            not self.token_valid
            and _bearer(authorization)
            and (parts and (parts[-1] == "messages" or parts[0] in self.media))
        ):
            return _error(190)
        if (
            method == "POST"
            and len(parts) == 2
            and parts[1] == "messages"
            and fields.get("messaging_product") == ("whatsapp")
        ):
            return self._messages(fields) if _bearer(authorization) else _error(190, NO_TOKEN)
        if len(parts) == 1 and parts[0] in self.media and method in ("GET", "DELETE"):
            if not _bearer(authorization):
                return _error(190, NO_TOKEN)
            if method == "DELETE":
                del self.media[parts[0]]
                return 200, {"success": True}, "application/json"
            return self._media_metadata(self.media[parts[0]], base_url)
        # A media id the sandbox never held (or deleted), asked for as WhatsApp media is (other ids fall through).
        if len(parts) == 1 and parts[0].isdigit() and method == "GET" and fields.get("phone_number_id"):
            return _error(100, f"Unsupported get request. Object with ID '{parts[0]}' does not exist")
        return None

    def _messages(self, fields: Mapping[str, Any]) -> Answer:
        if fields.get("status") == "read":
            return self._mark_read(str(fields.get("message_id") or ""))
        to = wa_id_of(str(fields.get("to") or ""))
        kind = str(fields.get("type") or "text")
        script = self.scripts.get(to)
        if script is not None and script.errors:
            return _error(script.errors.pop(0))
        if kind == "text":
            text_obj = fields.get("text")
            body_text = text_obj.get("body") if isinstance(text_obj, dict) else None
            if not isinstance(body_text, str) or not body_text:
                return _error(100, "(#100) The parameter text['body'] is required.")
            if len(body_text) > 4096:
                return _error(100, "(#100) Param text['body'] must be at most 4096 characters")
            text: str | None = body_text
        elif kind == "template":
            template = fields.get("template")
            text = _template_text(template) if isinstance(template, dict) else None
            if text is None:
                return _error(132001)
        else:
            text = f"[{kind}]"
        wamid = script.message_ids.pop(0) if script is not None and script.message_ids else new_wamid()
        context = fields.get("context")
        quoted = context.get("message_id") if isinstance(context, dict) else None
        phone = self.phone(to)
        message = ChatMessage(
            id=wamid, direction="out", kind=kind, text=text, at=time.time(), status="accepted", quoted=quoted
        )
        phone.messages.append(message)
        if script is None or script.statuses:
            failure = script.failures.pop(0) if script is not None and script.failures else None
            self._spawn(self._deliver(phone, message, failure))
        return (
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": str(fields.get("to") or ""), "wa_id": to}],
                "messages": [{"id": wamid}],
            },
            "application/json",
        )

    def _mark_read(self, message_id: str) -> Answer:
        for phone in self.phones.values():
            target = phone.find(message_id)
            if target is not None and target.direction == "in":
                # WhatsApp marks the message and every earlier one of the chat read.
                for message in phone.messages:
                    if message.direction == "in" and message.at <= target.at and message.status == "delivered":
                        message.status = "read"
                break
        return 200, {"success": True}, "application/json"

    def _media_metadata(self, media: Media, base_url: str) -> Answer:
        expires = int(time.time()) + MEDIA_URL_SECONDS
        query = f"mid={media.id}&ext={expires}&hash={self._url_hash(media.id, expires)}"
        url = f"{base_url.rstrip('/')}{MEDIA_PATH}?{query}"
        return (
            200,
            {
                "messaging_product": "whatsapp",
                "url": url,
                "mime_type": media.mime_type,
                "sha256": media.sha256,
                "file_size": str(len(media.content)),
                "id": media.id,
            },
            "application/json",
        )

    def _url_hash(self, media_id: str, expires: int) -> str:
        return hmac.new(self._url_key, f"{media_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:20]

    def _download(self, fields: Mapping[str, Any], authorization: str | None) -> Answer:
        media_id, expires_text, given = (str(fields.get(k) or "") for k in ("mid", "ext", "hash"))
        expires = int(expires_text) if expires_text.isdigit() else 0
        if not _bearer(authorization):
            return _error(190, NO_TOKEN)  # Meta's media host wants the API's bearer token too (channels.md §1.8)
        if not self.token_valid:
            return _error(190)
        media = self.media.get(media_id)
        valid = hmac.compare_digest(given, self._url_hash(media_id, expires)) and expires >= time.time()
        if media is None or not valid:
            return 404, {"error": {"message": "URL expired or unknown media", "code": 404}}, "application/json"
        return 200, media.content, media.mime_type

    def add_media(
        self, content: bytes, mime_type: str, *, filename: str | None = None, sha256: str | None = None
    ) -> Media:
        """Store a file as WhatsApp holds a citizen's upload; `sha256` overrides the real digest (tests of a
        corrupted download)."""
        media_id = str(secrets.randbelow(9 * 10**15) + 10**15)
        digest = sha256 or base64.b64encode(hashlib.sha256(content).digest()).decode()
        media = Media(id=media_id, content=content, mime_type=mime_type, sha256=digest, filename=filename)
        self.media[media_id] = media
        return media

    # --- webhooks to ingest-wa -------------------------------------------------------------------------------

    def envelope(self, value: dict[str, Any]) -> dict[str, Any]:
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": WABA_ID,
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": DISPLAY_PHONE_NUMBER,
                                    "phone_number_id": self.phone_number_id,
                                },
                                **value,
                            },
                            "field": "messages",
                        }
                    ],
                }
            ],
        }

    def citizen_writes(
        self,
        wa_id: str,
        *,
        name: str | None = None,
        text: str | None = None,
        media_id: str | None = None,
        location: Mapping[str, Any] | None = None,
        timestamp: float | None = None,
        message_id: str | None = None,
    ) -> ChatMessage:
        """A citizen sends a message from their phone: it goes to ingest-wa as a signed webhook (retried until
        ingest-wa takes it, as Meta does), and its ticks follow what happens to it. `message_id` is the wamid it
        gets (a new one when absent)."""
        phone = self.phone(wa_id, name)
        at = timestamp if timestamp is not None else time.time()
        message: dict[str, Any] = {"from": wa_id, "id": message_id or new_wamid(), "timestamp": str(int(at))}
        media = self.media.get(media_id) if media_id else None
        if media is not None:
            kind = "document" if media.filename and not media.mime_type.startswith("image/") else "image"
            body: dict[str, Any] = {"mime_type": media.mime_type, "sha256": media.sha256, "id": media.id}
            if text:
                body["caption"] = text
            if kind == "document" and media.filename:
                body["filename"] = media.filename
            message.update({"type": kind, kind: body})
        elif location is not None:
            kind = "location"
            message.update({"type": kind, kind: dict(location)})
        else:
            kind = "text"
            message.update({"type": kind, "text": {"body": text or ""}})
        shown = text if kind != "location" else f"📍 {location.get('name') or ''}".strip() if location else None
        chat = ChatMessage(
            id=message["id"], direction="in", kind=kind, text=shown, at=at, status="pending", media_id=media_id
        )
        phone.messages.append(chat)
        phone.last_inbound = max(phone.last_inbound or 0, at)
        contacts = [{"profile": {"name": phone.name}, "wa_id": wa_id}]
        payload = self.envelope({"contacts": contacts, "messages": [message]})
        self._spawn(self._post_inbound(chat, payload))
        return chat

    async def _post_inbound(self, chat: ChatMessage, payload: dict[str, Any]) -> None:
        chat.status = "delivered" if await self.post_webhook(payload, what=f"message {chat.kind}") else "refused"

    async def _deliver(self, phone: Phone, message: ChatMessage, failure: int | None) -> None:
        """What the phone network does with an accepted message: statuses sent, delivered, read (or failed)."""
        steps = ["failed"] if failure is not None else ["sent", "delivered", "read"]
        for index, step in enumerate(steps):
            if index:
                await asyncio.sleep(self.status_delay)
            status: dict[str, Any] = {
                "id": message.id,
                "status": step,
                "timestamp": str(int(time.time())),
                "recipient_id": phone.wa_id,
            }
            if failure is not None:
                status["errors"] = [status_error(failure)]
                message.error = str(failure)
            if _STATUS_RANK[step] > _STATUS_RANK[message.status]:
                message.status = step
            await self.post_webhook(self.envelope({"statuses": [status]}), what=f"status {step}")

    async def post_webhook(self, payload: dict[str, Any], *, what: str) -> bool:
        """Sign and post one webhook; retry with backoff until ingest-wa answers 200. False if it never did."""
        record: dict[str, Any] = {"what": what, "at": time.time(), "attempts": 0, "status": None}
        self.webhooks.append(record)
        del self.webhooks[:-500]
        if self.ingest_url is None:
            record["status"] = "no INGEST_WA_URL"
            return False
        # Compact and \\uXXXX-escaped, exactly the bytes Meta would sign and send.
        body = json.dumps(payload, separators=(",", ":")).encode()
        taken = await self._poster.post(self.ingest_url, body, record)
        if taken and self.duplicate_webhook():
            # The same bytes, signature and ids once more, after the first copy was taken: Meta's at-least-once.
            self.duplicates[what.split(" ", 1)[0]] += 1
            await self._poster.post(
                self.ingest_url, body, {"what": what, "at": time.time(), "attempts": 0, "status": None}
            )
        if not taken:
            self.abandoned += 1
            log.warning("webhook never taken by ingest-wa", extra={"what": what, "attempts": WEBHOOK_ATTEMPTS})
        return taken

    def webhook_stats(self) -> dict[str, Any]:
        """How ingest-wa answered so far, what was posted twice or abandoned, and the work still in hand (webhooks
        being posted or retried, statuses still to come): 0 `in_hand` means the sandbox has gone quiet."""
        return {
            "answers": dict(sorted(self._poster.answers.items())),
            "duplicates": dict(sorted(self.duplicates.items())),
            "abandoned": self.abandoned,
            "in_hand": len(self._tasks),
        }

    # --- views -------------------------------------------------------------------------------------------------

    def conversation(self, wa_id: str) -> dict[str, Any]:
        phone = self.phones.get(wa_id)
        if phone is None:
            return {"wa_id": wa_id, "name": None, "window_open": False, "messages": []}
        window_open = phone.last_inbound is not None and time.time() - phone.last_inbound < WINDOW_SECONDS
        return {
            "wa_id": phone.wa_id,
            "name": phone.name,
            "window_open": window_open,
            "messages": [
                {
                    "id": m.id,
                    "direction": m.direction,
                    "kind": m.kind,
                    "text": m.text,
                    "at": m.at,
                    "status": m.status,
                    "error": m.error,
                    "media_id": m.media_id,
                    "quoted": m.quoted,
                }
                for m in phone.messages
            ],
        }


def _bearer(authorization: str | None) -> bool:
    scheme, _, token = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def _template_text(template: Mapping[str, Any]) -> str | None:
    """How a template message shows on the phone: its name and the parameters it was filled with."""
    name = template.get("name")
    if not isinstance(name, str) or not name:
        return None
    values: list[str] = []
    for component in template.get("components") or []:
        if isinstance(component, dict):
            for parameter in component.get("parameters") or []:
                if isinstance(parameter, dict) and isinstance(parameter.get("text"), str):
                    values.append(parameter["text"])
    return f"[template {name}] " + " | ".join(values) if values else f"[template {name}]"
