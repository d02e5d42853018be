"""Photos a citizen attaches to the web form (a pothole, a broken street light): up to `MAX_PHOTOS` images, each
up to `WEB_PHOTO_MAX_BYTES`, known by their bytes (JPEG, PNG, WebP, HEIC; never by the name or type the browser
gives), and kept in the database (`suara_shared.media`, as ticketing keeps the platforms' files) before the
complaint is published, so the complaint never names a photo that is not there."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from prometheus_client import Counter

from suara_shared import db, media
from suara_shared.events import Attachment, Channel, MessageKind, utcnow

from ..limits import MAX_BODY_BYTES

MAX_PHOTOS = 3
#: The form's field.
FIELD = "foto"
_CHUNK = 64 * 1024
_NAME_MAX = 120


def form_bytes(max_photo_bytes: int) -> int:
    """The largest form with photos: every photo at its cap, and the rest of the form."""
    return MAX_PHOTOS * max_photo_bytes + MAX_BODY_BYTES


PHOTOS = Counter(
    "suara_web_photos_total",
    "Photos of the web form and the kiosks: kept, or refused and why (not_image, too_large, too_many, budget)",
    ["outcome"],
)


class ByteBudget:
    """The photo bytes this pod takes per hour, refilled continuously: a flood of photos (the database's disk fills
    with them) is refused while complaints without photos go on. Normal use is far below it."""

    def __init__(self, per_hour: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_hour)
        self._clock = clock
        self._level, self._then = self.capacity, clock()

    def take(self, size: int) -> bool:
        """Spend `size` bytes; False, spending nothing, when the budget has not that much left."""
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._then) * self.capacity / 3600)
        self._then = now
        if size > self._level:
            return False
        self._level -= size
        return True


class PhotoRefused(ValueError):
    """A photo the form cannot take; `reason` is one of `too_many`, `too_large`, `not_image`, `budget`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PhotosNotKept(Exception):
    """The database did not take the photos: nothing was published, the citizen must send again."""


@dataclass(frozen=True, slots=True)
class Photo:
    file: Any  # the upload's binary file (spooled to disk past 1 MB), read from its start
    mime_type: str
    size: int
    sha256: str  # base64, as the platforms give theirs
    filename: str | None


def image_type(head: bytes) -> str | None:
    """The image type the file's first bytes say, or None when they are not one the desk can show."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1"):
        return "image/heic"
    return None


async def check(uploads: Sequence[Any], *, max_bytes: int, budget: ByteBudget | None) -> list[Photo]:
    """The form's photos (Starlette `UploadFile`s), read once to check and hash them, and spent from the pod's
    `budget` (None: a form that comes back anyway spends nothing). A file input left empty sends a nameless, empty
    part: it is no photo. Raises PhotoRefused."""
    try:
        photos = await _check(uploads, max_bytes=max_bytes)
        if photos and budget is not None and not budget.take(sum(p.size for p in photos)):
            raise PhotoRefused("budget")
    except PhotoRefused as exc:
        PHOTOS.labels(exc.reason).inc()
        raise
    return photos


async def _check(uploads: Sequence[Any], *, max_bytes: int) -> list[Photo]:
    chosen = [u for u in uploads if u.filename or u.size]
    if len(chosen) > MAX_PHOTOS:
        raise PhotoRefused("too_many")
    photos = []
    for upload in chosen:
        await upload.seek(0)
        head = await upload.read(_CHUNK)
        mime = image_type(head)
        if mime is None:
            raise PhotoRefused("not_image")
        digest, size = hashlib.sha256(head), len(head)
        while chunk := await upload.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise PhotoRefused("too_large")
            digest.update(chunk)
        if size > max_bytes:
            raise PhotoRefused("too_large")
        await upload.seek(0)
        name = PurePath((upload.filename or "").replace("\\", "/")).name[:_NAME_MAX] or None
        photos.append(Photo(upload.file, mime, size, base64.b64encode(digest.digest()).decode(), name))
    return photos


def digests(photos: Sequence[Photo]) -> list[str]:
    return [p.sha256 for p in photos]


def media_id(submission_id: str, photo: Photo) -> str:
    """The same photo sent again with the same complaint (a retry) is the same file."""
    return hashlib.sha256(f"{submission_id}\x1f{photo.sha256}".encode()).hexdigest()[:32]


async def keep(database: db.Database, submission_id: str, photos: Sequence[Photo]) -> tuple[Attachment, ...]:
    """Keep the photos in the database; their attachments for the complaint's message. Raises PhotosNotKept."""
    attachments = []
    try:
        await media.ensure_index(database)
        for photo in photos:
            mid = media_id(submission_id, photo)
            metadata = {"mime_type": photo.mime_type, "size": photo.size, "sha256": photo.sha256}
            # Awaiting its complaint from now (kept by an earlier try of the same form: from now again), until
            # ticketing stores the complaint; a photo whose complaint never comes is removed after a while.
            now = utcnow()
            written = await media.put(
                database,
                Channel.WEB.value,
                mid,
                photo.file,
                filename=photo.filename or mid,
                metadata={**metadata, "filename": photo.filename, "awaiting": now},
            )
            if not written:
                await database[f"{media.BUCKET}.files"].update_one(
                    {"metadata.key": media.key(Channel.WEB.value, mid), media.AWAITING: {"$exists": True}},
                    {"$set": {media.AWAITING: now}},
                )
            attachments.append(
                Attachment(
                    kind=MessageKind.IMAGE,
                    media_id=mid,
                    mime_type=photo.mime_type,
                    sha256=photo.sha256,
                    size=photo.size,
                    filename=photo.filename,
                )
            )
    except db.PyMongoError as exc:
        raise PhotosNotKept from exc
    PHOTOS.labels("kept").inc(len(attachments))
    return tuple(attachments)
