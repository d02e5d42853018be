"""The sandbox's Facebook Page, Instagram account and X account: citizens comment, write and mention (signed
webhooks to ingest-social; for X, the mentions and DM events its poller reads), and Suara's replies are answered
as the Graph and X APIs answer them and shown under what they answer. Errors can be scripted per API."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from suara_ingest_social import testing as built

from .webhooks import WebhookPoster

log = logging.getLogger(__name__)

#: The Page, the Instagram account, their app and the X account the sandbox plays (channels.md's sample ids).
PAGE_ID = "109876543210987"
PAGE_POST_ID = f"{PAGE_ID}_555666777888999"
IG_ACCOUNT_ID = "17841400000000001"
IG_MEDIA_ID = "17900000000000001"
APP_ID = 1517776481860111
X_USER_ID = "1700000000000000000"
X_USERNAME = "rembangkab"
WEBHOOK_ATTEMPTS = 12
#: Webhooks the sandbox posts to ingest-social at once.
WEBHOOKS_IN_FLIGHT = 32

#: How long the CDN link of a citizen's file lives (Meta's expire within days; channels.md §2: download promptly).
LINK_SECONDS = 3 * 24 * 3600
#: Where the sandbox's CDN serves citizens' files (scontent.xx.fbcdn.net's part).
CDN_PATH = "/_sandbox/social/cdn/"
#: What a CDN link's file type says of its extension.
_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "video/mp4": "mp4",
    "audio/mpeg": "mp3",
    "application/pdf": "pdf",
}
#: Meta's attachment type for a file's MIME type.
_ATTACHMENT_TYPES = {"image": "image", "video": "video", "audio": "audio"}

#: Status, headers and body of a scripted X or Graph error.
Answer = tuple[int, Any, dict[str, str]]


def _digits(n: int) -> str:
    return str(secrets.randbelow(9) + 1) + "".join(str(secrets.randbelow(10)) for _ in range(n - 1))


def _shown(text: str, file: tuple[str, str] | None) -> str:
    """What the timeline shows of a direct message: its text, and a mark for the file it carries."""
    return " ".join(part for part in ((f"📷 {file[0]}" if file else ""), text) if part)


def user_id_of(name: str, *, length: int = 16) -> str:
    """A stable platform id for a citizen's name, so the same person keeps one thread."""
    digest = int(hashlib.sha256(name.strip().lower().encode()).hexdigest(), 16)
    return str(10 ** (length - 1) + digest % (9 * 10 ** (length - 1)))


def snowflake() -> str:
    """An X id: time-ordered, like X's own."""
    return str((int(time.time() * 1000) - 1288834974657) << 22 | secrets.randbelow(1 << 22))


@dataclass
class Post:
    """One item of the sandbox's social timeline: a citizen's comment, message or mention, or Suara's reply."""

    id: str
    channel: str
    path: str  # comment, message, mention, reply, private_reply
    direction: str  # in (citizen) or out (Suara)
    author: str
    text: str
    at: float
    target: str | None = None  # what a reply answers (comment, tweet, recipient)
    thread: str | None = None
    removed: bool = False  # a comment its author removed


@dataclass
class CdnFile:
    """A file a citizen sent on Messenger or Instagram, served from its expiring, signed CDN link."""

    id: str
    content: bytes
    mime_type: str
    expires: int
    downloads: int = 0

    @property
    def attachment_type(self) -> str:
        return _ATTACHMENT_TYPES.get(self.mime_type.split("/")[0], "file")


@dataclass
class ScriptedError:
    status: int
    code: int | None = None
    #: X: seconds until `x-rate-limit-reset`.
    reset_in: float | None = None


