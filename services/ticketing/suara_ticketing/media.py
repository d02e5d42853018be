"""Citizens' media on the ticket API: fetched from the channel's platform (WhatsApp: the two-step Graph download),
checked against its sha256, refused over a size cap, cached on disk, then streamed to the agent."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from suara_shared.events import Channel, new_id
from suara_shared.graph import GraphClient, GraphError, PermanentGraphError, TokenInvalid
from suara_shared.http import ApiError

from .auth import CurrentUser
from .config import Settings
from .tickets.service import NotFound, TicketService

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["media"])

Reference = Annotated[str, PathParam(pattern=r"^[A-Z]{2,10}-\d{4}-\d{6}$", examples=["RMB-2026-000001"])]
MediaId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9._-]{1,128}$", examples=["1472580369258147"])]

#: The cache keeps at most this much; the least recently used files go first.
CACHE_MAX_BYTES = 1024 * 1024 * 1024
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


class MediaSource(Protocol):
    """Fetches one attachment of one channel into a file."""

    async def fetch(self, attachment: Mapping[str, Any], *, dest: Path, max_bytes: int) -> MediaInfo: ...


def _digest_b64(digest: Any) -> str:
    return base64.b64encode(digest.digest()).decode()


async def _save(graph: GraphClient, url: str, dest: Path, max_bytes: int) -> tuple[str, int]:
    """Stream the file to `dest`, hashing as it comes; stop as soon as it is over the cap."""
    sha = hashlib.sha256()
    size = 0
    async with graph.download(url) as response:
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
    return _digest_b64(sha), size


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
                    digest, size = await _save(graph, url, dest, max_bytes)
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


def _whatsapp(settings: Settings) -> MediaSource | None:
    if settings.wa_access_token is None:
        return None
    return WhatsAppMedia(
        base_url=settings.meta_graph_url,
        version=settings.meta_graph_version,
        token=settings.wa_access_token.get_secret_value(),
        phone_number_id=settings.wa_phone_number_id,
    )


#: Channels whose attachments are fetched by id from the platform; one line per channel.
SOURCES: dict[str, Callable[[Settings], MediaSource | None]] = {Channel.WHATSAPP.value: _whatsapp}


class MediaCache:
    """Files by (channel, media id) under one folder, each with its MediaInfo; bounded, oldest use out first."""

    def __init__(self, root: Path, *, max_bytes: int = CACHE_MAX_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def _paths(self, channel: str, media_id: str) -> tuple[Path, Path]:
        key = hashlib.sha256(f"{channel}:{media_id}".encode()).hexdigest()[:40]
        return self.root / f"{key}.bin", self.root / f"{key}.json"

    def get(self, channel: str, media_id: str) -> tuple[Path, MediaInfo] | None:
        data, meta = self._paths(channel, media_id)
        try:
            info = MediaInfo(**json.loads(meta.read_text()))
            if data.stat().st_size != info.size:
                return None
            os.utime(data)  # recently used: evicted last
        except (OSError, ValueError, TypeError):
            return None
        return data, info

    def scratch(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f".part-{new_id()}"

    def put(self, channel: str, media_id: str, scratch: Path, info: MediaInfo) -> Path:
        data, meta = self._paths(channel, media_id)
        os.replace(scratch, data)
        part = self.root / f".part-{new_id()}.json"
        part.write_text(json.dumps(asdict(info)))
        os.replace(part, meta)
        self._evict(keep=data)
        return data

    def _evict(self, *, keep: Path) -> None:
        files = sorted(self.root.glob("*.bin"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for path in files:
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            total -= path.stat().st_size
            with contextlib.suppress(OSError):
                path.unlink()
                path.with_suffix(".json").unlink()


def _find_attachment(ticket: Mapping[str, Any], media_id: str) -> tuple[str, Mapping[str, Any]] | None:
    for message in ticket.get("messages", []):
        for attachment in message.get("attachments") or []:
            if attachment.get("media_id") == media_id:
                return str(message.get("channel") or ticket["channel"]), attachment
    return None


@router.get(
    "/tickets/{reference}/media/{media_id}",
    response_class=FileResponse,
    responses={
        200: {"description": "the file, with its MIME type", "content": {"application/octet-stream": {}}},
        404: {"description": "no such ticket, or no such media on it"},
        410: {"description": "the platform no longer has the file"},
        502: {"description": "the platform's file is over the size cap, corrupted, or its token was refused"},
        503: {"description": "the platform is unreachable or the channel has no credentials; retry later"},
    },
)
async def get_media(request: Request, user: CurrentUser, reference: Reference, media_id: MediaId) -> FileResponse:
    """A photo, voice note, video, document or sticker a citizen sent on this ticket (ids in `attachments`)."""
    service: TicketService = request.app.state.tickets
    settings: Settings = request.app.state.settings
    try:
        ticket = await service.get(reference, principal=user)
    except NotFound:
        raise ApiError(404, "ticket_not_found", f"no ticket {reference}") from None
    found = _find_attachment(ticket, media_id)
    if found is None:
        raise ApiError(404, "media_not_found", f"ticket {reference} has no media {media_id}")
    channel, attachment = found
    cache = MediaCache(Path(settings.data_dir) / "media-cache")
    cached = cache.get(channel, media_id)
    if cached is None:
        cached = await _fetch(settings, cache, channel, attachment, reference=reference)
    path, info = cached
    return FileResponse(
        path,
        media_type=info.mime_type,
        filename=info.filename,
        content_disposition_type="inline",
        headers={"X-Content-SHA256": info.sha256, "Cache-Control": "private, max-age=3600"},
    )


async def _fetch(
    settings: Settings, cache: MediaCache, channel: str, attachment: Mapping[str, Any], *, reference: str
) -> tuple[Path, MediaInfo]:
    factory = SOURCES.get(channel)
    if factory is None:
        raise ApiError(404, "media_not_fetchable", f"media of the {channel} channel cannot be fetched by id")
    source = factory(settings)
    if source is None:
        raise ApiError(503, "channel_not_configured", f"the {channel} channel has no credentials to fetch media")
    media_id = str(attachment["media_id"])
    scratch = cache.scratch()
    where = {"reference": reference, "media_id": media_id, "channel": channel}
    try:
        info = await source.fetch(attachment, dest=scratch, max_bytes=settings.media_max_bytes)
        return cache.put(channel, media_id, scratch, info), info
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
        if exc.code == 100 or exc.status in (404, 410):
            raise ApiError(410, "media_gone", f"{channel} no longer has this file (media is kept 30 days)") from None
        raise ApiError(502, "media_unavailable", f"{channel} refused the download: {exc.detail_text}") from None
    finally:
        with contextlib.suppress(OSError):
            scratch.unlink(missing_ok=True)
