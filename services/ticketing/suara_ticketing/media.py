"""Citizens' media: fetched from the channel's platform (WhatsApp: the two-step Graph download; Messenger and
Instagram: the CDN link of the webhook) as soon as the message is stored, checked against its sha256, refused over
a size cap, and kept in the database with the ticket (WhatsApp deletes a citizen's file after 30 days, and
Messenger's and Instagram's links expire within days; a complaint's photo is its evidence for longer), then streamed
to the agent. A file not kept yet is fetched when an agent asks for it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse

from suara_shared import db
from suara_shared import media as kept_files
from suara_shared.events import Channel, InboundMessage, new_id, utcnow
from suara_shared.graph import GraphClient, GraphError, PermanentGraphError, TokenInvalid, on_meta_host
from suara_shared.http import ApiError
from suara_shared.kafka import backoff

from .auth import CurrentUser
from .config import Settings
from .metrics import MEDIA_PENDING, MEDIA_PENDING_OLDEST
from .tickets.service import NotFound, TicketService

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["media"])

Reference = Annotated[str, PathParam(pattern=r"^[A-Z]{2,10}-\d{4}-\d{6}$", examples=["RMB-2026-000001"])]
MediaId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9._-]{1,128}$", examples=["1472580369258147"])]

#: Files still to keep: one document per file, `due` when its next attempt is.
PENDING = "media_pending"
#: How long a keeper's claim on a pending file holds before another may try it.
CLAIM = timedelta(minutes=5)
#: The longest wait between attempts at a file the platform would not give now (unreachable, token refused).
RETRY_CAP = timedelta(hours=1)
#: Files a keeper claims at once.
KEEP_BATCH = 8
#: How long WhatsApp keeps a citizen's file: older messages' files are not looked for by the backfill.
PLATFORM_KEEPS = timedelta(days=30)
#: A web form's photo awaiting its complaint this long is a stray (the complaint was never published): removed.
STRAY_AFTER = timedelta(days=2)
#: How often the keeper looks for strays.
STRAYS_EVERY = 3600.0
#: The counter document saying the backfill of files received before the keeper existed was done.
BACKFILL_MARKER = "media-backfill"
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What is known of a fetched file, kept next to it in the cache."""

    mime_type: str
    size: int
    sha256: str
    filename: str | None = None


class MediaTooLarge(Exception):
    """The file is over the configured cap; nothing of it is kept."""


class MediaCorrupted(Exception):
    """The bytes do not hash to the sha256 the platform announced; nothing of them is kept."""


class MediaGone(Exception):
    """The platform no longer gives the file: its link expired or the file was removed."""


class MediaSource(Protocol):
    """Fetches one attachment of one channel into a file."""

    async def fetch(self, attachment: Mapping[str, Any], *, dest: Path, max_bytes: int) -> MediaInfo: ...


def _digest_b64(digest: Any) -> str:
    return base64.b64encode(digest.digest()).decode()