@dataclass
class SocialSandbox:
    ingest_url: str | None
    app_secret: str
    x_consumer_secret: str | None = None
    page_id: str = PAGE_ID
    ig_account_id: str = IG_ACCOUNT_ID
    x_user_id: str = X_USER_ID
    posts: list[Post] = field(default_factory=list)
    mentions: list[dict[str, Any]] = field(default_factory=list)
    dm_events: list[dict[str, Any]] = field(default_factory=list)
    x_users: dict[str, dict[str, str]] = field(default_factory=dict)
    #: API name (`graph`, `x_mentions`, `x_dm_events`, `x_tweets`, `x_dms`) -> errors answered to its next calls.
    errors: dict[str, list[ScriptedError]] = field(default_factory=dict)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    #: Platform (`facebook`, `instagram`, `x`) -> False while its token is refused: Graph error 190; X answers
    #: `x_refusal_status` (401 or 403) to every call made with the account's user-context credentials.
    tokens_valid: dict[str, bool] = field(default_factory=dict)
    x_refusal_status: int = 401
    #: API (`x_mentions`, `x_dm_events`) -> response bodies answered verbatim to its next calls (the samples).
    pages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Citizens' files on the CDN, by id.
    files: dict[str, CdnFile] = field(default_factory=dict)
    _link_key: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _poster: WebhookPoster | None = None

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._poster is not None:
            await self._poster.aclose()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- citizens ----------------------------------------------------------------------------------------------

    def facebook_comment(self, *, name: str, text: str, post_id: str = PAGE_POST_ID) -> Post:
        user = user_id_of(name)
        comment_id = f"{post_id.split('_')[-1]}_{_digits(16)}"
        change = built.page_comment(post_id=post_id, sender=user, name=name, comment_id=comment_id, text=text)
        post = self._add(comment_id, "facebook", "comment", "in", name, text, thread=f"post:{post_id}:{user}")
        self._meta_webhook("facebook", self.page_id, {"changes": [change]})
        return post

    def change_comment(self, comment_id: str, *, text: str | None) -> Post | None:
        """The citizen edits their Facebook comment (`text`) or removes it (None): the Page's `feed` change with the
        verb `edited` or `remove` (channels.md §2.2). None if the sandbox holds no such comment."""
        post = next((p for p in self.posts if p.id == comment_id and p.path == "comment"), None)
        if post is None or post.channel != "facebook" or post.thread is None:
            return None
        _, post_id, user = post.thread.split(":")
        verb = "remove" if text is None else "edited"
        change = built.page_comment(
            post_id=post_id, sender=user, name=post.author, comment_id=comment_id, text=text, verb=verb
        )
        if text is None:
            post.removed = True
        else:
            post.text = text
        self._meta_webhook("facebook", self.page_id, {"changes": [change]})
        return post

    def facebook_message(self, *, name: str, text: str, file: tuple[str, str] | None = None) -> Post:
        """A Messenger message, with `file` (its type and link, `file_link`) if the citizen sent one."""
        user = user_id_of(name)
        mid = "m_" + secrets.token_urlsafe(24)
        event = built.messaging_event(sender=user, recipient=self.page_id, mid=mid, text=text, file=file)
        post = self._add(mid, "facebook", "message", "in", name, _shown(text, file), thread=f"dm:{user}")
        self._meta_webhook("facebook", self.page_id, {"messaging": [event]})
        return post

    def instagram_comment(self, *, username: str, text: str, media_id: str = IG_MEDIA_ID) -> Post:
        user = user_id_of(username)
        comment_id = _digits(17)
        change = built.instagram_comment(
            media_id=media_id, sender=user, username=username, comment_id=comment_id, text=text
        )
        post = self._add(comment_id, "instagram", "comment", "in", username, text, thread=f"media:{media_id}:{user}")
        self._meta_webhook("instagram", self.ig_account_id, {"changes": [change]})
        return post

    def instagram_message(self, *, username: str, text: str, file: tuple[str, str] | None = None) -> Post:
        user = user_id_of(username)
        mid = "aWdf" + secrets.token_urlsafe(40)
        event = built.messaging_event(sender=user, recipient=self.ig_account_id, mid=mid, text=text, file=file)
        post = self._add(mid, "instagram", "message", "in", username, _shown(text, file), thread=f"dm:{user}")
        self._meta_webhook("instagram", self.ig_account_id, {"messaging": [event]})
        return post

    # --- the CDN of citizens' files -----------------------------------------------------------------------------

    def add_file(self, content: bytes, mime_type: str) -> CdnFile:
        file = CdnFile(id=_digits(17), content=content, mime_type=mime_type, expires=int(time.time()) + LINK_SECONDS)
        self.files[file.id] = file
        return file

    def file_link(self, file: CdnFile, base_url: str) -> tuple[str, str]:
        """The file as a webhook carries it: its attachment type and its signed link (`oe`, the expiry in hex)."""
        extension = _EXTENSIONS.get(file.mime_type, "bin")
        query = f"_nc_cat=1&oh={self._link_hash(file.id, file.expires)}&oe={file.expires:X}"
        return file.attachment_type, f"{base_url.rstrip('/')}{CDN_PATH}{file.id}.{extension}?{query}"

    def _link_hash(self, file_id: str, expires: int) -> str:
        return hmac.new(self._link_key, f"{file_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:24]

    def download(self, name: str, *, oh: str, oe: str) -> tuple[int, bytes, str]:
        """`GET` of a CDN link, as Meta's CDN answers it: the bytes; 403 for a wrong or expired signature; 404."""
        file = self.files.get(name.split(".")[0])
        if file is None:
            return 404, b"Not Found", "text/plain"
        try:
            expires = int(oe, 16)
        except ValueError:
            return 403, b"Bad URL timestamp", "text/plain"
        if not hmac.compare_digest(oh, self._link_hash(file.id, expires)):
            return 403, b"Bad URL hash", "text/plain"
        if expires < time.time() or file.expires < time.time():
            return 403, b"URL signature expired", "text/plain"
        file.downloads += 1
        return 200, file.content, file.mime_type

    def expire_file(self, file_id: str) -> CdnFile | None:
        """The file's link expires now (as Meta's do within days)."""
        file = self.files.get(file_id)
        if file is not None:
            file.expires = int(time.time()) - 1
        return file

    def _x_user(self, name: str, username: str | None) -> str:
        handle = (username or name.replace(" ", "_").lower())[:15]
        user = user_id_of(handle, length=19)
        self.x_users[user] = {"id": user, "name": name, "username": handle}
        return user

    def x_mention(self, *, name: str, text: str, username: str | None = None, in_reply_to: str | None = None) -> Post:
        """A citizen's post mentioning us (or replying under a thread): served by the mentions timeline."""
        user = self._x_user(name, username)
        tweet_id = snowflake()
        parent = next((t for t in self.mentions if t["id"] == in_reply_to), None) if in_reply_to else None
        tweet: dict[str, Any] = {
            "id": tweet_id,
            "text": text if f"@{X_USERNAME}" in text else f"@{X_USERNAME} {text}",
            "author_id": user,
            "conversation_id": parent["conversation_id"] if parent else tweet_id,
            "created_at": _iso_now(),
            "edit_history_tweet_ids": [tweet_id],
        }
        if in_reply_to:
            tweet["referenced_tweets"] = [{"type": "replied_to", "id": in_reply_to}]
        self.mentions.append(tweet)
        return self._add(
            tweet_id, "x", "mention", "in", name, tweet["text"], thread=f"tweet:{tweet['conversation_id']}:{user}"
        )

    def x_message(self, *, name: str, text: str, username: str | None = None) -> Post:
        user = self._x_user(name, username)
        event_id = snowflake()
        self.dm_events.append(
            {
                "id": event_id,
                "event_type": "MessageCreate",
                "text": text,
                "sender_id": user,
                "dm_conversation_id": f"{user}-{self.x_user_id}",
                "created_at": _iso_now(),
            }
        )
        return self._add(f"dm:{event_id}", "x", "message", "in", name, text, thread=f"dm:{user}")

    def _add(self, pid: str, channel: str, path: str, direction: str, author: str, text: str, **kw: Any) -> Post:
        post = Post(
            id=pid, channel=channel, path=path, direction=direction, author=author, text=text, at=time.time(), **kw
        )
        self.posts.append(post)
        del self.posts[:-1000]
        return post

    # --- webhooks to ingest-social -----------------------------------------------------------------------------

    def _meta_webhook(self, channel: str, own_id: str, entry: dict[str, Any]) -> None:
        self._spawn(self.post_webhook(f"/webhooks/{channel}", built.meta_envelope(channel, own_id, entry)))

    async def post_webhook(self, path: str, payload: dict[str, Any]) -> bool:
        """Sign and post a Meta webhook as Meta would, retrying with backoff until ingest-social answers 200."""
        record: dict[str, Any] = {"path": path, "at": time.time(), "attempts": 0, "status": None}
        self.webhooks.append(record)
        del self.webhooks[:-500]
        if self.ingest_url is None:
            record["status"] = "no INGEST_SOCIAL_URL"
            return False
        if self._poster is None:
            self._poster = WebhookPoster(
                app_secret=self.app_secret, attempts=WEBHOOK_ATTEMPTS, in_flight=WEBHOOKS_IN_FLIGHT
            )
        body = json.dumps(payload, separators=(",", ":")).encode()
        if await self._poster.post(self.ingest_url.rstrip("/") + path, body, record):
            return True
        log.warning("webhook never taken by ingest-social", extra={"path": path})
        return False

    # --- the platforms' APIs -----------------------------------------------------------------------------------

    def answer(
        self, method: str, path: str, fields: Mapping[str, Any], *, authorization: str | None = None
    ) -> Answer | None:
        """Answer a call if it is one of the social APIs the sandbox plays; None otherwise."""
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["2"]:
            user_context = (authorization or "").lower().startswith("oauth ")
            if user_context and not self.tokens_valid.get("x", True):
                return self._x_refused()
            return self._x(method, parts[1:], fields)
        if parts and parts[0].startswith("v") and parts[0][1:2].isdigit():
            parts = parts[1:]
        if method != "POST" or len(parts) != 2 or fields.get("messaging_product") == "whatsapp":
            return None
        node, edge = parts
        if edge == "messages" and node in (self.page_id, self.ig_account_id, "me"):
            platform = "instagram" if node == self.ig_account_id else "facebook"
            return self._refused(platform) or self._scripted("graph") or self._send(node, fields)
        if edge in ("comments", "replies"):
            platform = "facebook" if edge == "comments" else "instagram"
            return self._refused(platform) or self._scripted("graph") or self._comment_reply(node, edge, fields)
        if edge == "mentions" and node == self.ig_account_id:
            return self._refused("instagram") or self._scripted("graph") or self._mention_reply(fields)
        return None

    def _refused(self, platform: str) -> Answer | None:
        """Graph's answer to an expired or revoked Page or Instagram token (channels.md §1.7: error 190)."""
        if self.tokens_valid.get(platform, True):
            return None
        error = {
            "message": "Error validating access token: Session has expired on Monday, 03-Jun-24 10:00:00 PDT.",
            "type": "OAuthException",
            "code": 190,
            "error_subcode": 463,
            "fbtrace_id": "Sb" + secrets.token_urlsafe(8),
        }
        return 401, {"error": error}, {}

    def _x_refused(self) -> Answer:
        """X's problem object for refused credentials (401) or a lost permission (403, x_error_403_problem.json)."""
        status = self.x_refusal_status
        if status == 403:
            problem = {"detail": "You are not permitted to perform this action.", "title": "Forbidden"}
        else:
            problem = {"detail": "Unauthorized", "title": "Unauthorized"}
        return status, {**problem, "type": "about:blank", "status": status}, _rate_headers()

    def _scripted(self, api: str) -> Answer | None:
        queue = self.errors.get(api)
        if not queue:
            return None
        error = queue.pop(0)
        if api == "graph":
            code = error.code or 2
            body = {"error": {"message": f"(#{code}) Sandbox error", "type": "OAuthException", "code": code}}
            body["error"]["fbtrace_id"] = "Sb" + secrets.token_urlsafe(8)
            return error.status, body, {}
        headers = _rate_headers(remaining=0 if error.status == 429 else 10)
        if error.reset_in is not None:
            headers["x-rate-limit-reset"] = str(int(time.time() + error.reset_in))
        title = "Too Many Requests" if error.status == 429 else "Service Unavailable"
        return error.status, {"title": title, "detail": title, "type": "about:blank", "status": error.status}, headers

    def _send(self, node: str, fields: Mapping[str, Any]) -> Answer:
        recipient: dict[str, Any] = fields["recipient"] if isinstance(fields.get("recipient"), dict) else {}
        message: dict[str, Any] = fields["message"] if isinstance(fields.get("message"), dict) else {}
        text = str(message.get("text") or "")
        channel = "facebook" if node in (self.page_id, "me") else "instagram"
        mid = ("m_" if channel == "facebook" else "aWdf") + secrets.token_urlsafe(24)
        comment_id = recipient.get("comment_id")
        if comment_id:
            commenter = next((p for p in self.posts if p.id == comment_id), None)
            if any(p.path == "private_reply" and p.target == comment_id for p in self.posts):
                body = {"error": {"message": "(#10) Private reply already sent", "type": "OAuthException", "code": 10}}
                return 400, body, {}
            user = (commenter.thread or "::").split(":")[-1] if commenter else _digits(16)
            self._add(mid, channel, "private_reply", "out", "Suara", text, target=comment_id, thread=f"dm:{user}")
            return 200, {"recipient_id": user, "message_id": mid}, {}
        user = str(recipient.get("id") or "")
        self._add(mid, channel, "message", "out", "Suara", text, target=user, thread=f"dm:{user}")
        if channel == "facebook":
            # `message_echoes`: Meta tells the Page's webhook about what the Page itself sent.
            echo = {
                "sender": {"id": self.page_id},
                "recipient": {"id": user},
                "timestamp": int(time.time() * 1000),
                "message": {"is_echo": True, "app_id": APP_ID, "mid": mid, "text": text},
            }
            self._meta_webhook("facebook", self.page_id, {"messaging": [echo]})
        return 200, {"recipient_id": user, "message_id": mid}, {}

    def _comment_reply(self, comment_id: str, edge: str, fields: Mapping[str, Any]) -> Answer:
        channel = "facebook" if edge == "comments" else "instagram"
        new_id = f"{comment_id.split('_')[0]}_{_digits(16)}" if "_" in comment_id else _digits(17)
        parent = next((p for p in self.posts if p.id == comment_id), None)
        if parent is not None and parent.removed:
            # Graph's answer for an object that no longer exists.
            error = {
                "message": f"Unsupported post request. Object with ID '{comment_id}' does not exist",
                "type": "GraphMethodException",
                "code": 100,
                "error_subcode": 33,
                "fbtrace_id": "Sb" + secrets.token_urlsafe(8),
            }
            return 400, {"error": error}, {}
        self._add(
            new_id,
            channel,
            "reply",
            "out",
            "Suara",
            str(fields.get("message") or ""),
            target=comment_id,
            thread=parent.thread if parent else None,
        )
        return 200, {"id": new_id}, {}

    def _mention_reply(self, fields: Mapping[str, Any]) -> Answer:
        new_id = _digits(17)
        target = str(fields.get("comment_id") or fields.get("media_id") or "")
        self._add(new_id, "instagram", "reply", "out", "Suara", str(fields.get("message") or ""), target=target)
        return 200, {"id": new_id}, {}

    def _x(self, method: str, parts: list[str], fields: Mapping[str, Any]) -> Answer | None:
        if method == "GET" and len(parts) == 3 and parts[0] == "users" and parts[2] == "mentions":
            return (
                self._scripted("x_mentions")
                or self._queued("x_mentions")
                or self._page(self.mentions, fields, since=True)
            )
        if method == "GET" and parts == ["dm_events"]:
            return (
                self._scripted("x_dm_events")
                or self._queued("x_dm_events")
                or self._page(self.dm_events, fields, since=False)
            )
        if method == "POST" and parts == ["tweets"]:
            scripted = self._scripted("x_tweets")
            if scripted:
                return scripted
            reply: dict[str, Any] = fields["reply"] if isinstance(fields.get("reply"), dict) else {}
            target = str(reply.get("in_reply_to_tweet_id") or "")
            tweet_id = snowflake()
            parent = next((p for p in self.posts if p.id == target), None)
            text = str(fields.get("text") or "")
            self._add(
                tweet_id, "x", "reply", "out", "Suara", text, target=target, thread=parent.thread if parent else None
            )
            data = {"id": tweet_id, "text": text, "edit_history_tweet_ids": [tweet_id]}
            return 201, {"data": data}, _rate_headers()
        if method == "POST" and len(parts) == 4 and parts[0] == "dm_conversations" and parts[3] == "messages":
            scripted = self._scripted("x_dms")
            if scripted:
                return scripted
            participant = parts[2] if parts[1] == "with" else parts[1].split("-")[0]
            conversation = f"{participant}-{self.x_user_id}"
            event_id = snowflake()
            text = str(fields.get("text") or "")
            # Our own message is in the DM event list too, as X lists both sides of a conversation.
            self.dm_events.append(
                {
                    "id": event_id,
                    "event_type": "MessageCreate",
                    "text": text,
                    "sender_id": self.x_user_id,
                    "dm_conversation_id": conversation,
                    "created_at": _iso_now(),
                }
            )
            self._add(
                f"dm:{event_id}", "x", "message", "out", "Suara", text, target=participant, thread=f"dm:{participant}"
            )
            return 201, {"data": {"dm_conversation_id": conversation, "dm_event_id": event_id}}, _rate_headers()
        return None

    def _queued(self, api: str) -> Answer | None:
        queue = self.pages.get(api)
        return (200, queue.pop(0), _rate_headers()) if queue else None

    def _page(self, items: list[dict[str, Any]], fields: Mapping[str, Any], *, since: bool) -> Answer:
        """Newest first, `max_results` a page, `next_token` to the older ones; mentions honour `since_id`. A
        token the sandbox never gave (one in a queued sample page) leads to an empty page: the end."""
        token = str(fields.get("pagination_token") or "")
        if token and not token.isdigit():
            return 200, {"meta": {"result_count": 0}}, _rate_headers()
        newest_first = sorted(items, key=lambda t: int(t["id"]), reverse=True)
        since_id = str(fields.get("since_id") or "")
        if since and since_id.isdigit():
            newest_first = [t for t in newest_first if int(t["id"]) > int(since_id)]
        size = int(str(fields.get("max_results") or "10")) if str(fields.get("max_results") or "10").isdigit() else 10
        start = (
            int(str(fields.get("pagination_token") or "0"))
            if str(fields.get("pagination_token") or "0").isdigit()
            else 0
        )
        page = newest_first[start : start + size]
        if not page:
            return 200, {"meta": {"result_count": 0}}, _rate_headers()
        meta: dict[str, Any] = {"result_count": len(page), "newest_id": page[0]["id"], "oldest_id": page[-1]["id"]}
        if start + size < len(newest_first):
            meta["next_token"] = str(start + size)
        authors = {str(t.get("author_id") or t.get("sender_id")) for t in page}
        users = [self.x_users[a] for a in sorted(authors) if a in self.x_users]
        return 200, {"data": page, "includes": {"users": users}, "meta": meta}, _rate_headers()

    # --- views -------------------------------------------------------------------------------------------------

    def timeline(self) -> list[dict[str, Any]]:
        return [asdict(p) for p in self.posts]


def _rate_headers(remaining: int = 449) -> dict[str, str]:
    return {
        "x-rate-limit-limit": "450",
        "x-rate-limit-remaining": str(remaining),
        "x-rate-limit-reset": str(int(time.time()) + 900),
    }


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
