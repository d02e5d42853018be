"""Where citizens' files are kept: one GridFS bucket in the database, each file named by its channel and media id
(`metadata.key`, unique). Ticketing keeps the platforms' files there; ingest-social the web form's photos."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import db

#: The bucket (`media.files`, `media.chunks`).
BUCKET = "media"
#: A file kept before the message naming it was stored (the web form's photos) carries, in its metadata, since
#: when it awaits that message; storing the message claims it. One awaiting for long is a stray (the complaint was
#: never published) and is removed.
AWAITING = "metadata.awaiting"


def key(channel: str, media_id: str) -> str:
    return f"{channel}:{media_id}"


async def ensure_index(database: db.Database) -> None:
    """One file per key: two writers keeping one file at once keep it once (each service that writes asks); the
    files awaiting their message, found without reading the others."""
    files = database[f"{BUCKET}.files"]
    await files.create_index("metadata.key", unique=True)
    await files.create_index(AWAITING, sparse=True)


async def claim(database: db.Database, channel: str, media_ids: list[str]) -> None:
    """The messages naming these files are being stored: they await nothing any more."""
    if media_ids:
        keys = [key(channel, media_id) for media_id in media_ids]
        await database[f"{BUCKET}.files"].update_many(
            {"metadata.key": {"$in": keys}, AWAITING: {"$exists": True}}, {"$unset": {AWAITING: ""}}
        )


async def remove_strays(database: db.Database, *, older_than: datetime) -> int:
    """Remove the files that have awaited their message since before `older_than`; returns how many."""
    bucket = db.files(database, BUCKET)
    strays = await database[f"{BUCKET}.files"].find({AWAITING: {"$lt": older_than}}, {"_id": 1}).to_list(None)
    for stray in strays:
        with contextlib.suppress(db.NoFile):
            await bucket.delete(stray["_id"])
    return len(strays)


async def find(database: db.Database, channel: str, media_id: str) -> db.Document | None:
    """The kept file's GridFS record (its `_id`, `length` and `metadata`); None when it is not kept."""
    return await database[f"{BUCKET}.files"].find_one(
        {"metadata.key": key(channel, media_id)}, {"metadata": 1, "length": 1}
    )


async def put(
    database: db.Database, channel: str, media_id: str, source: Any, *, filename: str, metadata: Mapping[str, Any]
) -> bool:
    """Keep `source` (bytes or a binary file) under its key with its metadata (`mime_type`, `size`, `sha256`,
    `filename`...), unless a file is kept under it already; True when this call wrote it. A writer that dies
    mid-upload leaves chunks no file names, never a file that cannot be read."""
    if await find(database, channel, media_id) is not None:
        return False
    bucket = db.files(database, BUCKET)
    upload = bucket.open_upload_stream(filename, metadata={**metadata, "key": key(channel, media_id)})
    try:
        await upload.write(source)
        await upload.close()
    except db.FileExists:  # kept meanwhile by another writer: drop this copy's chunks
        with contextlib.suppress(db.NoFile):
            await bucket.delete(upload._id)
        return False
    return True