async def _save(
    graph: GraphClient, url: str, dest: Path, max_bytes: int, *, token: bool = True
) -> tuple[str, int, str | None]:
    """Stream the file to `dest`, hashing as it comes; stop as soon as it is over the cap. Returns its sha256
    (base64), its size and the Content-Type it came with."""
    sha = hashlib.sha256()
    size = 0
    async with graph.download(url, token=token) as response:
        content_type = response.headers.get("content-type")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise MediaTooLarge
        with dest.open("wb") as sink:
            async for chunk in response.aiter_bytes(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise MediaTooLarge
                sha.update(chunk)
                sink.write(chunk)
    return _digest_b64(sha), size, content_type


class WhatsAppMedia:
    """channels.md §1.8: `GET /{media-id}` gives a URL valid 5 minutes; `GET <url>` with the same bearer token
    gives the bytes, whose SHA-256 (base64) must match the one of the webhook and of the metadata."""

    def __init__(self, *, base_url: str, version: str, token: str, phone_number_id: str | None) -> None:
        self._base_url, self._version, self._token = base_url, version, token
        self._phone_number_id = phone_number_id

    async def fetch(self, attachment: Mapping[str, Any], *, dest: Path, max_bytes: int) -> MediaInfo:
        media_id = str(attachment["media_id"])
        params = {"phone_number_id": self._phone_number_id} if self._phone_number_id else None
        graph = GraphClient(base_url=self._base_url, version=self._version, access_token=self._token)
        try:
            for attempt in (1, 2):
                meta = await graph.get(media_id, params=params)
                url = meta.get("url")
                if not isinstance(url, str) or not url:
                    raise PermanentGraphError("media metadata without a download URL")
                declared = str(meta.get("file_size") or "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise MediaTooLarge
                try:
                    digest, size, _ = await _save(graph, url, dest, max_bytes)
                except PermanentGraphError as exc:
                    if attempt == 1 and not isinstance(exc, TokenInvalid):
                        continue  # the short-lived URL may have expired in between: ask for a fresh one
                    raise
                expected = {v for v in (meta.get("sha256"), attachment.get("sha256")) if isinstance(v, str) and v}
                if any(value != digest for value in expected):
                    raise MediaCorrupted
                mime = meta.get("mime_type") if isinstance(meta.get("mime_type"), str) else None
                return MediaInfo(
                    mime_type=mime or attachment.get("mime_type") or "application/octet-stream",
                    size=size,
                    sha256=digest,
                    filename=attachment.get("filename"),
                )
            raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
        finally:
            await graph.aclose()


class LinkMedia:
    """channels.md §2 (Messenger, Instagram): a citizen's file comes as a signed CDN link in the webhook, which
    expires within days; `GET <link>` with no token gives the bytes. Only links to Meta's hosts are followed (see
    `_followable`)."""

    def __init__(self, *, base_url: str, version: str) -> None:
        self._base_url, self._version = base_url, version

    async def fetch(self, attachment: Mapping[str, Any], *, dest: Path, max_bytes: int) -> MediaInfo:
        url = attachment.get("url")
        graph = GraphClient(base_url=self._base_url, version=self._version, access_token="")
        try:
            if not isinstance(url, str) or not _followable(graph, url):
                raise NotFetchable("a link that is not to Meta's hosts")
            try:
                digest, size, content_type = await _save(graph, url, dest, max_bytes, token=False)
            except PermanentGraphError as exc:
                if exc.status in (403, 404, 410):  # the link expired (403, as Meta's CDN answers) or the file is gone
                    raise MediaGone from exc
                raise
            return MediaInfo(
                mime_type=content_type or attachment.get("mime_type") or "application/octet-stream",
                size=size,
                sha256=digest,
                filename=attachment.get("filename"),
            )
        finally:
            await graph.aclose()


def _followable(graph: GraphClient, url: str) -> bool:
    """A link to the Graph API's own host, or over https to Meta's CDN while the Graph API is Meta's own. Pointed at
    a fake (development, tests), a sample's real CDN link is never followed: nothing leaves for Meta."""
    if url.startswith(graph.base_url + "/"):
        return True
    return on_meta_host(graph.base_url) and url.startswith("https://") and on_meta_host(url)


def _link(settings: Settings) -> MediaSource | None:
    return LinkMedia(base_url=settings.meta_graph_url, version=settings.meta_graph_version)


def _whatsapp(settings: Settings) -> MediaSource | None:
    if settings.wa_access_token is None:
        return None
    return WhatsAppMedia(
        base_url=settings.meta_graph_url,
        version=settings.meta_graph_version,
        token=settings.wa_access_token.get_secret_value(),
        phone_number_id=settings.wa_phone_number_id,
    )


#: Channels whose citizens' files are fetched and kept; one line per channel. X's are not: its media links need
#: the account's OAuth 1.0a signature, which only the notifier holds.
SOURCES: dict[str, Callable[[Settings], MediaSource | None]] = {
    Channel.WHATSAPP.value: _whatsapp,
    Channel.FACEBOOK.value: _link,
    Channel.INSTAGRAM.value: _link,
}


class NotFetchable(Exception):
    """The file cannot be fetched: its channel's files are not (X), or its link is not to the platform's hosts."""


class NotConfigured(Exception):
    """The channel has no credentials to fetch its files with."""


def _info(meta: Mapping[str, Any]) -> MediaInfo:
    return MediaInfo(
        mime_type=str(meta.get("mime_type") or "application/octet-stream"),
        size=int(meta.get("size") or 0),
        sha256=str(meta.get("sha256") or ""),
        filename=meta.get("filename"),
    )


class MediaStore:
    """Citizens' files kept in the database (`suara_shared.media`: GridFS, one file per channel and media id), and
    those still to fetch (`media_pending`)."""

    def __init__(self, database: db.Database, settings: Settings) -> None:
        self.database = database
        self._bucket = db.files(database, kept_files.BUCKET)
        self.pending = database[PENDING]
        self._settings = settings

    async def ensure_indexes(self) -> None:
        await kept_files.ensure_index(self.database)
        await self.pending.create_index("due")

    async def open(self, channel: str, media_id: str) -> tuple[MediaInfo, Any] | None:
        """The kept file and a stream of its bytes; None when it is not kept."""
        found = await kept_files.find(self.database, channel, media_id)
        if found is None:
            return None
        try:
            stream = await self._bucket.open_download_stream(found["_id"])
        except db.NoFile:
            return None
        return _info(found.get("metadata") or {}), stream

    async def keep(self, channel: str, attachment: Mapping[str, Any]) -> None:
        """Fetch one attachment from its platform into the database, unless it is there already. Raises what the
        fetch raises (MediaTooLarge, MediaCorrupted, GraphError), NotFetchable or NotConfigured."""
        media_id = str(attachment["media_id"])
        if await kept_files.find(self.database, channel, media_id) is not None:
            return
        factory = SOURCES.get(channel)
        if factory is None:
            raise NotFetchable(channel)
        source = factory(self._settings)
        if source is None:
            raise NotConfigured(channel)
        folder = Path(self._settings.data_dir) / "media-scratch"
        folder.mkdir(parents=True, exist_ok=True)
        scratch = folder / f".part-{new_id()}"
        try:
            info = await source.fetch(attachment, dest=scratch, max_bytes=self._settings.media_max_bytes)
            with scratch.open("rb") as data:
                await kept_files.put(
                    self.database, channel, media_id, data, filename=info.filename or media_id, metadata=asdict(info)
                )
        finally:
            with contextlib.suppress(OSError):
                scratch.unlink(missing_ok=True)


def _gone(exc: GraphError) -> bool:
    """The platform no longer has the file (WhatsApp keeps a citizen's file 30 days)."""
    return not exc.transient and not isinstance(exc, TokenInvalid) and (exc.code == 100 or exc.status in (404, 410))


def _fetchable(events: Iterable[InboundMessage]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (event.channel.value, attachment.model_dump(mode="json", exclude_none=True))
        for event in events
        if event.channel.value in SOURCES
        for attachment in event.attachments
        if attachment.media_id
    ]


async def enqueue(store: MediaStore, events: Iterable[InboundMessage]) -> None:
    """Note the citizens' files of these messages for the keeper, and claim those kept already (the web form's
    photos), before the messages are stored: a crash in between leaves a file to keep, or one claimed, for a message
    its redelivery stores; never a message whose file nobody fetches, or whose photo is removed as a stray."""
    events = list(events)
    await _note(store, _fetchable(events))
    web = [a.media_id for e in events if e.channel is Channel.WEB for a in e.attachments if a.media_id]
    await kept_files.claim(store.database, Channel.WEB.value, web)


async def _note(store: MediaStore, files: list[tuple[str, dict[str, Any]]]) -> None:
    if not files:
        return
    now = utcnow()
    await store.pending.bulk_write(
        [
            db.UpdateOne(
                {"_id": kept_files.key(channel, attachment["media_id"])},
                {
                    "$setOnInsert": {
                        "channel": channel,
                        "attachment": attachment,
                        "noted_at": now,
                        "due": now,
                        "attempts": 0,
                    }
                },
                upsert=True,
            )
            for channel, attachment in files
        ],
        ordered=False,
    )


async def backfill(store: MediaStore, service: TicketService) -> int:
    """Once per database: note the files of messages stored before the keeper existed, those young enough for the
    platform to have them still (30 days). A file kept already costs the keeper one lookup. Returns how many."""
    if await service.counters.find_one({"_id": BACKFILL_MARKER}, {"_id": 1}) is not None:
        return 0
    found = await service.messages.find(
        {
            "direction": "inbound",
            "channel": {"$in": list(SOURCES)},
            "created_at": {"$gte": utcnow() - PLATFORM_KEEPS},
            "attachments.media_id": {"$exists": True},
        },
        {"channel": 1, "attachments": 1},
    ).to_list(None)
    files = [(m["channel"], a) for m in found for a in m.get("attachments") or () if a.get("media_id")]
    await _note(store, files)
    await service.counters.update_one(
        {"_id": BACKFILL_MARKER}, {"$set": {"at": utcnow(), "noted": len(files)}}, upsert=True
    )
    if files:
        log.info("files of earlier messages noted for keeping", extra={"count": len(files)})
    return len(files)


async def keep_due(store: MediaStore) -> int:
    """Keep the files whose attempt is due, each claimed first; returns how many were kept."""
    now = utcnow()
    due = await store.pending.find({"due": {"$lte": now}}).sort("due", 1).to_list(KEEP_BATCH)
    kept = 0
    for doc in due:
        claimed = await store.pending.update_one({"_id": doc["_id"], "due": doc["due"]}, {"$set": {"due": now + CLAIM}})
        if not claimed.modified_count:
            continue  # another keeper took it
        where = {"media_id": doc["attachment"].get("media_id"), "channel": doc["channel"]}
        try:
            await store.keep(doc["channel"], doc["attachment"])
            kept += 1
        except (MediaTooLarge, MediaCorrupted, NotFetchable) as exc:
            log.warning("citizen's file not kept", extra={**where, "reason": type(exc).__name__})
        except MediaGone:
            log.warning("citizen's file gone from the platform before it was kept", extra=where)
        except GraphError as exc:
            if not _gone(exc):
                await _later(store, doc, where, code=exc.code_text)
                continue
            log.warning("citizen's file gone from the platform before it was kept", extra=where)
        except (NotConfigured, OSError) as exc:  # no credentials yet; the scratch folder full or unwritable
            await _later(store, doc, where, code=type(exc).__name__)
            continue
        await store.pending.delete_one({"_id": doc["_id"]})
    return kept


async def _later(store: MediaStore, doc: Mapping[str, Any], where: Mapping[str, Any], *, code: str) -> None:
    """Try this file again later: sooner after a first failure, up to an hour apart."""
    attempts = int(doc.get("attempts") or 0) + 1
    wait = min(RETRY_CAP.total_seconds(), backoff(attempts, base=2.0, cap=RETRY_CAP.total_seconds()))
    log.warning("citizen's file not fetched; will retry", extra={**where, "code": code, "retry_in_s": round(wait, 1)})
    await store.pending.update_one(
        {"_id": doc["_id"]}, {"$set": {"due": utcnow() + timedelta(seconds=wait), "attempts": attempts}}
    )


async def measure_pending(store: MediaStore) -> None:
    """How many files wait to be kept, and since when the oldest does (the alert SuaraMediaNotKept)."""
    MEDIA_PENDING.set(await store.pending.count_documents({}))
    oldest = await store.pending.find({}, {"noted_at": 1}).sort("noted_at", 1).to_list(1)
    noted = oldest[0].get("noted_at") if oldest else None
    MEDIA_PENDING_OLDEST.set(max(0.0, (utcnow() - noted).total_seconds()) if noted else 0.0)


async def keeper(
    store: MediaStore, service: TicketService, stop: asyncio.Event, *, every: float = 2.0, measure_every: float = 30.0
) -> None:
    """Keep citizens' files as they arrive (and, once, those of earlier messages), and remove the web form's
    photos whose complaint never came, until `stop` is set."""
    measured = 0.0
    swept: float | None = None
    backfilled = False
    while not stop.is_set():
        try:
            if not backfilled:
                await backfill(store, service)
                backfilled = True
            if swept is None or time.monotonic() - swept >= STRAYS_EVERY:
                removed = await kept_files.remove_strays(store.database, older_than=utcnow() - STRAY_AFTER)
                if removed:
                    log.info("photos whose complaint never came removed", extra={"count": removed})
                swept = time.monotonic()
            busy = await keep_due(store) > 0
            if time.monotonic() - measured >= measure_every:
                await measure_pending(store)
                measured = time.monotonic()
        except db.PyMongoError as exc:
            log.warning("media keeper: database unavailable", extra={"error": type(exc).__name__})
            busy = False
        except Exception:  # never let the keeper die: files would wait until the next restart
            log.exception("media keeper: unexpected error; going on")
            busy = False
        if not busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)


def _find_attachment(ticket: Mapping[str, Any], media_id: str) -> tuple[str, Mapping[str, Any]] | None:
    for message in ticket.get("messages", []):
        for attachment in message.get("attachments") or []:
            if attachment.get("media_id") == media_id:
                return str(message.get("channel") or ticket["channel"]), attachment
    return None


@router.get(
    "/tickets/{reference}/media/{media_id}",
    response_class=StreamingResponse,
    responses={
        200: {"description": "the file, with its MIME type", "content": {"application/octet-stream": {}}},
        404: {"description": "no such ticket, or no such media on it"},
        410: {"description": "the platform no longer has the file, and it was not kept"},
        502: {"description": "the platform's file is over the size cap, corrupted, or its token was refused"},
        503: {"description": "the platform is unreachable or the channel has no credentials; retry later"},
    },
)
async def get_media(request: Request, user: CurrentUser, reference: Reference, media_id: MediaId) -> StreamingResponse:
    """A photo, voice note, video, document or sticker a citizen sent on this ticket (ids in `attachments`)."""
    service: TicketService = request.app.state.tickets
    store: MediaStore = request.app.state.media
    try:
        ticket = await service.get(reference, principal=user)
    except NotFound:
        raise ApiError(404, "ticket_not_found", f"no ticket {reference}") from None
    found = _find_attachment(ticket, media_id)
    if found is None:
        raise ApiError(404, "media_not_found", f"ticket {reference} has no media {media_id}")
    channel, attachment = found
    opened = await store.open(channel, media_id)
    if opened is None:
        await _keep_now(store, request.app.state.settings, channel, attachment, reference=reference)
        opened = await store.open(channel, media_id)
    if opened is None:  # kept and removed in between: nothing removes kept files
        raise ApiError(503, "media_unavailable", "the file could not be read back; retry later")
    info, stream = opened
    headers = {
        "Content-Length": str(stream.length),
        "X-Content-SHA256": info.sha256,
        "Cache-Control": "private, max-age=3600",
        "Content-Disposition": "inline" + (f"; filename*=utf-8''{quote(info.filename)}" if info.filename else ""),
        # A citizen's file is never run as a page of the console's origin, whatever type its platform gave it.
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }
    return StreamingResponse(_chunks(stream), media_type=info.mime_type, headers=headers)


async def _chunks(stream: Any) -> AsyncIterator[bytes]:
    try:
        while chunk := await stream.readchunk():
            yield chunk
    finally:
        await stream.close()


async def _keep_now(
    store: MediaStore, settings: Settings, channel: str, attachment: Mapping[str, Any], *, reference: str
) -> None:
    """Fetch a file an agent asks for that is not kept yet, answering the platform's refusals as API errors."""
    where = {"reference": reference, "media_id": attachment.get("media_id"), "channel": channel}
    try:
        await store.keep(channel, attachment)
    except NotFetchable:
        raise ApiError(404, "media_not_fetchable", f"this {channel} file cannot be fetched from its platform") from None
    except MediaGone:
        raise ApiError(410, "media_gone", f"{channel} no longer gives this file (its link expired)") from None
    except NotConfigured:
        raise ApiError(
            503, "channel_not_configured", f"the {channel} channel has no credentials to fetch media"
        ) from None
    except MediaTooLarge:
        raise ApiError(
            502, "media_too_large", f"the file is over the {settings.media_max_bytes}-byte limit (MEDIA_MAX_BYTES)"
        ) from None
    except MediaCorrupted:
        log.warning("media refused: its sha256 does not match the platform's", extra=where)
        raise ApiError(502, "media_integrity_error", "the downloaded file does not match its sha256") from None
    except TokenInvalid as exc:
        log.error("media not fetched: the channel's access token was refused", extra={**where, "code": exc.code})
        raise ApiError(502, "channel_token_invalid", f"the {channel} access token was refused") from None
    except GraphError as exc:
        log.warning("media not fetched", extra={**where, "code": exc.code_text, "fbtrace_id": exc.fbtrace_id})
        if exc.transient:
            raise ApiError(503, "media_unavailable", f"{channel} is unavailable; retry later") from None
        if _gone(exc):
            raise ApiError(410, "media_gone", f"{channel} no longer has this file (media is kept 30 days)") from None
        raise ApiError(502, "media_unavailable", f"{channel} refused the download: {exc.detail_text}") from None
